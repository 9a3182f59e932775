"""Property-based specifications of the masker: no secret survives, output stays replayable."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.batch import parse_batch
from services.masker.message import mask_message
from services.masker.rules import MaskResult, SessionMaskState, mask_batch
from services.shared.site_settings import SiteRegistry
from tests.unit.strategies_rrweb import Scenario, scenarios

PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,  # same examples on every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _copy(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    copied: list[dict[str, Any]] = orjson.loads(orjson.dumps(events))
    return copied


def _mask(scenario: Scenario) -> MaskResult:
    return mask_batch(_copy(scenario.events), SessionMaskState(), scenario.site, scenario.consent)


def _leaks(scenario: Scenario, events: list[dict[str, Any]]) -> list[str]:
    serialised = orjson.dumps(events).decode()
    return [secret for secret in scenario.secrets if secret in serialised]


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_secret_appears_anywhere_in_the_masked_output(scenario: Scenario) -> None:
    result = _mask(scenario)
    assert _leaks(scenario, result.events) == []


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_secret_appears_in_what_the_masker_publishes_for_a_batch_ingest_accepted(
    scenario: Scenario,
) -> None:
    # The whole path of one batch: ingest publishes the client's bytes as received
    # (envelope "batch"), the masker reads and masks them and writes its own events.
    body = orjson.dumps({"session_id": "s-1", "seq": 0, "events": scenario.events})
    envelope = parse_batch(
        body, site=scenario.site, now_ms=0, max_events=10**6, max_skew_ms=2**62
    ).envelope
    envelope.consent = scenario.consent
    masked = mask_message(
        envelope.to_json(), None, SiteRegistry([scenario.site]), partition=0, offset=0
    )
    value = (masked.value or b"").decode()
    assert [secret for secret in scenario.secrets if secret in value] == []
    assert not value or "batch" not in orjson.loads(value)


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_no_secret_appears_when_state_is_stored_between_batches(
    scenario: Scenario, data: st.DataObject
) -> None:
    events = _copy(scenario.events)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4)))
    state_doc: dict[str, Any] | None = None
    published: list[dict[str, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        state = SessionMaskState.from_dict(state_doc)
        result = mask_batch(events[start:end], state, scenario.site, scenario.consent)
        published.extend(result.events)
        state_doc = orjson.loads(orjson.dumps(state.to_dict()))  # as the faust table does
    assert _leaks(scenario, published) == []


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_batching_with_stored_state_gives_the_same_output_as_one_batch(
    scenario: Scenario, data: st.DataObject
) -> None:
    whole = mask_batch(_copy(scenario.events), SessionMaskState(), scenario.site, None)
    events = _copy(scenario.events)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4)))
    state_doc: dict[str, Any] | None = None
    published: list[dict[str, Any]] = []
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        state = SessionMaskState.from_dict(state_doc)
        published.extend(mask_batch(events[start:end], state, scenario.site, None).events)
        state_doc = orjson.loads(orjson.dumps(state.to_dict()))
    assert published == whole.events


def _shape(node: dict[str, Any], blocked_roots: set[int] | None = None) -> tuple[Any, ...]:
    """Ids, types, tags, text lengths and children; blocked roots lose their children."""
    children: tuple[Any, ...] = ()
    if blocked_roots is None or node.get("id") not in blocked_roots:
        children = tuple(_shape(c, blocked_roots) for c in node.get("childNodes", []))
    text = node.get("textContent")
    return (
        node.get("id"),
        node.get("type"),
        node.get("tagName"),
        len(text) if isinstance(text, str) else None,
        node.get("isShadow"),
        node.get("rootId"),
        children,
    )


def _ids(items: list[dict[str, Any]], key: str, skip: set[int]) -> list[Any]:
    return [item[key] for item in items if item[key] not in skip]


@PROPERTY_SETTINGS
@given(scenarios())
def test_output_keeps_node_ids_tree_shape_and_event_order(scenario: Scenario) -> None:
    original = _copy(scenario.events)
    result = _mask(scenario)
    assert len(result.events) + result.dropped == len(original)
    by_time = {event["timestamp"]: event for event in result.events}
    assert [e["timestamp"] for e in result.events] == [
        e["timestamp"] for e in original if e["timestamp"] in by_time
    ]
    blocked = scenario.blocked_ids
    for before in original:
        after = by_time.get(before["timestamp"])
        data = before["data"]
        if after is None:
            dropped_input = (
                before["type"] == 3
                and data.get("source") == 5
                and data["id"] in blocked | scenario.ignored_ids
            )
            assert scenario.site.consent_mode == "required" or dropped_input
            continue
        assert after["type"] == before["type"]
        if before["type"] == 2:
            assert _shape(after["data"]["node"]) == _shape(data["node"], scenario.blocked_roots)
        elif before["type"] == 3 and data["source"] == 0:
            masked = after["data"]
            assert [(a["parentId"], _shape(a["node"])) for a in masked["adds"]] == [
                (a["parentId"], _shape(a["node"], scenario.blocked_roots))
                for a in data["adds"]
                if a["parentId"] not in blocked
            ]
            assert [t["id"] for t in masked["texts"]] == _ids(data["texts"], "id", blocked)
            assert [len(t["value"]) for t in masked["texts"]] == [
                len(t["value"]) for t in data["texts"] if t["id"] not in blocked
            ]
            assert [a["id"] for a in masked["attributes"]] == _ids(
                data["attributes"], "id", blocked
            )
        elif before["type"] == 3 and data["source"] == 5:
            assert after["data"]["id"] == data["id"]
            assert len(after["data"]["text"]) == len(data["text"])


@PROPERTY_SETTINGS
@given(scenarios(consent_modes=("none",)))
def test_masking_masked_output_changes_nothing(scenario: Scenario) -> None:
    once = _mask(scenario).events
    twice = mask_batch(_copy(once), SessionMaskState(), scenario.site, scenario.consent).events
    assert twice == once
