"""Type information for the masker's compiled core (services/masker/core)."""

__version__: str

# --- rwalk ---
from collections import Counter as _Counter
from typing import Any as _Any

class WalkOverBudget(Exception):
    """The walk passed its deadline (batch.py raises BatchOverBudget for it)."""

INHERITED_MARKS: int
TEXT_RULE_BITS: int
BUDGET_CHECK_EVERY: int
# The rrweb vocabulary and consent states the walk reads (rrweb.py, state.py agree).
WALK_VOCABULARY: dict[str, _Any]

def walk_batch(
    events: list[_Any],
    state: _Any,
    policy: _Any,
    consent: bool | None,
    counts: _Counter[str],
    *,
    budget_s: float | None,
    text_rule_bits: int,
    max_node_runs: int,
) -> tuple[list[_Any], str, int]:
    """Mask one batch in place: (kept events, consent state, dropped).

    The counts are added into ``counts``.
    """
