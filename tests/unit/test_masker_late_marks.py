"""Specifications for marks that arrive later and for fields that take a password
field's place (issue 13, items 1 and 7)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.masker.node_tree import SessionNodeTree, SnapshotShape
from services.masker.rules import SessionMaskState
from services.shared.site_settings import SiteSettings
from tests.unit.test_masker_rules import (
    SECRET,
    dumped,
    el,
    mutation,
    run,
    site,
    snapshot,
    text,
    typing,
)

RECORDING = site(record_inputs=True)
SELECTORS = site(
    record_inputs=True,
    mask_text_selectors=["[data-private]", "section.vault span"],
    block_selectors=[".no-record"],
)


def page() -> dict[str, Any]:
    """body 3 > div 4 > (p 5 > text 6 "Opening hours", input 7, div 8 > span 9 > text 10),
    then a sibling p 11 > text 12 that no mark touches."""
    return snapshot(
        el(
            4,
            "div",
            {},
            el(5, "p", {"title": "Opening"}, text(6, "Opening hours")),
            el(7, "input", {"type": "text"}),
            el(8, "div", {}, el(9, "span", {}, text(10, "Mon-Fri"))),
        ),
        el(11, "p", {}, text(12, "Welcome")),
    )


def marked(node_id: int, attrs: dict[str, Any]) -> dict[str, Any]:
    return mutation(attributes=[{"id": node_id, "attributes": attrs}])


def leaks_after_mark(
    mark: dict[str, Any], settings: SiteSettings = RECORDING
) -> tuple[str, SessionMaskState]:
    """Snapshot, the mark, then a secret in every place under div 4; the output."""
    state = SessionMaskState()
    run([page()], settings, state=state)
    result = run(
        [
            marked(4, mark),
            mutation(texts=[{"id": 10, "value": SECRET}]),
            mutation(attributes=[{"id": 5, "attributes": {"title": SECRET}}]),
            typing(7, SECRET),
        ],
        settings,
        state=state,
    )
    return dumped(result), state


# --- a mark added later covers the descendants that already exist ----------------------


@pytest.mark.parametrize(
    "mark",
    [
        {"class": "rr-mask"},
        {"class": "card rr-mask"},
        {"data-recording-ignore": "mask"},
        {"class": "rr-block"},
        {"data-recording-ignore": "events"},
    ],
)
def test_a_mark_added_later_hides_text_attributes_and_inputs_of_existing_descendants(
    mark: dict[str, Any],
) -> None:
    output, _ = leaks_after_mark(mark)
    assert SECRET not in output


def test_rr_ignore_added_later_drops_input_events_of_existing_fields() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    result = run([marked(4, {"class": "rr-ignore"}), typing(7, SECRET)], RECORDING, state=state)
    assert SECRET not in dumped(result)
    assert result.counts["ignore"] == 1


def test_rr_block_added_later_drops_events_inside_the_element() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    result = run(
        [marked(4, {"class": "rr-block"}), mutation(texts=[{"id": 10, "value": SECRET}])],
        RECORDING,
        state=state,
    )
    assert result.events[1]["data"]["texts"] == []


def test_contenteditable_added_later_masks_existing_text_when_inputs_are_not_recorded() -> None:
    state = SessionMaskState()
    run([page()], site(), state=state)
    result = run(
        [marked(8, {"contenteditable": "true"}), mutation(texts=[{"id": 10, "value": SECRET}])],
        site(),
        state=state,
    )
    assert SECRET not in dumped(result)


def test_a_site_selector_that_starts_matching_later_masks_existing_descendants() -> None:
    output, _ = leaks_after_mark({"data-private": ""}, SELECTORS)
    assert SECRET not in output


def test_a_block_selector_that_starts_matching_later_drops_events_inside() -> None:
    output, _ = leaks_after_mark({"class": "no-record"}, SELECTORS)
    assert SECRET not in output


def test_an_ancestor_of_a_descendant_selector_matching_later_masks_existing_descendants() -> None:
    # "section.vault span": the section gets "vault" later; span 9 already exists
    state = SessionMaskState()
    vault = snapshot(el(4, "section", {}, el(9, "span", {}, text(10, "Mon-Fri"))))
    run([vault], SELECTORS, state=state)
    result = run(
        [marked(4, {"class": "vault"}), mutation(texts=[{"id": 10, "value": SECRET}])],
        SELECTORS,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_a_descendant_selector_matches_nodes_added_after_its_ancestor_mark_exactly() -> None:
    state = SessionMaskState()
    run([snapshot(el(4, "section", {}))], SELECTORS, state=state)
    result = run(
        [
            marked(4, {"class": "vault"}),
            mutation(
                adds=[
                    {"parentId": 4, "nextId": None, "node": el(20, "span", {}, text(21, SECRET))},
                    {"parentId": 4, "nextId": None, "node": el(22, "p", {}, text(23, "Welcome"))},
                ]
            ),
        ],
        SELECTORS,
        state=state,
    )
    assert SECRET not in dumped(result)
    assert "Welcome" in dumped(result)


def test_a_late_mark_leaves_siblings_and_ancestors_as_they_were() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    result = run(
        [
            marked(8, {"class": "rr-mask"}),
            mutation(texts=[{"id": 12, "value": "Welcome back"}, {"id": 6, "value": "Hours"}]),
            typing(7, "kept"),
        ],
        RECORDING,
        state=state,
    )
    assert [t["value"] for t in result.events[1]["data"]["texts"]] == ["Welcome back", "Hours"]
    assert result.events[2]["data"]["text"] == "kept"


def test_a_late_mark_covers_nodes_added_by_earlier_mutations() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    run(
        [
            mutation(
                adds=[
                    {"parentId": 8, "nextId": None, "node": el(30, "ul", {})},
                    {"parentId": 30, "nextId": None, "node": el(31, "li", {}, text(32, "a"))},
                    {"parentId": 31, "nextId": None, "node": el(33, "input", {})},
                ]
            )
        ],
        RECORDING,
        state=state,
    )
    result = run(
        [marked(4, {"class": "rr-mask"}), mutation(texts=[{"id": 32, "value": SECRET}]),
         typing(33, SECRET)],
        RECORDING,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_a_node_moved_under_a_marked_element_is_covered_by_the_mark() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    move = mutation(
        removes=[{"parentId": 11, "id": 12}],
        adds=[{"parentId": 9, "nextId": None, "node": text(12, "Welcome")}],
    )
    result = run(
        [move, marked(8, {"class": "rr-mask"}), mutation(texts=[{"id": 12, "value": SECRET}])],
        RECORDING,
        state=state,
    )
    assert SECRET not in dumped(result)


def test_a_late_mark_is_kept_between_batches_through_the_stored_state() -> None:
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    run([marked(4, {"class": "rr-mask"})], RECORDING, state=state)
    restored = SessionMaskState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    result = run([mutation(texts=[{"id": 10, "value": SECRET}])], RECORDING, state=restored)
    assert SECRET not in dumped(result)


def test_a_late_mark_reaches_nodes_from_before_the_checkout_wherever_their_ids_fall() -> None:
    # After a checkout a node added earlier (id 40) sits inside div 8 in the snapshot:
    # the snapshot's order is no longer one run of ids.
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    checkout = snapshot(el(4, "div", {}, el(8, "div", {}, el(40, "p", {}, text(41, "x")))),
                        el(11, "p", {}, text(12, "Welcome")))
    run([checkout], RECORDING, state=state)
    stored = SessionMaskState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    result = run(
        [marked(8, {"class": "rr-mask"}),
         mutation(texts=[{"id": 41, "value": SECRET}, {"id": 12, "value": "Welcome"}])],
        RECORDING,
        state=stored,
    )
    assert SECRET not in dumped(result)
    assert "Welcome" in dumped(result)


def test_a_late_mark_with_the_tree_unknown_masks_every_known_node() -> None:
    # A state written before the masker kept the tree (version 2): no way to
    # tell descendants apart, so the mark covers the whole page (masked, not dropped).
    state = SessionMaskState()
    run([page()], RECORDING, state=state)
    old = state.to_dict()
    old["v"] = 2
    del old["t"], old["f"]
    restored = SessionMaskState.from_dict(old)
    assert not restored.tree.known
    result = run(
        [marked(8, {"class": "rr-block"}), mutation(texts=[{"id": 12, "value": SECRET}])],
        RECORDING,
        state=restored,
    )
    assert SECRET not in dumped(result)
    assert len(result.events[1]["data"]["texts"]) == 1


def test_a_full_snapshot_too_big_to_keep_leaves_the_tree_unknown() -> None:
    state = SessionMaskState(tree=SessionNodeTree(max_shape_nodes=5))
    run([page()], RECORDING, state=state)
    assert not state.tree.known
    result = run(
        [marked(8, {"class": "rr-mask"}), mutation(texts=[{"id": 12, "value": SECRET}])],
        RECORDING,
        state=state,
    )
    assert SECRET not in dumped(result)


# --- the tree stays small and bounded ----------------------------------------------------


def test_snapshot_shape_round_trips_and_finds_subtrees() -> None:
    shape = SnapshotShape()
    for node_id, depth in [(1, 0), (2, 1), (3, 2), (4, 2), (9, 3), (5, 1), (6, 2)]:
        shape.visit(node_id, depth)
    restored = SnapshotShape.from_dict(orjson.loads(orjson.dumps(shape.to_dict())))
    assert restored is not None
    assert restored.subtree(2) == [3, 4, 9]
    assert restored.subtree(4) == [9]
    assert restored.subtree(5) == [6]
    assert restored.subtree(1) == [2, 3, 4, 9, 5, 6]
    assert restored.subtree(77) is None


def test_an_unreadable_tree_in_the_state_is_unknown_never_empty() -> None:
    tree = SessionNodeTree.from_dict({"s": {"i": [1, 3], "p": "%%"}, "a": []})
    assert tree.descendants(1) is None
    assert SessionNodeTree.from_dict(tree.to_dict()).descendants(1) is None
    assert not SessionNodeTree.from_dict({"s": None, "a": [1]}).known
    assert not SessionNodeTree.from_dict("garbage").known


def test_pointers_of_removed_subtrees_are_swept() -> None:
    tree = SessionNodeTree(min_sweep_size=2)  # swept once it holds more than 2
    tree.start_snapshot().visit(1, 0)
    for node_id, parent_id in [(10, 1), (11, 10), (12, 11), (20, 1)]:
        tree.add_parent(node_id, parent_id)
    tree.remove(10)  # 11 and 12 hang below a node that left the page
    assert tree.trim() == []
    assert tree.parents == {20: 1}


def test_evicted_pointers_are_returned_with_everything_below_them() -> None:
    tree = SessionNodeTree(max_added_parents=2, min_sweep_size=0)
    tree.start_snapshot().visit(1, 0)
    for node_id, parent_id in [(10, 1), (11, 10), (12, 11), (20, 1)]:
        tree.add_parent(node_id, parent_id)
    assert tree.trim() == [10, 11, 12]
    assert tree.parents == {20: 1}


def test_nodes_whose_place_in_the_tree_is_evicted_are_masked() -> None:
    state = SessionMaskState(tree=SessionNodeTree(max_added_parents=1, min_sweep_size=0))
    run([page()], RECORDING, state=state)
    adds = [
        {"parentId": 8, "nextId": None, "node": el(30, "p", {}, text(31, "a"))},
        {"parentId": 11, "nextId": None, "node": el(32, "p", {})},
    ]
    result = run([mutation(adds=adds)], RECORDING, state=state)
    assert result.counts["state_trimmed"] == 2
    later = run([mutation(texts=[{"id": 31, "value": SECRET}])], RECORDING, state=state)
    assert SECRET not in dumped(later)


# --- a field that takes a password field's place ---------------------------------------


def password_page(attrs: dict[str, Any]) -> dict[str, Any]:
    return snapshot(el(4, "form", {}, el(5, "input", {"type": "password", **attrs})))


def replaced(attrs: dict[str, Any], new_id: int = 20) -> dict[str, Any]:
    """The toggle: the password input 5 is removed and a text input takes its place."""
    return mutation(
        removes=[{"parentId": 4, "id": 5}],
        adds=[
            {"parentId": 4, "nextId": None,
             "node": el(new_id, "input", {"type": "text", **attrs})},
        ],
    )


@pytest.mark.parametrize("key", ["name", "id"])
def test_a_text_field_that_replaces_a_password_field_of_the_same_name_stays_masked(
    key: str,
) -> None:
    state = SessionMaskState()
    run([password_page({key: "pw1"})], RECORDING, state=state)
    result = run([replaced({key: "pw1"}), typing(20, SECRET)], RECORDING, state=state)
    assert SECRET not in dumped(result)
    assert result.counts["sensitive_field"] == 1


def test_a_field_of_that_name_added_in_a_later_batch_elsewhere_stays_masked() -> None:
    state = SessionMaskState()
    run([password_page({"name": "pw1"})], RECORDING, state=state)
    run([mutation(removes=[{"parentId": 4, "id": 5}])], RECORDING, state=state)
    stored = SessionMaskState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    add = {"parentId": 3, "nextId": None, "node": el(21, "input", {"name": "pw1"})}
    result = run([mutation(adds=[add]), typing(21, SECRET)], RECORDING, state=stored)
    assert SECRET not in dumped(result)


def test_a_field_added_where_a_password_field_was_just_removed_stays_masked() -> None:
    state = SessionMaskState()
    run([password_page({})], RECORDING, state=state)
    result = run([replaced({}), typing(20, SECRET)], RECORDING, state=state)
    assert SECRET not in dumped(result)


def test_a_replacement_field_stays_masked_in_the_next_full_snapshot() -> None:
    state = SessionMaskState()
    run([password_page({"name": "pw1"})], RECORDING, state=state)
    run([replaced({"name": "pw1"})], RECORDING, state=state)
    checkout = snapshot(el(4, "form", {}, el(20, "input", {"name": "pw1", "value": SECRET})))
    result = run([checkout, typing(20, SECRET)], RECORDING, state=state)
    assert SECRET not in dumped(result)


def test_a_field_renamed_to_a_former_password_fields_name_is_masked() -> None:
    state = SessionMaskState()
    page_ = snapshot(
        el(4, "form", {}, el(5, "input", {"type": "password", "name": "pw1"})),
        el(6, "input", {"name": "nick"}),
    )
    run([page_], RECORDING, state=state)
    result = run(
        [marked(6, {"name": "pw1"}), typing(6, SECRET)], RECORDING, state=state
    )
    assert SECRET not in dumped(result)


def test_other_fields_keep_their_values_when_a_password_field_is_replaced() -> None:
    state = SessionMaskState()
    page_ = snapshot(
        el(4, "form", {}, el(5, "input", {"type": "password", "name": "pw1"})),
        el(6, "form", {}, el(7, "input", {"name": "nick"})),
    )
    run([page_], RECORDING, state=state)
    result = run(
        [
            replaced({"name": "pw1"}),
            mutation(adds=[{"parentId": 6, "nextId": None, "node": el(21, "input", {})}]),
            typing(7, "kept"),
            typing(21, "also kept"),
        ],
        RECORDING,
        state=state,
    )
    assert result.events[2]["data"]["text"] == "kept"
    assert result.events[3]["data"]["text"] == "also kept"


def test_the_state_keeps_fingerprints_of_field_names_not_the_names() -> None:
    state = SessionMaskState()
    run([password_page({"name": "pw-secret-name"})], RECORDING, state=state)
    stored = orjson.dumps(state.to_dict()).decode()
    assert "pw-secret-name" not in stored
    assert len(state.field_names) == 1


def test_fields_inside_a_sensitive_container_are_not_remembered_by_name() -> None:
    # The inputs only inherit the bit from the container named "payment-card":
    # their own names must not make same-named fields elsewhere sensitive.
    state = SessionMaskState()
    page_ = snapshot(el(4, "div", {"id": "payment-card"}, el(5, "input", {"name": "email"})))
    run([page_], RECORDING, state=state)
    assert state.field_names == {}
    add = {"parentId": 3, "nextId": None, "node": el(21, "input", {"name": "email"})}
    result = run([mutation(adds=[add]), typing(21, "kept")], RECORDING, state=state)
    assert result.events[1]["data"]["text"] == "kept"


def test_a_snapshot_node_without_a_numeric_id_holds_its_place_in_the_tree() -> None:
    state = SessionMaskState()
    odd = {"type": 2, "id": "x", "tagName": "b", "attributes": {}, "childNodes": [text(6, "a")]}
    run([snapshot(el(4, "div", {}, odd, el(7, "p", {}, text(8, "b"))), el(9, "p"))],
        RECORDING, state=state)
    result = run(
        [marked(4, {"class": "rr-mask"}),
         mutation(texts=[{"id": 8, "value": SECRET}, {"id": 6, "value": SECRET}])],
        RECORDING,
        state=SessionMaskState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))),
    )
    assert SECRET not in dumped(result)
    assert state.tree.descendants(4) == {6, 7, 8}
