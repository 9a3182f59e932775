"""Checking a batch: ids, seq, events, timestamps, and the Kafka message limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.batch import Rejection, check_message_size, event_problem, parse_batch
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


@pytest.mark.parametrize("seq", [-1, 1.5, "3", True, 2**60])
def test_bad_seq_is_refused(seq: object) -> None:
    assert rejection_of(batch(seq=seq)).code == "invalid_seq"


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


def test_a_message_over_the_kafka_limit_is_refused_with_413() -> None:
    check_message_size(9_000, 10_240)
    with pytest.raises(Rejection) as err:
        check_message_size(10_000, 10_240)
    assert (err.value.status, err.value.code) == (413, "batch_too_large")


# --- the envelope reuses the body's events array ------------------------------

SESSION_BODY = {
    "session_id": "sess-1",
    "window_id": "w-1",
    "seq": 0,
    "page_url": "https://shop.example/",
}
EVENTS = [
    {"type": 4, "timestamp": NOW, "data": {"href": "https://shop.example/", "width": 1280}},
    {"type": 2, "timestamp": NOW + 1, "data": {"node": {"type": 0, "childNodes": []}}},
    {"type": 3, "timestamp": NOW + 2, "data": {"source": 5, "text": 'ünïcode [x] {y} "q"'}},
]


def assert_value_is_the_re_serialised_envelope(body: bytes) -> Any:
    parsed = parse(body)
    assert orjson.loads(parsed.envelope_json()) == orjson.loads(parsed.envelope.to_json())
    return parsed


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps({**SESSION_BODY, "events": EVENTS}),
        orjson.dumps({**SESSION_BODY, "events": EVENTS}, option=orjson.OPT_INDENT_2) + b"\n",
        b' { "session_id" : "s" ,\n "events" :\t[{"type":4,"timestamp":%d}] } ' % NOW,
        # the recorder's shape: consent after the events
        orjson.dumps({**SESSION_BODY, "events": EVENTS, "consent": True}),
        orjson.dumps({"events": EVENTS, **SESSION_BODY}, option=orjson.OPT_INDENT_2),
    ],
)
def test_a_body_with_events_last_is_spliced_into_the_envelope(body: bytes) -> None:
    parsed = assert_value_is_the_re_serialised_envelope(body)
    assert parsed.raw_events is not None
    assert orjson.loads(parsed.raw_events) == parsed.envelope.events


ONE_EVENT = b'[{"type":4,"timestamp":%d}]' % NOW


@pytest.mark.parametrize(
    "body",
    [
        # a later member that is not a plain scalar, or a "]" in a later string
        b'{"session_id":"s","events":%s,"consent":[true],"consent":true}' % ONE_EVENT,
        b'{"session_id":"s","events":%s,"page_url":"https://x/?a[]=1"}' % ONE_EVENT,
        b'{"session_id":"s","events":%s,"x":"q],","consent":true}' % ONE_EVENT,
        rb'{"session_id":"s","events":%s,"page\/url":"a","page/url":"b"}' % ONE_EVENT,
        b'{"session_id":"s","events":%s,"tags":{"a":[1]}}' % ONE_EVENT,
        # a later key that also appears inside the events
        b'{"session_id":"s","events":[{"type":4,"timestamp":%d,"consent":1}],"consent":true}' % NOW,
        # duplicate key: orjson keeps the last one
        b'{"session_id":"s","events":[{"type":0}],"events":%s}' % ONE_EVENT,
        # the duplicate spelled with a unicode escape
        b'{"session_id":"s","events":[{"type":0}],"\\u0065vents":%s}' % ONE_EVENT,
        b'{"session_id":"s","\\u0065vents":[{"type":4,"timestamp":%d,"data":{"events":[1]}}]}'
        % NOW,
        # an earlier member that is an object or array, or a key ending in "events"
        b'{"extra":{"events":[1]},"session_id":"s","events":%s}' % ONE_EVENT,
        b'{"tags":[1],"session_id":"s","events":%s}' % ONE_EVENT,
        b'{"session_id":"s","x\\"events":1,"events":%s}' % ONE_EVENT,
        # "events" inside the events, as a key or a value
        b'{"session_id":"s","events":[{"type":5,"timestamp":%d,"data":{"events":1}}]}' % NOW,
        b'{"session_id":"s","events":[{"type":5,"timestamp":%d,"data":"events"}]}' % NOW,
        # page_url with brackets
        b'{"session_id":"s","page_url":"https://x/?a[]=1","events":%s}' % ONE_EVENT,
    ],
)
def test_unusual_bodies_are_serialised_again(body: bytes) -> None:
    parsed = assert_value_is_the_re_serialised_envelope(body)
    assert parsed.raw_events is None


def test_a_batch_with_events_left_out_is_serialised_from_the_kept_events() -> None:
    body = orjson.dumps({**SESSION_BODY, "events": [*EVENTS, {"type": 99, "timestamp": NOW}]})
    parsed = assert_value_is_the_re_serialised_envelope(body)
    assert parsed.raw_events is None
    assert len(orjson.loads(parsed.envelope_json())["events"]) == len(EVENTS)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["events", "a", 'ev"ents', "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
_events = st.lists(
    st.fixed_dictionaries(
        {"type": st.integers(0, 7), "timestamp": st.just(NOW)}, optional={"data": _json_values}
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    members=st.dictionaries(
        st.sampled_from(["page_url", "consent", "extra", "events ", "tags", "seq"]),
        _json_values,
        max_size=3,
    ),
    events=_events,
    events_first=st.booleans(),
    indent=st.booleans(),
)
def test_the_envelope_value_always_equals_the_re_serialised_envelope(
    members: dict[str, Any], events: list[Any], events_first: bool, indent: bool
) -> None:
    members = {k: v for k, v in members.items() if k not in ("seq", "consent", "page_url")}
    doc = {"session_id": "s", **members, "events": events}
    if events_first:
        doc = {"events": events, **doc}
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2 if indent else 0)
    try:
        parsed = parse(body)
    except Rejection:
        return
    assert orjson.loads(parsed.envelope_json()) == orjson.loads(parsed.envelope.to_json())
