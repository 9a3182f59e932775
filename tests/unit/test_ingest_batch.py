"""Checking a batch: ids, seq, events, timestamps, and the Kafka message limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

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
