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
from typing import Any, Final

import replaypipe_masker_core as core

from services.masker.policy import MaskPolicy
from services.masker.state import (
    CONSENT_NOT_REQUIRED,
    MAX_FIELD_NAMES,
    MAX_NODE_RUNS,
    SessionMaskState,
)
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

    The walk itself is the compiled core's (``services/masker/core/src/walk.rs``),
    on the events read as JSON values: they are masked there and written back
    into the caller's dicts (the tests' path;
    :func:`services.masker.message.mask_message` hands the core the raw
    message's bytes instead).
    """
    parsed = core.events_from_objects(events)
    try:
        result = mask_parsed(parsed, state, site, consent,
                             sensitive_names=sensitive_names, budget_s=budget_s)
    finally:
        # what the walk did to the events, also when it stopped half way
        for target, masked in zip(events, parsed.to_objects(), strict=True):
            write_back(target, masked)
    return MaskResult([events[i] for i in result.kept], result.counts,
                      result.consent_state, result.dropped)


@dataclass(slots=True)
class ParsedMaskResult:
    """:func:`mask_parsed`'s outcome: the kept events' positions, counts, consent, drops."""

    kept: list[int]
    counts: Counter[str]
    consent_state: str
    dropped: int


def mask_parsed(
    events: core.ParsedEvents,
    state: SessionMaskState,
    site: SiteSettings,
    consent: bool | None = None,
    *,
    sensitive_names: Sequence[str] | None = None,
    budget_s: float | None = None,
) -> ParsedMaskResult:
    """:func:`mask_batch` on events the core parsed (masked in place, the GIL released)."""
    policy = MaskPolicy.from_site(site, sensitive_names)
    counts: Counter[str] = Counter()
    try:
        kept, consent_state, dropped = core.mask_events(
            events,
            state,
            policy,
            consent,
            counts,
            budget_s=budget_s,
            text_rule_bits=_TEXT_RULE_BITS,
            max_node_runs=MAX_NODE_RUNS,
            max_field_names=MAX_FIELD_NAMES,
        )
    except core.WalkOverBudget:
        raise BatchOverBudget(budget_s or 0.0) from None
    return ParsedMaskResult(kept, counts, consent_state, dropped)


def write_back(target: Any, masked: Any) -> None:
    """Make ``target`` (a dict or list) equal ``masked`` in place, keeping the
    nested dicts and lists that are still there (callers hold references to them)."""
    stack: list[tuple[Any, Any]] = [(target, masked)]
    while stack:
        old, new = stack.pop()
        if isinstance(old, dict) and isinstance(new, dict):
            for key in [k for k in old if k not in new]:
                del old[key]
            for key, value in new.items():
                current = old.get(key, _ABSENT)
                if _same_container(current, value):
                    stack.append((current, value))
                elif current is _ABSENT or type(current) is not type(value) or current != value:
                    old[key] = value
        elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
            for i, value in enumerate(new):
                if _same_container(old[i], value):
                    stack.append((old[i], value))
                elif type(old[i]) is not type(value) or old[i] != value:
                    old[i] = value
        elif isinstance(old, list) and isinstance(new, list):
            old[:] = new


_ABSENT: Final = object()


def _same_container(old: Any, new: Any) -> bool:
    return (isinstance(old, dict) and isinstance(new, dict)) or (
        isinstance(old, list) and isinstance(new, list)
    )
