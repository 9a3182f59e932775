"""Row building: a masked envelope to event rows and a batch summary (pure).

Imports nothing from Kafka or ClickHouse: a unit test calls these with a dict.
The writer turns what these return into columnar inserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope, RrwebEvent

EVENT_COLUMNS = (
    "site_id",
    "session_id",
    "window_id",
    "visitor_id",
    "seq",
    "idx",
    "ts",
    "received_at",
    "type",
    "source",
    "data",
    "size",
    "retention_days",
)

SUMMARY_COLUMNS = (
    "site_id",
    "session_id",
    "window_id",
    "seq",
    "visitor_id",
    "retention_days",
    "first_ts",
    "last_ts",
    "event_count",
    "byte_count",
    "page_views",
    "clicks",
    "rage_clicks",
    "inputs",
    "console_errors",
    "page_urls",
    "entry_url",
    "entry_url_ts",
    "active_secs",
    "viewport_w",
    "viewport_h",
    "viewport_ts",
    "agent",
    "consent_state",
)

# rrweb numbers (DESIGN.md, "Facts about the data").
META, INCREMENTAL, PLUGIN = 4, 3, 6
SRC_MOUSE_MOVE, SRC_MOUSE_INTERACTION, SRC_SCROLL, SRC_VIEWPORT, SRC_INPUT = 1, 2, 3, 4, 5
SRC_TOUCH_MOVE, SRC_LOG, SRC_DRAG, SRC_SELECTION = 6, 11, 12, 14
CLICK = 2  # MouseInteraction type
# Sources that mean a person is doing something: they count towards active time.
ACTIVITY_SOURCES = frozenset(
    {
        SRC_MOUSE_MOVE,
        SRC_MOUSE_INTERACTION,
        SRC_SCROLL,
        SRC_INPUT,
        SRC_TOUCH_MOVE,
        SRC_DRAG,
        SRC_SELECTION,
    }
)

# A rage click: at least RAGE_MIN_CLICKS clicks within RAGE_WINDOW_MS, all within
# RAGE_RADIUS_PX of the first one (the common definition of session-replay tools).
RAGE_MIN_CLICKS = 3
RAGE_WINDOW_MS = 1000
RAGE_RADIUS_PX = 30

_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01: beyond DateTime64 sanity
NEVER = datetime(2100, 1, 1, tzinfo=UTC)  # "no value" for argMin timestamps
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # "no value" for argMax timestamps
MAX_URL_CHARS = 2048


class RowError(ValueError):
    """An envelope that cannot become rows (the reason says which event and why)."""


@dataclass(slots=True)
class BatchRows:
    """What one Kafka message becomes: event rows and one session-batch summary."""

    events: list[tuple[Any, ...]]  # in EVENT_COLUMNS order
    summary: tuple[Any, ...] | None  # in SUMMARY_COLUMNS order; None for an empty batch
    bytes: int


def to_datetime(ms: Any) -> datetime:
    """Epoch milliseconds to an aware UTC datetime, clamped to a storable range."""
    value = ms if isinstance(ms, int | float) and not isinstance(ms, bool) else 0
    value = min(max(int(value), 0), _MAX_TS_MS)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _event_ms(event: RrwebEvent) -> int:
    value = event.get("timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(max(int(value), 0), _MAX_TS_MS)
    return 0


def event_source(event: RrwebEvent) -> int:
    """The incremental source of an event, or -1 for other event types."""
    payload = event.get("data")
    if event.get("type") != INCREMENTAL or not isinstance(payload, dict):
        return -1
    source = payload.get("source")
    return source if isinstance(source, int) and 0 <= source < 32767 else -1


def batch_rows(envelope: BatchEnvelope, retention_days: int) -> BatchRows:
    """Event rows (one per rrweb event) and the batch's session summary.

    Raises :class:`RowError` if an event is not a JSON object: such a message
    can never be written and goes to the DLQ.
    """
    for position, event in enumerate(envelope.events):
        if not isinstance(event, dict):
            raise RowError(f"event {position} is not a JSON object")
    received = to_datetime(envelope.received_at_ms)
    retention = min(max(retention_days, 1), 65535)
    rows: list[tuple[Any, ...]] = []
    total = 0
    for idx, event in enumerate(envelope.events):
        data = orjson.dumps(event).decode()
        etype = event.get("type")
        total += len(data)
        rows.append(
            (
                envelope.site_id,
                envelope.session_id,
                envelope.window_id,
                envelope.visitor_id,
                envelope.seq,
                idx,
                to_datetime(event.get("timestamp")),
                received,
                etype if isinstance(etype, int) and 0 <= etype <= 255 else 255,
                event_source(event),
                data,
                len(data),
                retention,
            )
        )
    summary = batch_summary(envelope, retention, total) if envelope.events else None
    return BatchRows(events=rows, summary=summary, bytes=total)


def batch_summary(envelope: BatchEnvelope, retention_days: int, byte_count: int) -> tuple[Any, ...]:
    """One ``session_batches`` row: what this batch adds to its session's summary."""
    events = sorted(envelope.events, key=_event_ms)
    times = [_event_ms(e) for e in events]
    urls: list[str] = []
    entry_url, entry_ts = "", NEVER
    viewport = (0, 0)
    viewport_ts = EPOCH
    clicks: list[tuple[int, float, float]] = []
    inputs = errors = 0
    active: set[int] = set()
    for event, ms in zip(events, times, strict=True):
        etype = event.get("type")
        payload = event.get("data")
        if not isinstance(payload, dict):
            continue
        if etype == META:
            href = payload.get("href")
            if isinstance(href, str) and href:
                urls.append(href[:MAX_URL_CHARS])
                if entry_ts == NEVER:
                    entry_url, entry_ts = href[:MAX_URL_CHARS], to_datetime(ms)
            size = _viewport(payload)
            if size is not None:
                viewport, viewport_ts = size, to_datetime(ms)
        elif etype == INCREMENTAL:
            source = payload.get("source")
            if source in ACTIVITY_SOURCES:
                active.add(ms // 1000)
            if source == SRC_MOUSE_INTERACTION and payload.get("type") == CLICK:
                clicks.append((ms, _number(payload.get("x")), _number(payload.get("y"))))
            elif source == SRC_INPUT:
                inputs += 1
            elif source == SRC_VIEWPORT:
                size = _viewport(payload)
                if size is not None:
                    viewport, viewport_ts = size, to_datetime(ms)
            elif source == SRC_LOG and is_error_log(payload):
                errors += 1
        elif etype == PLUGIN and is_console_error_plugin(payload):
            errors += 1
    consent = -1 if envelope.consent is None else int(envelope.consent)
    return (
        envelope.site_id,
        envelope.session_id,
        envelope.window_id,
        envelope.seq,
        envelope.visitor_id,
        retention_days,
        to_datetime(times[0]),
        to_datetime(times[-1]),
        len(events),
        byte_count,
        len(urls),
        len(clicks),
        count_rage_clicks(clicks),
        inputs,
        errors,
        sorted(set(urls)),
        entry_url,
        entry_ts,
        sorted(active),
        viewport[0],
        viewport[1],
        viewport_ts,
        envelope.user_agent[:1024],
        consent,
    )


def count_rage_clicks(clicks: list[tuple[int, float, float]]) -> int:
    """Rage-click bursts in time-ordered ``(ms, x, y)`` clicks.

    A burst is ≥ :data:`RAGE_MIN_CLICKS` clicks within :data:`RAGE_WINDOW_MS`
    of its first click and within :data:`RAGE_RADIUS_PX` of it; a click counts
    towards one burst at most.
    """
    bursts = 0
    start = 0
    while start < len(clicks):
        t0, x0, y0 = clicks[start]
        end = start + 1
        while end < len(clicks):
            t, x, y = clicks[end]
            if t - t0 > RAGE_WINDOW_MS or (x - x0) ** 2 + (y - y0) ** 2 > RAGE_RADIUS_PX**2:
                break
            end += 1
        if end - start >= RAGE_MIN_CLICKS:
            bursts += 1
            start = end
        else:
            start += 1
    return bursts


def is_error_log(payload: dict[str, Any]) -> bool:
    """An rrweb (legacy) Log incremental event at level ``error``."""
    return payload.get("level") == "error"


def is_console_error_plugin(payload: dict[str, Any]) -> bool:
    """An ``rrweb/console@1`` plugin event at level ``error``."""
    inner = payload.get("payload")
    return (
        payload.get("plugin") == "rrweb/console@1"
        and isinstance(inner, dict)
        and inner.get("level") == "error"
    )


def _viewport(payload: dict[str, Any]) -> tuple[int, int] | None:
    width, height = payload.get("width"), payload.get("height")
    if isinstance(width, int | float) and isinstance(height, int | float):
        return min(max(int(width), 0), 65535), min(max(int(height), 0), 65535)
    return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
