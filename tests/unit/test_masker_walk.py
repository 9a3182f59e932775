"""The compiled batch walk (services/masker/core/src/walk.rs) reads rrweb events
exactly as the Python walk it replaced did: Python's type checks and equality
(``isinstance(x, int)`` holds for bools, ``3.0 == 3``), no recursion on deep
trees, the time budget inside one event, and the same vocabulary as
:mod:`services.masker.rrweb` and :mod:`services.masker.state`.
"""

from __future__ import annotations

from typing import Any

import pytest
import replaypipe_masker_core as core

from services.masker import rrweb, state
from services.masker.batch import BUDGET_CHECK_EVERY, BatchOverBudget
from services.masker.sensitivity import F_MASK_INPUT
from services.masker.state import SessionMaskState
from tests.unit.test_masker_rules import (
    RECORDING,
    SECRET,
    el,
    mutation,
    run,
    snapshot,
    text,
    typing,
)

EMAIL = "mail bob@example.com"


def _deep_snapshot(depth: int, leaf_text: str) -> dict[str, Any]:
    node: dict[str, Any] = text(10 + depth, leaf_text)
    for level in range(depth, 0, -1):
        node = el(10 + level - 1, "div", {}, node)
    return snapshot(node)


def _leaf(event: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = event["data"]["node"]
    while node.get("childNodes"):
        node = node["childNodes"][0]
    return node


@pytest.mark.parametrize("name", sorted(core.WALK_VOCABULARY))
def test_the_walk_reads_the_same_rrweb_vocabulary_and_consent_states_as_python(name: str) -> None:
    python = getattr(rrweb, name, None)
    if python is None:
        python = getattr(state, name)
    compiled = core.WALK_VOCABULARY[name]
    if isinstance(python, frozenset | tuple):
        assert list(python) == compiled if isinstance(python, tuple) else python == set(compiled)
    else:
        assert python == compiled


def test_a_snapshot_20000_levels_deep_is_walked_without_recursion() -> None:
    event = _deep_snapshot(20_000, EMAIL)

    run([event])

    assert _leaf(event)["textContent"] == "mail " + "*" * len("bob@example.com")


def test_the_budget_is_checked_inside_one_large_event() -> None:
    # One event, more nodes than BUDGET_CHECK_EVERY: the clock is read inside it.
    event = _deep_snapshot(BUDGET_CHECK_EVERY * 2, "plain")

    with pytest.raises(BatchOverBudget) as raised:
        run([event], budget_s=-1.0)

    assert raised.value.budget_s == -1.0


def test_a_float_event_type_is_the_int_type_as_python_compares_them() -> None:
    event = snapshot(text(4, EMAIL))
    event["type"] = 2.0

    result = run([event])

    assert node_text(event, 4) != EMAIL
    assert result.counts["unknown_event"] == 0


def test_a_bool_node_id_is_an_int_id_as_isinstance_says() -> None:
    # True == 1: the input event on id True finds node 1's bits (a password field).
    states = SessionMaskState()
    field = el(4, "input", {"type": "password"})
    field["id"] = True
    run([snapshot(field)], RECORDING, state=states)

    assert (states.nodes.get(1) or 0) & F_MASK_INPUT


def test_an_unhashable_source_is_refused_as_the_set_lookup_refuses_it() -> None:
    event = {"type": 3, "timestamp": 1, "data": {"source": [1]}}

    with pytest.raises(TypeError):
        run([event])


def test_an_unchanged_text_keeps_its_string_object() -> None:
    words = "plain words only"
    event = snapshot(text(4, words))

    run([event])

    assert node_text(event, 4) is words


def test_text_changes_on_nodes_the_walk_never_saw_are_masked() -> None:
    change = mutation(texts=[{"id": 999, "value": SECRET}])

    result = run([change])

    assert change["data"]["texts"][0]["value"] == "*" * len(SECRET)
    assert result.counts["unknown_node"] == 1


def node_text(event: dict[str, Any], node_id: int) -> Any:
    stack = [event["data"]["node"]]
    while stack:
        node = stack.pop()
        if node.get("id") == node_id:
            return node.get("textContent")
        stack.extend(node.get("childNodes") or [])
    raise KeyError(node_id)


def test_a_node_id_beyond_64_bits_is_no_id_so_its_input_is_masked_as_unknown() -> None:
    # The one deviation from the Python walk, towards masking more (docs/masking.md).
    huge = 2**64
    field = el(4, "input", {"type": "text"})
    field["id"] = huge
    typed = typing(huge, "hello")

    result = run([snapshot(field), typed], RECORDING)

    assert typed["data"]["text"] == "*****"
    assert result.counts["unknown_node"] == 1
