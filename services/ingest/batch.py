"""Checking a batch POST: pure functions from request facts to an envelope or a rejection."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope, RrwebEvent
from services.shared.site_settings import SiteSettings

ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,70}$")
MAX_PAGE_URL_CHARS = 2048
MAX_EVENT_TYPE = 6  # rrweb EventType: 0 DomContentLoaded … 6 Plugin
# Room left in a Kafka message for the record's key, headers and framing.
KAFKA_RECORD_OVERHEAD_BYTES = 1024


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
    # The body's own JSON text of the events array, when it is exactly the
    # envelope's events (nothing left out): spliced in instead of re-serialised.
    raw_events: memoryview | None = None

    def envelope_json(self) -> bytes:
        """The Kafka value: :meth:`BatchEnvelope.to_json`, reusing ``raw_events`` if known."""
        envelope = self.envelope
        if self.raw_events is None:
            return envelope.to_json()
        events, envelope.events = envelope.events, []
        try:
            head = envelope.to_json()
        finally:
            envelope.events = events
        # The envelope's layout comes from to_json alone: splice only where it ends in
        # the (empty) events array, i.e. without an "extra" member after it.
        if not head.endswith(_EMPTY_EVENTS_TAIL):
            return envelope.to_json()
        return b"".join((head[: -len(b"[]}")], self.raw_events, b"}"))


_EMPTY_EVENTS_TAIL = b'"events":[]}'
_EVENTS_KEY = b'"events"'
_JSON_SPACE = b" \t\r\n"
# Names JSON can escape only as \\uXXXX (no quote, backslash or slash in them).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


def raw_events_array(body: bytes, doc: dict[str, Any]) -> memoryview | None:
    """The exact JSON text of ``doc["events"]`` inside ``body``, or None if not certain.

    ``doc`` is ``body`` parsed (orjson keeps the document's key order). Found
    without a JSON scanner, only where every condition below proves which bytes
    are the top-level events array:

    - no ``\\u`` escape anywhere, so a key spelled "events" appears as the bytes
      ``"events"``, and those bytes appear exactly once: no duplicate or nested
      "events" key, no "events" string value;
    - the byte before it (whitespace aside) is ``{`` or ``,``, so its quote is
      not escaped and, the body being valid JSON, opens the string "events";
      nothing before it holds a ``[`` or a second ``{``, so every earlier member
      is a scalar and this key is at the top level; ``:`` and ``[`` follow;
    - the array ends at the body's last ``]``: what follows it is ``}`` alone
      when "events" is the last key, else ``,`` and members that parse (as an
      object) to exactly the document's later members, whose plain names
      appear once each, so no duplicate hides among them. (A ``]`` inside a
      later string or array leaves an unparseable or different rest.)

    Anything else (unicode escapes, nested members before the events, a later
    ``page_url`` with a ``]``) returns None and the events are serialised again.
    """
    if b"\\u" in body or body.count(_EVENTS_KEY) != 1:
        return None
    key_at = body.find(_EVENTS_KEY)
    before = _skip_space_back(body, key_at)
    if body[before - 1 : before] not in (b"{", b","):
        return None
    if body.count(b"[", 0, key_at) or body.count(b"{", 0, key_at) != 1:
        return None
    colon_at = _skip_space(body, key_at + len(_EVENTS_KEY))
    if body[colon_at : colon_at + 1] != b":":
        return None
    value_at = _skip_space(body, colon_at + 1)
    end = body.rfind(b"]") + 1
    if body[value_at : value_at + 1] != b"[" or end <= value_at:
        return None
    keys = list(doc)
    later = keys[keys.index("events") + 1 :]
    rest = body[end:].strip(_JSON_SPACE)
    if not later:
        return memoryview(body)[value_at:end] if rest == b"}" else None
    if not rest.startswith(b",") or not all(_plain_unique_key(body, key) for key in later):
        return None
    try:
        members = orjson.loads(b"{" + rest[1:])
    except orjson.JSONDecodeError:
        return None
    if type(members) is not dict or list(members) != later:
        return None
    if any(members[key] != doc[key] for key in later):
        return None
    return memoryview(body)[value_at:end]


def _plain_unique_key(body: bytes, key: str) -> bool:
    """True if ``key`` can only be spelled one way (given no ``\\u``) and is in ``body`` once."""
    return _PLAIN_KEY.match(key) is not None and body.count(b'"%s"' % key.encode()) == 1


def _skip_space(body: bytes, at: int) -> int:
    """The index of the first byte at or after ``at`` that is not JSON whitespace."""
    while at < len(body) and body[at] in _JSON_SPACE:
        at += 1
    return at


def _skip_space_back(body: bytes, end: int) -> int:
    """The end of ``body[:end]`` once trailing JSON whitespace is left off."""
    while end > 0 and body[end - 1] in _JSON_SPACE:
        end -= 1
    return end


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
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "invalid_json", f"Body is not valid JSON ({exc.msg}).") from None
    if not isinstance(doc, dict):
        raise Rejection(400, "invalid_json", "Body must be a JSON object with an 'events' list.")
    session_id = _id(doc, "session_id", required=True)
    window_id = _id(doc, "window_id", required=False) or "0"
    visitor_id = _id(doc, "visitor_id", required=False)
    seq = doc.get("seq", 0)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq >= 2**53:
        raise Rejection(400, "invalid_seq", "'seq' must be a non-negative integer batch number.")
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
    valid: list[RrwebEvent] = []
    dropped: Counter[str] = Counter()
    earliest, latest = now_ms - max_skew_ms, now_ms + max_skew_ms
    for event in events:
        # Fast path for the common, valid event (exact types: orjson makes no subclasses,
        # and `type(x) is int` also keeps bools out); event_problem names the reason.
        if (
            type(event) is dict
            and type(etype := event.get("type")) is int
            and 0 <= etype <= MAX_EVENT_TYPE
            and type(ts := event.get("timestamp", 0)) in (int, float)
            and earliest < ts < latest
        ):
            valid.append(event)
        else:
            dropped[event_problem(event, now_ms, max_skew_ms) or "invalid_timestamp"] += 1
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
    )
    # Only when no event was left out is the body's events array the envelope's.
    raw_events = None if dropped else raw_events_array(body, doc)
    return ParsedBatch(envelope, dropped, raw_events)


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


def event_problem(event: Any, now_ms: int, max_skew_ms: int) -> str | None:
    """Why ``event`` is not a plausible rrweb event (a reason code), or None if it is."""
    if not isinstance(event, dict):
        return "not_an_object"
    etype = event.get("type")
    if not isinstance(etype, int) or isinstance(etype, bool) or not 0 <= etype <= MAX_EVENT_TYPE:
        return "invalid_type"
    ts = event.get("timestamp")
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return "invalid_timestamp"
    if abs(now_ms - ts) >= max_skew_ms:
        return "timestamp_out_of_range"
    return None


def is_valid_event(event: RrwebEvent, now_ms: int, max_skew_ms: int) -> bool:
    """True if ``event`` passes :func:`event_problem`."""
    return event_problem(event, now_ms, max_skew_ms) is None


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
