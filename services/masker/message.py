"""One ``recordings.raw`` message in, one ``recordings.masked`` value out (pure; no IO).

The faust app (:mod:`services.masker.app`) calls :func:`mask_message` with the
session's stored state and stores what it returns; everything here can be
called from a test with bytes, no broker needed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import replaypipe_masker_core as core

from services.masker.batch import BatchOverBudget, mask_parsed
from services.masker.policy import MaskPolicy
from services.masker.state import SessionMaskState
from services.shared.envelope import BatchEnvelope, EnvelopeError
from services.shared.limits import MAX_JSON_DEPTH
from services.shared.raw_crypto import RawValueUnreadable
from services.shared.site_settings import SiteRegistry, SiteSettings

# Bookkeeping keys stored next to the rules' state in each table value: the
# partition (for eviction tombstones) and the source offset of the last batch
# that changed the state (to recognise a replay whose state is already ahead).
STATE_PARTITION = "_p"
STATE_OFFSET = "_o"
REPLAY_RULE = "replayed_batch"


@dataclass(slots=True)
class MaskedBatch:
    """What one raw message becomes: the value to publish (or None) and the new state.

    ``state`` is None when the stored state must stay as it is (unchanged, or a replay).
    """

    value: bytes | None
    events: int
    state: bytes | None
    counts: dict[str, int]
    dropped: int
    site_id: str
    received_at_ms: int


class BatchTooDeep(Exception):
    """A batch whose events nest deeper than :data:`MAX_JSON_DEPTH` (it cannot be serialised)."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"events nest {depth} levels deep, more than {MAX_JSON_DEPTH}")
        self.depth = depth


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw message is not published: a reason code and a detail without its content."""

    reason: str
    detail: str


def rejection_for(exc: Exception) -> Rejection:
    """The DLQ reason for an exception raised while masking or serialising a message.

    Codes: the :mod:`~services.shared.raw_crypto` reason for a sealed value that
    cannot be opened (``unknown_data_key``, ``key_destroyed``, …), ``bad_envelope``
    (not a valid envelope), ``too_deep`` (nested deeper than MAX_JSON_DEPTH),
    ``over_budget`` (the time budget ran out),
    ``mask_error`` (anything else: a bug); the app adds ``not_publishable`` for a
    masked batch the producer refuses before sending it. The detail names the envelope field or
    the limit, or only the exception type: an exception's text may quote content.
    """
    if isinstance(exc, RawValueUnreadable):  # sealed raw value: its code names why
        return Rejection(exc.reason, "the recordings.raw value cannot be opened")
    if isinstance(exc, EnvelopeError):
        return Rejection("bad_envelope", str(exc))
    if isinstance(exc, BatchTooDeep):
        return Rejection("too_deep", str(exc))
    if isinstance(exc, BatchOverBudget):
        return Rejection("over_budget", str(exc))
    return Rejection("mask_error", type(exc).__name__)


def dlq_pointer(
    topic: str, partition: int, offset: int, reason: str, *, detail: str | None = None
) -> bytes:
    """The DLQ value for a raw message the masker cannot mask: where it is, not what it is.

    Nothing unmasked may be published downstream of the masker, so the value of
    a ``recordings.raw`` message it cannot mask is never copied to ``recordings.dlq``.
    """
    pointer: dict[str, Any] = {
        "stage": "masker",
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": reason,
    }
    if detail is not None:
        pointer["detail"] = detail
    return orjson.dumps(pointer)


def stored_state(state_value: bytes | None) -> dict[str, Any] | None:
    """The stored table value as a dict; None when absent or unreadable.

    An unreadable value (a corrupt changelog record) counts as no state: the
    batch is masked conservatively instead of being lost.
    """
    if not state_value:
        return None
    try:
        loaded = orjson.loads(state_value)
    except orjson.JSONDecodeError:
        return None
    return loaded if isinstance(loaded, dict) else None


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (as it was, after).

    Parsing a batch builds tens of thousands of dicts and lists at once, and
    every 700 of them start a collection that walks all of them again, still
    alive, and every older object as the heap grows: in the masker that doubled
    the cost of ``orjson.loads`` (docs/benchmarks.md, "The agent around the
    masking"). A parsed batch holds no reference cycles (JSON is a tree) and is
    freed by reference counting, so the collector has nothing to find in it;
    a cycle made meanwhile (an exception's traceback) is found by the next
    collection after the block.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@collection_paused()
def mask_message(
    raw_value: bytes,
    state_value: bytes | None,
    registry: SiteRegistry,
    *,
    partition: int,
    offset: int,
    sensitive_names: Sequence[str] | None = None,
    budget_s: float | None = None,
) -> MaskedBatch:
    """Mask one ``recordings.raw`` value given the session's stored state (pure; no IO).

    A message at or before the offset that last changed the stored state is a
    replay after a crash: that state already includes later batches (a newer page,
    say, where a node id means something else), so the batch is masked from an
    empty state instead, i.e. conservatively, and the stored state is kept.
    Raises :class:`EnvelopeError` for a value that is not a valid envelope,
    :class:`BatchTooDeep` for events nested too deep to serialise and
    :class:`BatchOverBudget` when masking takes longer than ``budget_s``; then
    nothing of the batch may be published (:func:`rejection_for` names why).
    The garbage collector is paused meanwhile (:func:`collection_paused`; the parsed
    batch is freed when this returns, before the collector is switched back on).
    """
    envelope, events = parse_raw(raw_value)
    site = registry.get(envelope.site_id) or SiteSettings(site_id=envelope.site_id)
    doc = stored_state(state_value)
    replay = (
        doc is not None
        and doc.get(STATE_PARTITION) == partition
        and offset <= doc.get(STATE_OFFSET, -1)
    )
    state = SessionMaskState.from_dict(None if replay else doc)
    before = state.to_dict()
    result = mask_parsed(
        events,
        state,
        site,
        envelope.consent,
        sensitive_names=sensitive_names,
        budget_s=budget_s,
    )
    # The page URL travels outside the events (the recorder sends location.href):
    # scrub it like a meta event's href; other envelope extras are not forwarded.
    if envelope.page_url:
        policy = MaskPolicy.from_site(site, sensitive_names)
        envelope.page_url = policy.scrubber.scrub_url(envelope.page_url, result.counts)
    envelope.extra = {}
    counts = dict(result.counts)
    new_state: bytes | None = None
    if replay:
        counts[REPLAY_RULE] = 1
    else:
        after = state.to_dict()
        if after != before or doc is None:
            after[STATE_PARTITION] = partition
            after[STATE_OFFSET] = offset
            new_state = orjson.dumps(after)
    return MaskedBatch(
        value=_serialise(envelope, events, result.kept) if result.kept else None,
        events=len(result.kept),
        state=new_state,
        counts=counts,
        dropped=result.dropped,
        site_id=envelope.site_id,
        received_at_ms=envelope.received_at_ms,
    )


def parse_raw(raw_value: bytes) -> tuple[BatchEnvelope, core.ParsedEvents]:
    """The envelope (validated by :meth:`BatchEnvelope.from_dict`, so every
    rejection and its reason stay what they were) and its events, parsed by the
    core with the GIL released (``envelope.events`` is left empty).

    Where the core cannot read the value as orjson does (it is not JSON, or it
    holds a negative zero, which no recorder sends) orjson reads it, as before:
    its error is the rejection, or its objects are handed to the core.
    """
    # (a value that is not ``bytes``, a memoryview say, is read by orjson as before)
    parsed = core.parse_envelope(raw_value) if isinstance(raw_value, bytes) else None
    if parsed is None:
        envelope = BatchEnvelope.from_json(raw_value)
        return envelope, core.events_from_objects(envelope.events)
    header, events = parsed
    envelope = BatchEnvelope.from_dict(orjson.loads(header))
    if events is None:  # from_dict refuses an envelope whose events are not a list
        raise EnvelopeError("'events' is not a list")
    return envelope, events


def _serialise(envelope: BatchEnvelope, events: core.ParsedEvents, kept: list[int]) -> bytes:
    """The envelope with the kept events, written by the core (orjson.Fragment)."""
    # the envelope object is the one level around the events
    masked, depth = events.kept_json(kept, 1)
    if masked is None:  # orjson could not write it: downstream stages parse with orjson
        raise BatchTooDeep(depth + 1)
    envelope.masked_events = masked
    return envelope.to_json()
