"""The batch envelope: what ingest publishes to ``recordings.raw`` and the masker
publishes to ``recordings.masked`` (same shape, events masked).

A batch is one POST from one browser window of one session; ``seq`` is the
client's per-window batch counter, so ``(site, session, window, seq, index)``
names one event everywhere and a retried batch is recognisable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from services.shared.limits import MAX_SEQ

ENVELOPE_VERSION = 1

RrwebEvent = dict[str, Any]


class EnvelopeError(ValueError):
    """A message on a recordings topic that is not a valid envelope."""


@dataclass(slots=True)
class BatchEnvelope:
    """One batch of rrweb events of one session window, plus server-side facts."""

    site_id: str
    session_id: str
    window_id: str
    visitor_id: str
    seq: int
    received_at_ms: int
    events: list[RrwebEvent]
    user_agent: str = ""
    client_ip: str | None = None  # already anonymised by ingest, or None
    consent: bool | None = None  # the visitor's consent signal sent with the batch, if any
    page_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Ingest only: the client's decoded batch (a JSON object whose "events" are
    # exactly ``events``, all checked), published as received under "batch" instead
    # of serialising the parsed events again. ``from_dict`` never sets it, so an
    # envelope read back (and masked) is always written with its own "events".
    raw_batch: bytes | None = None
    # Masker only: the masked events already serialised (by the masker's compiled
    # core), written under "events" as they are instead of ``events``.
    masked_events: bytes | None = None

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        doc: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "site_id": self.site_id,
            "session_id": self.session_id,
            "window_id": self.window_id,
            "visitor_id": self.visitor_id,
            "seq": self.seq,
            "received_at": self.received_at_ms,
            "user_agent": self.user_agent,
            "client_ip": self.client_ip,
            "consent": self.consent,
            "page_url": self.page_url,
        }
        if self.raw_batch is not None:
            doc["batch"] = orjson.Fragment(self.raw_batch)
        elif self.masked_events is not None:
            doc["events"] = orjson.Fragment(self.masked_events)
        else:
            doc["events"] = self.events
        if self.extra:
            doc["extra"] = self.extra
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: bytes) -> BatchEnvelope:
        """Parse a Kafka value; raises :class:`EnvelopeError` with the reason."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"value is not JSON: {exc.msg}") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> BatchEnvelope:
        """Validate a decoded envelope; raises :class:`EnvelopeError` with the reason."""
        if not isinstance(doc, dict):
            raise EnvelopeError("envelope is not a JSON object")
        if doc.get("v") != ENVELOPE_VERSION:
            raise EnvelopeError(f"unsupported envelope version {doc.get('v')!r}")
        try:
            events = doc.get("events")
            if events is None and isinstance(batch := doc.get("batch"), dict):
                events = batch.get("events")  # as ingest publishes a batch it kept whole
            if not isinstance(events, list):
                raise EnvelopeError("'events' is not a list")
            consent = doc.get("consent")
            return cls(
                site_id=_str(doc, "site_id"),
                session_id=_str(doc, "session_id"),
                window_id=_str(doc, "window_id"),
                visitor_id=_str(doc, "visitor_id"),
                seq=_int(doc, "seq", maximum=MAX_SEQ),
                received_at_ms=_int(doc, "received_at"),
                events=events,
                user_agent=str(doc.get("user_agent") or ""),
                client_ip=doc.get("client_ip") if isinstance(doc.get("client_ip"), str) else None,
                consent=consent if isinstance(consent, bool) else None,
                page_url=str(doc.get("page_url") or ""),
                extra=_dict(doc, "extra"),
            )
        except KeyError as exc:
            raise EnvelopeError(f"missing field {exc.args[0]!r}") from None


def _str(doc: dict[str, Any], name: str) -> str:
    value = doc[name]
    if not isinstance(value, str):
        raise EnvelopeError(f"field {name!r} is not a string")
    return value


def _int(doc: dict[str, Any], name: str, *, maximum: int = 2**63 - 1) -> int:
    value = doc[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise EnvelopeError(f"field {name!r} is not an integer")
    if not 0 <= value <= maximum:
        raise EnvelopeError(f"field {name!r} is outside 0..{maximum}")
    return value


def _dict(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, dict) else {}
