"""One ``recordings.raw`` message in, one ``recordings.masked`` value out (pure; no IO).

The faust app (:mod:`services.masker.app`) calls :func:`mask_message` with the
session's stored state and stores what it returns; everything here can be
called from a test with bytes, no broker needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.masker.batch import mask_batch
from services.masker.policy import MaskPolicy
from services.masker.state import SessionMaskState
from services.shared.envelope import BatchEnvelope
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


def dlq_pointer(topic: str, partition: int, offset: int, reason: str) -> bytes:
    """The DLQ value for a raw message the masker cannot read: where it is, not what it is.

    Nothing unmasked may be published downstream of the masker, so the value of
    an unreadable ``recordings.raw`` message is never copied to ``recordings.dlq``.
    """
    return orjson.dumps(
        {
            "stage": "masker",
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
        }
    )


def mask_message(
    raw_value: bytes,
    state_value: bytes | None,
    registry: SiteRegistry,
    *,
    partition: int,
    offset: int,
    sensitive_names: Sequence[str] | None = None,
) -> MaskedBatch:
    """Mask one ``recordings.raw`` value given the session's stored state (pure; no IO).

    A message at or before the offset that last changed the stored state is a
    replay after a crash: that state already includes later batches (a newer page,
    say, where a node id means something else), so the batch is masked from an
    empty state instead, i.e. conservatively, and the stored state is kept.
    Raises :class:`EnvelopeError` for a value that is not a valid envelope.
    """
    envelope = BatchEnvelope.from_json(raw_value)
    site = registry.get(envelope.site_id) or SiteSettings(site_id=envelope.site_id)
    loaded = orjson.loads(state_value) if state_value else None
    doc: dict[str, Any] | None = loaded if isinstance(loaded, dict) else None
    replay = (
        doc is not None
        and doc.get(STATE_PARTITION) == partition
        and offset <= doc.get(STATE_OFFSET, -1)
    )
    state = SessionMaskState.from_dict(None if replay else doc)
    before = state.to_dict()
    result = mask_batch(
        envelope.events, state, site, envelope.consent, sensitive_names=sensitive_names
    )
    envelope.events = result.events
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
        value=envelope.to_json() if result.events else None,
        events=len(result.events),
        state=new_state,
        counts=counts,
        dropped=result.dropped,
        site_id=envelope.site_id,
        received_at_ms=envelope.received_at_ms,
    )
