"""Row building: a masked envelope to event rows (pure; no ClickHouse imports)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope

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
)

_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01: beyond DateTime64 sanity


def to_datetime(ms: Any) -> datetime:
    """Epoch milliseconds to an aware UTC datetime, clamped to a storable range."""
    value = ms if isinstance(ms, int | float) and not isinstance(ms, bool) else 0
    value = min(max(int(value), 0), _MAX_TS_MS)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def event_rows(envelope: BatchEnvelope) -> list[list[Any]]:
    """One row per event, in :data:`EVENT_COLUMNS` order."""
    received = to_datetime(envelope.received_at_ms)
    rows: list[list[Any]] = []
    for idx, event in enumerate(envelope.events):
        data = orjson.dumps(event).decode()
        etype = event.get("type")
        payload = event.get("data")
        source = payload.get("source") if etype == 3 and isinstance(payload, dict) else None
        rows.append(
            [
                envelope.site_id,
                envelope.session_id,
                envelope.window_id,
                envelope.visitor_id,
                envelope.seq,
                idx,
                to_datetime(event.get("timestamp")),
                received,
                etype if isinstance(etype, int) and 0 <= etype <= 255 else 255,
                source if isinstance(source, int) and -1 <= source < 32767 else -1,
                data,
                len(data),
            ]
        )
    return rows
