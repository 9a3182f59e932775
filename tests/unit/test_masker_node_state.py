"""Specifications of the session's node state (the compiled core's SessionNodeIndex,
SnapshotShape and SessionNodeTree), checked against plain models: a dict of
node bits and an explicit parent map."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.masker.node_index import SessionNodeIndex
from services.masker.node_tree import SessionNodeTree, SnapshotShape

IDS = st.integers(min_value=-3, max_value=60)
BITS = st.sampled_from([0, 1, 2, 6, 1 << 10, (1 << 40) | 2])

INDEX_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), IDS, BITS),
        st.tuples(st.just("add_bits"), st.lists(IDS, max_size=12), BITS),
        st.tuples(st.just("map_values"), BITS),
        st.tuples(st.just("add_bits_everywhere"), BITS),
        st.tuples(st.just("round_trip")),
    ),
    max_size=60,
)


def assert_runs_are_sorted_and_disjoint(index: SessionNodeIndex) -> None:
    runs = index.runs()
    assert all(first <= last for first, last, _ in runs)
    assert all(a[1] < b[0] for a, b in pairwise(runs))


@settings(max_examples=300, deadline=None)
@given(INDEX_OPS)
def test_node_index_holds_exactly_the_bits_a_dict_would(ops: list[tuple[Any, ...]]) -> None:
    index = SessionNodeIndex()
    model: dict[int, int] = {}
    for op in ops:
        if op[0] == "set":
            index.set(op[1], op[2])
            model[op[1]] = op[2]
        elif op[0] == "add_bits":
            index.add_bits(op[1], op[2])
            model.update({i: model[i] | op[2] for i in op[1] if i in model})
        elif op[0] == "map_values":
            index.map_values(op[1])
            model = {i: v & op[1] for i, v in model.items()}
        elif op[0] == "add_bits_everywhere":
            index.add_bits_everywhere(op[1])
            model = {i: v | op[1] for i, v in model.items()}
        else:
            index = SessionNodeIndex.from_list(index.to_list())
        assert_runs_are_sorted_and_disjoint(index)
    assert {i: index.get(i) for i in range(-3, 61)} == {i: model.get(i) for i in range(-3, 61)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(IDS, BITS), max_size=40), st.integers(min_value=0, max_value=10))
def test_trimming_forgets_the_oldest_runs_only(sets: list[tuple[int, int]], keep: int) -> None:
    index = SessionNodeIndex()
    for node_id, bits in sets:
        index.set(node_id, bits)
    before = index.runs()
    assert index.trim(keep) == max(0, len(before) - keep)
    assert index.runs() == before[len(before) - min(keep, len(before)) :]


def test_node_ids_are_read_as_the_python_code_reads_them() -> None:
    index = SessionNodeIndex()
    index.set(1, 6)
    assert index.get(True) == 6  # a bool is an int
    assert index.get("1") is None
    assert index.get(1.0) is None
    assert index.get(None) is None
    assert index.get(2**70) is None


def test_taking_the_index_leaves_it_empty() -> None:
    index = SessionNodeIndex()
    index.set(4, 2)
    taken = index.take()
    assert (len(index), taken.runs()) == (0, [(4, 4, 2)])


def test_a_node_index_list_that_does_not_fit_reads_as_empty() -> None:
    assert SessionNodeIndex.from_list([1, 0, 2, "x", 0, 2]).runs() == []
    assert SessionNodeIndex.from_list([1, -1, 2]).runs() == []
    assert SessionNodeIndex.from_list([2**64, 0, 2]).runs() == []
    assert SessionNodeIndex.from_list([1, 0, -2]).runs() == []  # bits are never negative


@st.composite
def pages(draw: st.DrawFn) -> tuple[list[tuple[int, int]], dict[int, int | None]]:
    """A depth-first snapshot as ``(id, depth)`` visits and its parent map."""
    count = draw(st.integers(min_value=1, max_value=40))
    visits = [(1, 0)]
    parents: dict[int, int | None] = {1: None}
    stack = [1]
    for node_id in range(2, count + 1):
        # close some open nodes (never the root), then open this one under the top
        closes = draw(st.integers(min_value=0, max_value=len(stack) - 1))
        stack = stack[: len(stack) - closes]
        parents[node_id] = stack[-1]
        visits.append((node_id, len(stack)))
        stack.append(node_id)
    return visits, parents


def under(parents: dict[int, int | None], node_id: int) -> set[int]:
    """Nodes whose chain of parents passes through ``node_id`` (the model)."""
    found = set()
    for start in parents.keys() - {node_id}:
        seen: set[int] = set()
        current = parents.get(start)
        while current is not None and current not in seen:
            if current == node_id:
                found.add(start)
                break
            seen.add(current)
            current = parents.get(current)
    return found


@settings(max_examples=200, deadline=None)
@given(
    pages(),
    st.lists(
        st.tuples(st.integers(100, 130), st.integers(1, 130)),
        max_size=25,
    ),
    st.lists(st.integers(min_value=1, max_value=130), max_size=5),
    st.booleans(),
)
def test_descendants_cover_every_node_below_now(
    page: tuple[list[tuple[int, int]], dict[int, int | None]],
    adds: list[tuple[int, int]],
    removes: list[int],
    reload: bool,
) -> None:
    visits, parents = page
    tree = SessionNodeTree()
    shape = tree.start_snapshot()
    for node_id, depth in visits:
        shape.visit(node_id, depth)
    tree.end_snapshot()
    for node_id, parent_id in adds:
        tree.add_parent(node_id, parent_id)
        parents[node_id] = parent_id
    for node_id in removes:
        tree.remove(node_id)
        parents.pop(node_id, None)  # off the page, with its subtree
    if reload:
        tree = SessionNodeTree.from_dict(tree.to_dict())
    for node_id in list(parents):
        found = tree.descendants(node_id)
        assert found is not None
        assert found >= under(parents, node_id)


def test_a_snapshot_subtree_is_the_slice_below_the_node() -> None:
    shape = SnapshotShape()
    for node_id, depth in [(1, 0), (2, 1), ("x", 2), (3, 2), (4, 1)]:
        shape.visit(node_id, depth)
    assert shape.subtree(2) == [3]  # the placeholder holds its place, matching nothing
    assert shape.subtree(1) == [2, 3, 4]
    assert shape.ids() == [1, 2, 3, 4]
    assert len(shape) == 5


def test_a_stored_shape_is_read_only() -> None:
    stored = SnapshotShape.from_dict({"i": [1, 0], "p": ".gA=="})
    assert stored is not None
    with pytest.raises(AssertionError):
        stored.recorders()
