"""Checking a batch POST: pure functions from request facts to an envelope or a rejection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope, RrwebEvent
from services.shared.site_settings import SiteSettings

ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,70}$")


@dataclass(frozen=True, slots=True)
class Rejection(Exception):
    """A refused request: HTTP status, a stable error code, a sentence for the developer."""

    status: int
    code: str
    detail: str
    retry_after_s: int | None = None


def parse_batch(
    body: bytes,
    *,
    site: SiteSettings,
    now_ms: int,
    max_events: int,
    max_skew_ms: int,
) -> BatchEnvelope:
    """Validate a decoded JSON body into an envelope, or raise :class:`Rejection`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "invalid_json", f"Body is not valid JSON ({exc.msg}).") from None
    if not isinstance(doc, dict):
        raise Rejection(400, "invalid_json", "Body must be a JSON object with an 'events' list.")
    session_id = _id(doc, "session_id", required=True)
    window_id = _id(doc, "window_id", required=False) or "0"
    visitor_id = _id(doc, "visitor_id", required=False) or ""
    seq = doc.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise Rejection(400, "invalid_seq", "'seq' must be a non-negative integer batch number.")
    consent = doc.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise Rejection(400, "invalid_consent", "'consent' must be true, false or absent.")
    events = doc.get("events")
    if not isinstance(events, list) or not events:
        raise Rejection(400, "no_events", "'events' must be a non-empty list of rrweb events.")
    if len(events) > max_events:
        raise Rejection(
            413, "too_many_events", f"A batch may hold at most {max_events} events; split it."
        )
    valid = [e for e in events if _is_event(e, now_ms, max_skew_ms)]
    if not valid:
        raise Rejection(
            400,
            "no_valid_event",
            "No event has an integer 'type' (0-6) and a 'timestamp' in ms within "
            f"{max_skew_ms // 86_400_000} days of now.",
        )
    page_url = doc.get("page_url")
    return BatchEnvelope(
        site_id=site.site_id,
        session_id=session_id,
        window_id=window_id,
        visitor_id=visitor_id,
        seq=seq,
        received_at_ms=now_ms,
        events=valid,
        consent=consent,
        page_url=page_url if isinstance(page_url, str) else "",
    )


def _id(doc: dict[str, Any], name: str, *, required: bool) -> str:
    value = doc.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise Rejection(
            400,
            f"invalid_{name}",
            f"'{name}' must be 1-70 characters of A-Z, a-z, 0-9 and '-'.",
        )
    return value


def _is_event(event: Any, now_ms: int, max_skew_ms: int) -> bool:
    if not isinstance(event, dict):
        return False
    etype = event.get("type")
    ts = event.get("timestamp")
    if not isinstance(etype, int) or isinstance(etype, bool) or not 0 <= etype <= 6:
        return False
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return False
    return abs(now_ms - ts) < max_skew_ms


def is_valid_event(event: RrwebEvent, now_ms: int, max_skew_ms: int) -> bool:
    """Public form of the per-event check (used by tests and the benchmark)."""
    return _is_event(event, now_ms, max_skew_ms)
