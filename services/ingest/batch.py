"""Checking a batch POST: pure functions from request facts to an envelope or a rejection."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope, RrwebEvent
from services.shared.limits import MAX_JSON_DEPTH, MAX_SEQ
from services.shared.site_settings import SiteSettings

ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,70}$")
MAX_PAGE_URL_CHARS = 2048
MAX_EVENT_TYPE = 6  # rrweb EventType: 0 DomContentLoaded … 6 Plugin
# Room left in a Kafka message for the record's key, headers and framing.
KAFKA_RECORD_OVERHEAD_BYTES = 1024
# For the nesting check: every bracket becomes "(" or ")", quotes stay, all else goes.
_BRACKETS_AS_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
# orjson refuses to parse past 1024 levels: a large body is parsed inside this many
# one-element arrays, which puts that refusal at MAX_JSON_DEPTH.
_WRAPPERS = 1024 - MAX_JSON_DEPTH
_WRAP_OPEN, _WRAP_CLOSE = b"[" * _WRAPPERS, b"]" * _WRAPPERS
# From this size on, wrapping (a fixed ~20 µs) costs less than the byte check (per byte).
WRAPPED_PARSE_FROM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Rejection(Exception):
    """A refused request: HTTP status, a stable error code, a sentence for the developer."""

    status: int
    code: str
    detail: str
    retry_after_s: int | None = None


@dataclass(slots=True)
class ParsedBatch:
    """A checked batch: the envelope to publish and how many events were left out, by reason."""

    envelope: BatchEnvelope
    dropped: Counter[str] = field(default_factory=Counter)


def parse_batch(
    body: bytes,
    *,
    site: SiteSettings,
    now_ms: int,
    max_events: int,
    max_skew_ms: int,
) -> ParsedBatch:
    """Validate a decoded JSON body into an envelope, or raise :class:`Rejection`.

    Events that are not plausible rrweb events are left out (and counted); a
    batch with none left is refused. Leaving out is deterministic, so a retried
    batch gives the same events at the same indexes.
    """
    try:
        doc = loads_nested_within_limit(body)
    except orjson.JSONDecodeError as exc:
        if exc.msg.startswith("depth limit"):  # orjson's own limit, ours when wrapped
            raise _too_deep() from None
        raise Rejection(400, "invalid_json", f"Body is not valid JSON ({exc.msg}).") from None
    if not isinstance(doc, dict):
        raise Rejection(400, "invalid_json", "Body must be a JSON object with an 'events' list.")
    session_id = _id(doc, "session_id", required=True)
    window_id = _id(doc, "window_id", required=False) or "0"
    visitor_id = _id(doc, "visitor_id", required=False)
    seq = doc.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq > MAX_SEQ:
        raise Rejection(
            400, "invalid_seq", f"'seq' must be an integer batch number from 0 to {MAX_SEQ}."
        )
    consent = doc.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise Rejection(400, "invalid_consent", "'consent' must be true, false or absent.")
    page_url = doc.get("page_url")
    if page_url is not None and not isinstance(page_url, str):
        raise Rejection(400, "invalid_page_url", "'page_url' must be a string or absent.")
    events = doc.get("events")
    if not isinstance(events, list) or not events:
        raise Rejection(400, "no_events", "'events' must be a non-empty list of rrweb events.")
    if len(events) > max_events:
        raise Rejection(
            413,
            "too_many_events",
            f"The batch has {len(events)} events; at most {max_events} are accepted. Split it.",
        )
    valid, dropped = plausible_events(events, now_ms, max_skew_ms)
    if not valid:
        if set(dropped) == {"timestamp_out_of_range"}:
            raise Rejection(
                400,
                "timestamp_out_of_range",
                "Every event's 'timestamp' is more than "
                f"{max_skew_ms / 86_400_000:g} days from the server's clock; "
                "send epoch milliseconds.",
            )
        raise Rejection(
            400,
            "no_valid_event",
            "No event is an object with an integer 'type' (0-6) and a numeric 'timestamp' "
            "in epoch milliseconds.",
        )
    envelope = BatchEnvelope(
        site_id=site.site_id,
        session_id=session_id,
        window_id=window_id,
        visitor_id=visitor_id,
        seq=seq,
        received_at_ms=now_ms,
        events=valid,
        consent=consent,
        page_url=(page_url or "")[:MAX_PAGE_URL_CHARS],
        # Every event kept: publish the checked bytes rather than serialise them again.
        raw_batch=None if dropped else body,
    )
    return ParsedBatch(envelope, dropped)


def loads_nested_within_limit(body: bytes) -> Any:
    """``orjson.loads(body)`` for a body nested at most ``MAX_JSON_DEPTH`` deep, else a
    400 :class:`Rejection` (orjson's ``JSONDecodeError`` for text that is not JSON).

    Checked before anything is kept: orjson cannot serialise what nests past 255,
    and the envelope and the masker's output add levels around the body. A small
    body is parsed as it is and checked on its bytes; a large one is parsed
    inside ``_WRAPPERS`` arrays, so orjson's own depth limit does the check.
    """
    if len(body) < WRAPPED_PARSE_FROM_BYTES:
        doc = orjson.loads(body)
        if nesting_deeper_than(body, MAX_JSON_DEPTH):
            raise _too_deep()
        return doc
    doc = orjson.loads(b"".join((_WRAP_OPEN, body, _WRAP_CLOSE)))
    for _ in range(_WRAPPERS):
        # One element at every level, or the body closed our arrays (or was empty):
        # then it is not one JSON text by itself.
        if len(doc) != 1:
            raise Rejection(400, "invalid_json", "Body is not valid JSON (not one value).")
        doc = doc[0]
    return doc


def nesting_deeper_than(body: bytes, limit: int) -> bool:
    """Whether the valid JSON text ``body`` nests arrays and objects more than ``limit``
    deep (the outermost container is depth 1).

    Works on the bytes with a few C-speed passes instead of walking the parsed
    objects in Python (several times slower than the parse itself): strings are
    cut out (their brackets are text), every bracket becomes a parenthesis (the
    JSON is valid, so they pair up), and each round of removing ``()`` takes
    exactly one level off every branch.
    """
    if b"\\" in body:
        # Only an escaped quote or backslash can hide where a string ends.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = body.translate(_BRACKETS_AS_PARENS, _NOT_STRUCTURE)
    if 2 * marks.count(b'""') == marks.count(b'"'):
        # Every run of quotes pairs up, so no string holds a bracket (the first string
        # that did would end a run of odd length with its opening quote): counting is
        # cheaper than cutting every string out.
        marks = marks.translate(None, b'"')
    else:  # cut the strings out, their brackets with them
        marks = b"".join(marks.replace(b'""', b"").split(b'"')[::2])
    for removed in range(limit):
        # What is left holds len/2 containers, so it cannot nest deeper than that.
        if removed + len(marks) // 2 <= limit:
            return False
        marks = marks.replace(b"()", b"")
    return bool(marks)


def _too_deep() -> Rejection:
    return Rejection(
        400,
        "too_deeply_nested",
        f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
        "rrweb events do not need that many, so the batch is refused.",
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


def plausible_events(
    events: list[Any], now_ms: int, max_skew_ms: int
) -> tuple[list[RrwebEvent], Counter[str]]:
    """The events that are plausible rrweb events, and how many others were left out,
    by reason code.

    The one statement of the rule, run on every event of every batch, inline
    rather than a call per event (the hot path): exact type checks, since orjson
    makes no subclasses and ``type(x) is int`` keeps bools out.
    """
    valid: list[RrwebEvent] = []
    dropped: Counter[str] = Counter()
    earliest, latest = now_ms - max_skew_ms, now_ms + max_skew_ms
    for event in events:
        if type(event) is not dict:
            dropped["not_an_object"] += 1
            continue
        etype = event.get("type")
        if type(etype) is not int or not 0 <= etype <= MAX_EVENT_TYPE:
            dropped["invalid_type"] += 1
            continue
        ts = event.get("timestamp")
        if type(ts) is not int and type(ts) is not float:
            dropped["invalid_timestamp"] += 1
            continue
        if not earliest < ts < latest:
            dropped["timestamp_out_of_range"] += 1
            continue
        valid.append(event)
    return valid, dropped


def event_problem(event: Any, now_ms: int, max_skew_ms: int) -> str | None:
    """Why ``event`` is not a plausible rrweb event (a reason code), or None if it is:
    :func:`plausible_events` for one event."""
    _, dropped = plausible_events([event], now_ms, max_skew_ms)
    return next(iter(dropped), None)


def check_message_size(message_bytes: int, max_message_bytes: int) -> None:
    """Refuse a batch whose Kafka message would be over the topic's limit (413).

    Chosen over chunking: a batch is one Kafka message end to end, and the
    recorder can always send a big full snapshot in a batch of its own. Only a
    single full snapshot over the limit cannot be recorded; it is refused loudly.
    """
    limit = max_message_bytes - KAFKA_RECORD_OVERHEAD_BYTES
    if message_bytes > limit:
        raise Rejection(
            413,
            "batch_too_large",
            f"The batch is {message_bytes} bytes as a Kafka message; the limit is {limit}. "
            "Send fewer events per batch (a large full snapshot alone in its batch).",
        )
