"""The compiled core reads raw messages as orjson reads them, and writes what orjson reads back.

Ingest validated every message with orjson, so a message orjson accepts must be
accepted by the masker's parser (sonic-rs, ``services/masker/core/src/json_doc.rs``)
and mean the same thing: duplicate keys as a Python dict keeps them, ints and
floats as orjson types them, the same refusals, no crash on any nesting.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import orjson
import pytest
import replaypipe_masker_core as core
from hypothesis import given, settings
from hypothesis import strategies as st

from services.masker.batch import mask_batch
from services.masker.message import mask_message
from services.masker.state import SessionMaskState
from services.shared.envelope import EnvelopeError
from services.shared.site_settings import SiteRegistry, SiteSettings

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["", "\x00", "\x1f", "\x7f", "\u2028", "\U0001f600", '"\\', "é"])
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text(max_size=4), inner, max_size=5),
    max_leaves=40,
)


def strict(value: Any) -> Any:
    """``value`` with each type and each float's sign visible, dict order included."""
    if isinstance(value, dict):
        return ("dict", [(k, strict(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [strict(v) for v in value])
    if isinstance(value, float):
        return ("float", value, math.copysign(1.0, value))
    return (type(value).__name__, value)


def has_negative_zero(raw: bytes) -> bool:
    """A ``-0``, ``-0.0``… number in the text (the parser's one fallback case)."""
    def walk(v: Any) -> bool:
        if isinstance(v, float):
            return v == 0.0 and math.copysign(1.0, v) < 0
        if isinstance(v, dict):
            return any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return False
    return walk(orjson.loads(raw)) or b"-0" in raw


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_a_value_written_by_orjson_reads_and_writes_back_to_exactly_that_value(value: Any) -> None:
    raw = orjson.dumps(value)
    written = core.json_roundtrip(raw)
    if written is None:
        assert has_negative_zero(raw)
        return
    assert strict(orjson.loads(written)) == strict(orjson.loads(raw))


def _object_text(pairs: list[tuple[str, Any]]) -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in pairs) + b"}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "value", ""]), json_values), max_size=8),
       st.lists(st.tuples(st.sampled_from(["a", "b", "x"]), json_values), max_size=3))
def test_duplicate_keys_keep_the_last_value_at_the_first_keys_place_as_a_python_dict(
    pairs: list[tuple[str, Any]], outer: list[tuple[str, Any]]
) -> None:
    inner = _object_text(pairs)
    around = _object_text(outer)[:-1] + (b"," if outer else b"")
    raw = b"[" + inner + b"," + around + b'"in":' + inner + b"}]"
    written = core.json_roundtrip(raw)
    if written is None:
        assert has_negative_zero(raw)
        return
    assert strict(orjson.loads(written)) == strict(orjson.loads(raw))


def test_a_duplicate_key_in_a_big_object_is_normalised_too() -> None:
    pairs = [(f"k{i}", i) for i in range(40)] + [("k3", "last")]
    written = core.json_roundtrip(_object_text(pairs))
    assert written is not None
    assert list(orjson.loads(written).items()) == list(orjson.loads(_object_text(pairs)).items())


@pytest.mark.parametrize(
    "raw",
    [
        b"1", b"-0", b"-0.0", b"1.0", b"1e2", b"1E400", b"-1e400", b"18446744073709551615",
        b"18446744073709551616", b"-9223372036854775808", b"-9223372036854775809", b"NaN",
        b"Infinity", b"-Infinity", b"\xef\xbb\xbf[1]", b"[1] x", b"[1]  \n", b'"\xff"',
        b'"\\ud800"', b'"\\udc00x"', b'"\\ud800\\udc00"', b"1.5e-400", b"-1e-400", b"[1,]",
        b"01", b'"\x01"', b'"\x7f"', b"123456789012345678901234567890", b"", b" ", b"[",
        b'{"a" 1}', b"[-]", b"+1", b".5", b"1.", b'{"a":1,}', b"tru", b"nul", b"[1 2]",
    ],
)
def test_the_parser_accepts_and_refuses_what_orjson_accepts_and_refuses(raw: bytes) -> None:
    try:
        expected = orjson.loads(raw)
    except orjson.JSONDecodeError:
        with pytest.raises(ValueError) as refused:
            core.json_roundtrip(raw)
        # the reason names what is wrong, never the content
        assert raw.strip().decode("utf-8", "replace") not in str(refused.value) or len(raw) < 3
        return
    written = core.json_roundtrip(raw)
    if written is None:  # negative zero: the fallback (orjson reads it)
        assert raw.startswith(b"-0")
        return
    assert strict(orjson.loads(written)) == strict(expected)


def test_a_million_levels_of_nesting_are_left_to_orjson_which_refuses_them() -> None:
    assert core.json_roundtrip(b"[" * 1_000_000 + b"]" * 1_000_000) is None
    assert core.json_roundtrip(b'{"a":' * 500_000 + b"1" + b"}" * 500_000) is None
    deep = b'{"v":1,"events":' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    with pytest.raises(EnvelopeError, match="value is not JSON: depth limit exceeded"):
        mask_message(deep, None, SiteRegistry(), partition=0, offset=0)


def test_the_parser_reads_as_deep_as_orjson_writes_and_leaves_deeper_to_orjson() -> None:
    limit = core.MAX_PARSE_DEPTH
    assert limit == 254
    assert core.json_roundtrip(b"[" * limit + b"]" * limit) == b"[" * limit + b"]" * limit
    assert core.json_roundtrip(b"[" * (limit + 1) + b"]" * (limit + 1)) is None


def test_a_message_nested_past_the_parsers_depth_is_masked_through_orjson() -> None:
    payload: Any = "bob@example.com"
    for _ in range(300):
        payload = [payload]
    events = [{"type": 2, "data": {"node": {"type": 0, "id": 1, "childNodes": []}}},
              {"type": 5, "data": {"tag": "t", "payload": payload}}]
    raw = orjson.dumps(_envelope(events[:1]))[:-2] + b"," + _deep_text(300) + b"]}"
    with pytest.raises(Exception, match="levels deep") as too_deep:
        mask_message(raw, None, SiteRegistry(), partition=0, offset=0)
    assert type(too_deep.value).__name__ == "BatchTooDeep"


def _deep_text(levels: int) -> bytes:
    nested = b"[" * levels + b'"bob@example.com"' + b"]" * levels
    return b'{"type":5,"data":{"tag":"t","payload":' + nested + b"}}"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = orjson.dumps(["[" * 2000, "{\\\"[" * 500])
    assert core.json_roundtrip(raw) == raw


def test_a_message_orjson_reads_but_with_a_negative_zero_is_masked_through_orjson() -> None:
    event = {"type": 5, "data": {"tag": "t", "payload": {"n": -0.0, "m": 0}}}
    raw = orjson.dumps(_envelope([event])).replace(b'"m":0', b'"m":-0')
    masked = mask_message(raw, None, SiteRegistry(), partition=0, offset=0)
    assert masked.value is not None
    payload = orjson.loads(masked.value)["events"][0]["data"]["payload"]
    assert strict(payload) == strict({"n": -0.0, "m": 0})


def test_a_raw_value_given_as_a_memoryview_is_masked_as_bytes_are() -> None:
    raw = orjson.dumps(_envelope([{"type": 3, "data": {"source": 5, "id": 1, "text": "x"}}]))
    as_bytes = mask_message(raw, None, SiteRegistry(), partition=0, offset=0)
    as_view = mask_message(memoryview(raw), None, SiteRegistry(), partition=0, offset=0)  # type: ignore[arg-type]
    assert as_view.value == as_bytes.value and as_view.counts == as_bytes.counts


def test_a_value_that_is_not_json_is_refused_with_orjsons_reason() -> None:
    with pytest.raises(EnvelopeError, match="value is not JSON: trailing comma"):
        mask_message(b'{"v":1,"events":[1,]}', None, SiteRegistry(), partition=0, offset=0)


def test_the_masked_copy_of_a_duplicated_secret_is_the_one_published() -> None:
    event = (
        b'{"type":5,"data":{"tag":"t","payload":{"password":"first-secret",'
        b'"password":"second-secret"}}}'
    )
    raw = orjson.dumps(_envelope([]))[:-3] + b"[" + event + b"]}"
    masked = mask_message(raw, None, SiteRegistry(), partition=0, offset=0)
    assert masked.value is not None
    assert b"secret" not in masked.value.replace(b'"password"', b"")
    assert orjson.loads(masked.value)["events"][0]["data"]["payload"] == {"password": "*" * 13}


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**64 - 1))
def test_a_number_under_a_secret_key_is_masked_as_long_as_python_writes_it(number: float) -> None:
    events = [{"type": 5, "data": {"tag": "t", "payload": {"api_secret": number}}}]
    result = mask_batch(events, SessionMaskState(), SiteSettings(site_id="s"))
    assert result.events[0]["data"]["payload"]["api_secret"] == "*" * len(str(number))


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_the_message_path_masks_a_payload_as_the_batch_path_does(payload: Any) -> None:
    events = [{"type": 5, "data": {"tag": "t", "payload": payload}},
              {"type": 6, "data": {"plugin": "rrweb/console@1", "payload": payload}}]
    raw = orjson.dumps(_envelope(events))
    try:
        masked = mask_message(raw, None, SiteRegistry(), partition=0, offset=0)
    except Exception as exc:  # too deep to write: both paths refuse
        assert type(exc).__name__ == "BatchTooDeep"
        return
    counts: Counter[str] = Counter()
    copy = orjson.loads(orjson.dumps(events))
    result = mask_batch(copy, SessionMaskState(), SiteSettings(site_id="s"))
    counts.update(result.counts)
    assert masked.value is not None
    assert strict(orjson.loads(masked.value)["events"]) == strict(result.events)
    assert masked.counts == dict(counts)


def _envelope(events: list[Any]) -> dict[str, Any]:
    return {
        "v": 1, "site_id": "s", "session_id": "x", "window_id": "w", "visitor_id": "v",
        "seq": 0, "received_at": 1, "events": events,
    }
