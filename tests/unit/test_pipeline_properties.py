"""Property: any batch that ingest accepts passes the masker and the sink's row building.

Ingest's pure parse/validation (``services/ingest/batch.py``) is the gate; behind
it, ``mask_message`` and the sink's ``read_header``/``check_envelope``/
``incoming_row`` must never raise, whatever the payload: deep (up to
MAX_JSON_DEPTH), wide, huge or odd (any unicode, huge integers, floats, empty
keys, null data, unknown event and node types, rrweb shapes with wrong types).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.ingest.batch import Rejection, parse_batch
from services.masker.message import mask_message
from services.shared.limits import MAX_JSON_DEPTH
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink.rows import check_envelope, estimated_events, incoming_row, read_header
from tests.unit.masker_pages import nesting_depth

SITES = [
    SiteSettings(site_id="open", record_inputs=True),
    SiteSettings(site_id="strict", mask_text_selectors=(".x",), block_selectors=("div p",)),
    SiteSettings(site_id="consent", consent_mode="mask_until_consent"),
]
REGISTRY = SiteRegistry(SITES)
# The body object is level 1, ``events`` 2, an event 3: its ``data`` may nest this deep.
MAX_DATA_DEPTH = MAX_JSON_DEPTH - 3

# Text that makes each detector work hardest, big enough to matter, small enough to be quick.
HUGE_TEXTS = [
    "1 " * 20_000,
    "4111 " * 8_000,
    "a@" * 20_000,
    "DE12 3456 7890 1234 5678 90 " * 1_500,
    "?token=x&" * 4_000,
    "\U0001f600" * 10_000,
]
SECRET_LOOKING = [
    "4111 1111 1111 1111", "ann@mail.example", "?token=T0K3N", "DE89370400440532013000"
]

texts = st.text(st.characters(codec=None), max_size=40) | st.sampled_from(SECRET_LOOKING)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
keys = st.sampled_from(
    ["", "id", "type", "source", "text", "value", "attributes", "childNodes", "node",
     "adds", "removes", "texts", "payload", "tag", "plugin", "href", "tagName", "parentId"]
) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
    max_leaves=25,
)


def nest(depth: int, leaf: Any, as_objects: bool) -> Any:
    """``leaf`` inside ``depth`` levels of lists or single-key objects."""
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_objects else [value]
    return value


def dom_chain(depth: int, tag: str, text: str) -> dict[str, Any]:
    """A full snapshot node: elements nested ``depth`` deep with a text node at the bottom."""
    node: dict[str, Any] = {"type": 3, "id": depth + 2, "textContent": text}
    for level in range(depth, 0, -1):
        node = {
            "type": 2, "id": level + 1, "tagName": tag, "attributes": {"class": "x"},
            "childNodes": [node],
        }
    return {"type": 0, "id": 1, "childNodes": [node]}


deep_values = st.builds(
    nest, st.integers(1, MAX_DATA_DEPTH - 1), scalars | st.sampled_from(HUGE_TEXTS), st.booleans()
)
# Each DOM level is two JSON levels (the node object and its childNodes list).
deep_snapshots = st.builds(
    lambda depth, tag, text: {"node": dom_chain(depth, tag, text), "initialOffset": {}},
    st.integers(1, (MAX_DATA_DEPTH - 4) // 2),
    st.sampled_from(["div", "p", "input", "textarea", "style", "script", ""]),
    texts | st.sampled_from(HUGE_TEXTS),
)
nodes = st.recursive(
    st.fixed_dictionaries(
        {"type": st.integers(-1, 7), "id": st.integers(-5, 50) | scalars},
        optional={"textContent": texts | scalars, "tagName": texts, "isStyle": scalars},
    ),
    lambda kids: st.fixed_dictionaries(
        {"type": st.integers(-1, 7), "id": st.integers(-5, 50), "childNodes": st.lists(kids)},
        optional={"tagName": texts, "attributes": st.dictionaries(keys, texts | scalars)},
    ),
    max_leaves=20,
)
incremental = st.fixed_dictionaries(
    {"source": st.integers(-1, 20) | scalars},
    optional={
        "id": st.integers(-5, 50) | scalars,
        "text": texts | scalars,
        "adds": st.lists(
            st.fixed_dictionaries({"parentId": st.integers(-1, 50) | scalars, "node": nodes})
            | json_values
        ) | scalars,
        "texts": st.lists(st.fixed_dictionaries({"id": st.integers(-1, 50), "value": texts}))
        | json_values,
        "attributes": st.lists(
            st.fixed_dictionaries({"id": st.integers(-1, 50), "attributes": json_values})
        ) | json_values,
        "removes": json_values,
    },
)
event_data = st.one_of(
    st.none(),
    json_values,
    deep_values,
    deep_snapshots,
    st.fixed_dictionaries({"node": nodes}),
    incremental,
    st.fixed_dictionaries({"tag": texts, "payload": json_values | deep_values}),
    st.fixed_dictionaries(
        {"plugin": st.sampled_from(["rrweb/console@1", "x"]), "payload": json_values}
    ),
    st.fixed_dictionaries({"href": texts | scalars}),
)
events = st.fixed_dictionaries(
    {"type": st.integers(0, 6), "timestamp": st.integers(1, 2**41), "data": event_data},
    optional={"delay": scalars, "": json_values},
) | json_values  # not an event at all: ingest leaves it out


@st.composite
def batch_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """A site id and a request body as a client could send it (stdlib JSON: big ints as digits)."""
    doc: dict[str, Any] = {
        "session_id": draw(st.sampled_from(["s-1", "0", "A" * 70])),
        "seq": draw(st.integers(0, 2**33)),  # across MAX_SEQ: the sink stores UInt32
        "events": draw(st.lists(events, min_size=1, max_size=30)),
    }
    if draw(st.booleans()):
        doc["consent"] = draw(st.booleans())
    if draw(st.booleans()):
        doc["page_url"] = draw(texts)
    site = draw(st.sampled_from(SITES)).site_id
    return site, json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # same examples on every run: CI failures reproduce
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much
    ],
)
@given(batch_bodies())
def test_any_batch_ingest_accepts_is_masked_and_becomes_sink_rows(
    site_and_body: tuple[str, bytes],
) -> None:
    site_id, body = site_and_body
    try:
        parsed = parse_batch(
            body, site=REGISTRY.get(site_id) or SITES[0], now_ms=0, max_events=10**6,
            max_skew_ms=2**62,
        )
    except Rejection:
        assume(False)  # ingest answers 4xx: nothing reaches the masker
        return
    assume(nesting_depth(parsed.envelope.events) + 1 <= MAX_JSON_DEPTH)
    raw = parsed.envelope.to_json()

    masked = mask_message(raw, None, REGISTRY, partition=0, offset=0)

    if masked.value is not None:
        header = read_header(masked.value)
        check_envelope(masked.value)
        assert incoming_row(header, masked.value, 30)[0] == site_id
        assert estimated_events(masked.value) >= 0
