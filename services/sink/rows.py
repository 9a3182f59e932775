"""What the sink inserts per Kafka message, read cheaply from the envelope (pure).

The sink does not parse events in Python: it inserts each masked envelope's
bytes unchanged into ``incoming_batches`` and ClickHouse splits them into
``events`` rows and summarises them (materialized views, see
``migrations/``). Python only reads the envelope's *header* — the fields
before ``"events":``, which :meth:`BatchEnvelope.to_json` writes last but for
``extra`` — and validates it with the envelope's own rules.

Imports nothing from Kafka or ClickHouse: a unit test calls these with bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope

INCOMING_COLUMNS = (
    "site_id",
    "session_id",
    "window_id",
    "visitor_id",
    "seq",
    "received_at",
    "retention_days",
    "agent",
    "consent_state",
    "body",
)

_EVENTS_KEY = b'"events":'
_EVENT_TIMESTAMP = b'"timestamp":'
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01: beyond DateTime64 sanity
MAX_AGENT_CHARS = 1024


class RowError(ValueError):
    """An envelope that cannot become rows (the reason says which event and why)."""


def to_datetime(ms: Any) -> datetime:
    """Epoch milliseconds to an aware UTC datetime, clamped to a storable range."""
    value = ms if isinstance(ms, int | float) and not isinstance(ms, bool) else 0
    value = min(max(int(value), 0), _MAX_TS_MS)
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def read_header(raw: bytes) -> BatchEnvelope:
    """The envelope header of a Kafka value, validated like :meth:`BatchEnvelope.from_dict`.

    Only the header fields are meant to be read from the result: on the fast path
    its ``events`` is empty (ClickHouse splits the events out of the bytes).

    Fast path: parse only the bytes before ``"events":[`` (the header fields
    are scalars, so a top-level ``"events":`` key is the first occurrence of
    those bytes outside a string). Anything unusual — another key order,
    whitespace, a header that fails validation — takes the slow path: the whole
    value is parsed, which also gives the precise reason when it is invalid.

    Raises :class:`~services.shared.envelope.EnvelopeError` or :class:`RowError`.
    """
    cut = raw.find(_EVENTS_KEY)
    end = cut + len(_EVENTS_KEY)
    if cut > 0 and raw[end : end + 1] == b"[":
        prefix = raw[:cut].rstrip()
        if prefix.endswith(b","):
            prefix = prefix[:-1]
        try:
            doc = orjson.loads(prefix + b"}")
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and "events" not in doc:
            doc["events"] = []
            try:
                return BatchEnvelope.from_dict(doc)
            except ValueError:
                pass  # the slow path names the problem
    return check_envelope(raw)


def check_envelope(raw: bytes) -> BatchEnvelope:
    """Parse and validate a whole value, events included (the slow path).

    Raises :class:`~services.shared.envelope.EnvelopeError` (not an envelope)
    or :class:`RowError` (an event that is not a JSON object).
    """
    envelope = BatchEnvelope.from_json(raw)
    for position, event in enumerate(envelope.events):
        if not isinstance(event, dict):
            raise RowError(f"event {position} is not a JSON object")
    return envelope


def incoming_row(header: BatchEnvelope, raw: bytes, retention_days: int) -> tuple[Any, ...]:
    """One ``incoming_batches`` row (INCOMING_COLUMNS order): the header and the bytes."""
    return (
        header.site_id,
        header.session_id,
        header.window_id,
        header.visitor_id,
        header.seq,
        to_datetime(header.received_at_ms),
        min(max(retention_days, 1), 65535),
        header.user_agent[:MAX_AGENT_CHARS],
        -1 if header.consent is None else int(header.consent),
        raw,
    )


def estimated_events(raw: bytes) -> int:
    """Roughly how many events a value holds (each rrweb event has one ``timestamp``).

    Used only to cut batches and for the rows metric: counting bytes is about
    a hundred times cheaper than parsing.
    """
    return raw.count(_EVENT_TIMESTAMP)
