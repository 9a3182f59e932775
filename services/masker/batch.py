"""The batch walk: one pass over a batch of a session's rrweb events, masking
each in place by the site's policy and the session's node bits.

How it works, in one paragraph: every node the masker sees (full snapshot,
mutation adds) gets its bits (:mod:`services.masker.sensitivity`) from its own
marks, the site's selectors (:class:`~services.masker.policy.MaskPolicy`) and
its parent. Bits are stored per node id in a :class:`SessionNodeIndex` (runs of
consecutive ids), which is all the per-session state besides consent
(:class:`~services.masker.state.SessionMaskState`). Later events that carry
only a node id (inputs, text/attribute mutations) are masked by looking the id
up; an id the masker never saw is masked conservatively. docs/masking.md
describes the rules for users.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import replaypipe_masker_core as core

from services.masker.policy import MaskPolicy
from services.masker.state import CONSENT_NOT_REQUIRED, MAX_NODE_RUNS, SessionMaskState
from services.shared.envelope import RrwebEvent
from services.shared.site_settings import SiteSettings


@dataclass(slots=True)
class MaskResult:
    """Masked events plus counts of what each rule masked (for metrics).

    ``consent_state`` is the session's consent after the batch (``not_required``
    for sites with consent mode ``none``); ``dropped`` counts input events that
    were not published (consent, blocked or ignored targets, masked canvases).
    """

    events: list[RrwebEvent]
    counts: Counter[str] = field(default_factory=Counter)
    consent_state: str = CONSENT_NOT_REQUIRED
    dropped: int = 0


# The marks every descendant shares with its element (what a mark added later spreads).
INHERITED_MARKS: Final = core.INHERITED_MARKS
# Bits that make a text need more than the scrubber (CSS, script, masked, form text):
# a text without them takes the walk's fast path. Passed to the core on every call,
# so the fast-path tests can switch the fast path off (-1: every bit).
_TEXT_RULE_BITS: int = core.TEXT_RULE_BITS

# Inside one event, the clock is read once per this many DOM nodes or JSON containers.
BUDGET_CHECK_EVERY: Final = core.BUDGET_CHECK_EVERY


class BatchOverBudget(Exception):
    """Masking a batch took longer than its time budget; none of it may be published."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(f"masking took longer than the {budget_s:g} s budget")
        self.budget_s = budget_s


def mask_batch(
    events: list[RrwebEvent],
    state: SessionMaskState,
    site: SiteSettings,
    consent: bool | None = None,
    *,
    sensitive_names: Sequence[str] | None = None,
    budget_s: float | None = None,
) -> MaskResult:
    """Mask one batch of a session's events in order, updating ``state`` in place.

    ``consent`` is the envelope's consent signal. It applies from the start of
    the batch, unless the batch itself carries ``replaypipe.consent`` custom
    events: those switch consent at their position and the envelope value
    applies after the batch. ``sensitive_names`` overrides
    :data:`DEFAULT_SENSITIVE_NAMES`. Events are mutated in place; the returned
    list holds the kept events, in order.

    ``budget_s`` bounds the time the walk may take: past it (checked between
    events and every :data:`BUDGET_CHECK_EVERY` nodes or containers inside one) it
    raises :class:`BatchOverBudget`, leaving the events half masked, so the
    caller must publish none of them. ``state`` may be half updated too.

    The walk itself is the compiled core's (``services/masker/core/src/walk.rs``).
    """
    policy = MaskPolicy.from_site(site, sensitive_names)
    counts: Counter[str] = Counter()
    try:
        kept, consent_state, dropped = core.walk_batch(
            events,
            state,
            policy,
            consent,
            counts,
            budget_s=budget_s,
            text_rule_bits=_TEXT_RULE_BITS,
            max_node_runs=MAX_NODE_RUNS,
        )
    except core.WalkOverBudget:
        raise BatchOverBudget(budget_s or 0.0) from None
    return MaskResult(kept, counts, consent_state, dropped)
