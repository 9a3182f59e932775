"""Checking a batch: ids, seq, events, timestamps, and the Kafka message limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.batch import (
    WRAPPED_PARSE_FROM_BYTES,
    Rejection,
    check_message_size,
    event_problem,
    nesting_deeper_than,
    parse_batch,
)
from services.shared.limits import MAX_JSON_DEPTH
from services.shared.site_settings import SiteSettings

NOW = 1_764_370_000_000
DAY = 86_400_000
SITE = SiteSettings(site_id="shop")


def batch(**overrides: Any) -> bytes:
    doc: dict[str, Any] = {
        "session_id": "sess-1",
        "window_id": "w-1",
        "visitor_id": "v-1",
        "seq": 3,
        "consent": True,
        "page_url": "https://shop.example/cart",
        "events": [{"type": 4, "timestamp": NOW, "data": {"href": "https://shop.example/"}}],
    }
    doc.update(overrides)
    return orjson.dumps(doc)


def parse(body: bytes, max_events: int = 100) -> Any:
    return parse_batch(body, site=SITE, now_ms=NOW, max_events=max_events, max_skew_ms=7 * DAY)


def rejection_of(body: bytes, max_events: int = 100) -> Rejection:
    with pytest.raises(Rejection) as err:
        parse(body, max_events)
    return err.value


def test_a_valid_batch_becomes_an_envelope_with_the_server_receive_time() -> None:
    envelope = parse(batch()).envelope
    assert (envelope.site_id, envelope.session_id, envelope.window_id) == ("shop", "sess-1", "w-1")
    assert (envelope.visitor_id, envelope.seq, envelope.consent) == ("v-1", 3, True)
    assert envelope.received_at_ms == NOW
    assert envelope.page_url == "https://shop.example/cart"


def test_window_and_visitor_are_optional() -> None:
    envelope = parse(orjson.dumps({"session_id": "s", "events": [{"type": 2, "timestamp": NOW}]}))
    assert (envelope.envelope.window_id, envelope.envelope.visitor_id, envelope.envelope.seq) == (
        "0",
        "",
        0,
    )


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_json_is_refused(body: bytes) -> None:
    assert (rejection_of(body).status, rejection_of(body).code) == (400, "invalid_json")


@pytest.mark.parametrize(
    "session_id", [None, "", "a" * 71, "has space", "semi;colon", "ünïcode", 42, "a:b"]
)
def test_bad_session_ids_are_refused(session_id: object) -> None:
    rejection = rejection_of(batch(session_id=session_id))
    assert (rejection.status, rejection.code) == (400, "invalid_session_id")


def test_a_70_character_session_id_is_accepted() -> None:
    assert parse(batch(session_id="a" * 70)).envelope.session_id == "a" * 70


def test_bad_visitor_and_window_ids_are_refused() -> None:
    assert rejection_of(batch(visitor_id="x y")).code == "invalid_visitor_id"
    assert rejection_of(batch(window_id="w" * 80)).code == "invalid_window_id"


@pytest.mark.parametrize("seq", [-1, 1.5, "3", True, 2**60, 2**32])
def test_bad_seq_is_refused(seq: object) -> None:
    assert rejection_of(batch(seq=seq)).code == "invalid_seq"


def test_the_largest_seq_the_sink_stores_is_accepted() -> None:
    assert parse(batch(seq=2**32 - 1)).envelope.seq == 2**32 - 1


def test_bad_consent_and_page_url_are_refused() -> None:
    assert rejection_of(batch(consent="yes")).code == "invalid_consent"
    assert rejection_of(batch(page_url=5)).code == "invalid_page_url"


@pytest.mark.parametrize("events", [None, [], {}, "events"])
def test_missing_or_empty_events_are_refused(events: object) -> None:
    assert rejection_of(batch(events=events)).code == "no_events"


def test_too_many_events_is_refused_with_413() -> None:
    events = [{"type": 3, "timestamp": NOW}] * 11
    rejection = rejection_of(batch(events=events), max_events=10)
    assert (rejection.status, rejection.code) == (413, "too_many_events")


def test_a_batch_with_no_plausible_event_is_refused() -> None:
    events = [1, {"type": "2", "timestamp": NOW}, {"type": 9, "timestamp": NOW}, {"type": 3}]
    rejection = rejection_of(batch(events=events))
    assert (rejection.status, rejection.code) == (400, "no_valid_event")


def test_a_batch_whose_timestamps_are_all_far_from_now_is_refused() -> None:
    events = [{"type": 3, "timestamp": NOW - 8 * DAY}, {"type": 3, "timestamp": NOW + 8 * DAY}]
    rejection = rejection_of(batch(events=events))
    assert (rejection.status, rejection.code) == (400, "timestamp_out_of_range")


def test_implausible_events_are_left_out_and_counted_by_reason() -> None:
    good = {"type": 3, "timestamp": NOW, "data": {"source": 1}}
    events = [good, {"type": True, "timestamp": NOW}, {"type": 3, "timestamp": 10}, "x", good]
    parsed = parse(batch(events=events))
    assert parsed.envelope.events == [good, good]
    assert parsed.dropped == {"invalid_type": 1, "timestamp_out_of_range": 1, "not_an_object": 1}


def test_event_problem_names_the_reason() -> None:
    assert event_problem({"type": 2, "timestamp": NOW + 0.5}, NOW, DAY) is None
    assert event_problem({"type": 2, "timestamp": None}, NOW, DAY) == "invalid_timestamp"
    assert event_problem({"type": 2}, NOW, DAY) == "invalid_timestamp"
    assert event_problem({"type": 2, "timestamp": True}, NOW, DAY) == "invalid_timestamp"
    assert event_problem({"type": 7, "timestamp": NOW}, NOW, DAY) == "invalid_type"
    assert event_problem({"type": 2, "timestamp": NOW - DAY}, NOW, DAY) == "timestamp_out_of_range"
    assert event_problem([], NOW, DAY) == "not_an_object"


def test_parse_batch_counts_each_left_out_event_under_the_reason_event_problem_gives() -> None:
    events: list[Any] = [
        {"type": 3, "timestamp": NOW},
        {"type": 3},
        {"type": 3, "timestamp": "now"},
        {"type": -1, "timestamp": NOW},
        {"type": 3, "timestamp": NOW + 7 * DAY},
        None,
    ]
    parsed = parse(batch(events=events))
    expected = [event_problem(e, NOW, 7 * DAY) for e in events[1:]]
    assert sorted(parsed.dropped.elements()) == sorted(r for r in expected if r is not None)
    assert len(parsed.dropped) == 4 and sum(parsed.dropped.values()) == 5


def test_a_message_over_the_kafka_limit_is_refused_with_413() -> None:
    check_message_size(9_000, 10_240)
    with pytest.raises(Rejection) as err:
        check_message_size(10_000, 10_240)
    assert (err.value.status, err.value.code) == (413, "batch_too_large")


# --- nesting depth (issue 12: every stage can handle what ingest accepts) ------


def nested(depth: int) -> bytes:
    """JSON text of ``depth`` containers inside each other, alternating arrays and
    objects (written out: orjson would refuse to serialise past 255 levels)."""
    opens = "".join('{"c":' if level % 2 else "[" for level in range(depth))
    closes = "".join("}" if level % 2 else "]" for level in reversed(range(depth)))
    return f"{opens}1{closes}".encode()


def with_raw(body: bytes, name: str, raw: bytes) -> bytes:
    """``body`` (a JSON object) with one more field whose value is the JSON text ``raw``."""
    return body[:-1] + f',"{name}":'.encode() + raw + b"}"


def body_of_depth(depth: int, **overrides: Any) -> bytes:
    """A valid batch whose deepest container is at ``depth`` (the root object is 1).

    The root object, the events array and the event object take 3 levels.
    """
    event = b'{"type":3,"timestamp":%d,"data":%s}' % (NOW, nested(depth - 3))
    return batch(events=[], **overrides).replace(b'"events":[]', b'"events":[' + event + b"]")


def depth_of(value: Any) -> int:
    """The reference: how deep containers nest in a parsed JSON value."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


# Small bodies are checked on their bytes, large ones by orjson inside wrapper arrays.
SIZES = {"small": "", "large": "x" * WRAPPED_PARSE_FROM_BYTES}


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
def test_a_batch_nested_exactly_to_the_limit_is_accepted(padding: str) -> None:
    body = body_of_depth(MAX_JSON_DEPTH, page_url=padding)
    assert depth_of(orjson.loads(body)) == MAX_JSON_DEPTH
    assert parse(body).envelope.raw_batch == body


@pytest.mark.parametrize("padding", SIZES.values(), ids=SIZES.keys())
def test_a_batch_nested_one_level_past_the_limit_is_refused(padding: str) -> None:
    rejection = rejection_of(body_of_depth(MAX_JSON_DEPTH + 1, page_url=padding))
    assert (rejection.status, rejection.code) == (400, "too_deeply_nested")
    assert str(MAX_JSON_DEPTH) in rejection.detail


@pytest.mark.parametrize(
    "body",
    [b"", b"1],[2", b'{"a":1}]]],[[[{"b":2}', b"[1]],[[2]"],
    ids=["empty", "two-values", "closes-three", "closes-one"],
)
def test_a_large_body_that_is_json_only_inside_the_wrapper_arrays_is_refused(body: bytes) -> None:
    padded = b" " * WRAPPED_PARSE_FROM_BYTES + body
    assert rejection_of(padded).code == "invalid_json"


def test_a_deep_batch_with_a_left_out_event_is_refused_before_it_is_serialised_again() -> None:
    # orjson cannot serialise past 255 levels: this batch used to end in a 500.
    deep = body_of_depth(260).replace(b'"events":[', b'"events":[{"type":"not a type"},')
    assert rejection_of(deep).code == "too_deeply_nested"


def test_deep_nesting_outside_the_events_is_refused_too() -> None:
    # The whole body is published as received, so every field counts.
    assert rejection_of(with_raw(batch(), "extra", nested(300))).code == "too_deeply_nested"


def test_nesting_past_orjsons_own_parse_limit_is_refused_as_too_deep() -> None:
    body = b'{"session_id":"s","events":' + b"[" * 1100 + b"]" * 1100 + b"}"
    assert rejection_of(body).code == "too_deeply_nested"


def test_brackets_quotes_and_backslashes_inside_strings_do_not_count_as_nesting() -> None:
    text = 'css: a[href] { color: red } ]]]}}} "quoted" \\ [[[{{{'
    body = body_of_depth(MAX_JSON_DEPTH, page_url=text)
    assert not nesting_deeper_than(body, MAX_JSON_DEPTH)
    assert nesting_deeper_than(body, MAX_JSON_DEPTH - 1)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet='[]{}"\\ab:,\n'),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), inner, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(min_value=0, max_value=12))
def test_nesting_deeper_than_agrees_with_a_walk_of_the_parsed_value(value: Any, limit: int) -> None:
    assert nesting_deeper_than(orjson.dumps(value), limit) == (depth_of(value) > limit)
