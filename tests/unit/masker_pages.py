"""A small rrweb page and typing into it, as raw batches: shared by the masker's
unit tests and its broker tests."""

from __future__ import annotations

from typing import Any

import orjson

from services.shared.envelope import BatchEnvelope, RrwebEvent

START_MS = 1_700_000_000_000
HEADING_TEXT_ID = 5
CITY_INPUT_ID = 6
PASSWORD_INPUT_ID = 7


def envelope(site: str, session: str, seq: int, events: list[RrwebEvent]) -> BatchEnvelope:
    """A raw batch as ingest would publish it."""
    return BatchEnvelope(
        site_id=site,
        session_id=session,
        window_id="w1",
        visitor_id="v1",
        seq=seq,
        received_at_ms=START_MS + seq,
        events=events,
    )


def small_page(site: str, session: str) -> BatchEnvelope:
    """A full snapshot of a page with a heading, a city input and a password input."""
    tree = {
        "type": 0,
        "id": 1,
        "childNodes": [
            {
                "type": 2,
                "id": 2,
                "tagName": "html",
                "attributes": {},
                "childNodes": [
                    {
                        "type": 2,
                        "id": 3,
                        "tagName": "body",
                        "attributes": {},
                        "childNodes": [
                            {
                                "type": 2,
                                "id": 4,
                                "tagName": "h1",
                                "attributes": {},
                                "childNodes": [
                                    {"type": 3, "id": HEADING_TEXT_ID, "textContent": "Hello"}
                                ],
                            },
                            {
                                "type": 2,
                                "id": CITY_INPUT_ID,
                                "tagName": "input",
                                "attributes": {"type": "text", "name": "city"},
                                "childNodes": [],
                            },
                            {
                                "type": 2,
                                "id": PASSWORD_INPUT_ID,
                                "tagName": "input",
                                "attributes": {"type": "password", "name": "pw"},
                                "childNodes": [],
                            },
                        ],
                    }
                ],
            }
        ],
    }
    return envelope(
        site,
        session,
        0,
        [
            {"type": 4, "timestamp": START_MS, "data": {"href": "https://shop.example/"}},
            {"type": 2, "timestamp": START_MS + 1, "data": {"node": tree, "initialOffset": {}}},
        ],
    )


def typing_batch(site: str, session: str, seq: int, city: str, password: str) -> BatchEnvelope:
    """Inputs into the city and password fields, and a new heading text."""
    t = START_MS + 1000 * seq
    return envelope(
        site,
        session,
        seq,
        [
            {"type": 3, "timestamp": t, "data": {"source": 5, "id": CITY_INPUT_ID, "text": city}},
            {
                "type": 3,
                "timestamp": t + 1,
                "data": {"source": 5, "id": PASSWORD_INPUT_ID, "text": password},
            },
            {
                "type": 3,
                "timestamp": t + 2,
                "data": {
                    "source": 0,
                    "texts": [{"id": HEADING_TEXT_ID, "value": "Welcome"}],
                    "attributes": [],
                    "removes": [],
                    "adds": [],
                },
            },
        ],
    )


def typed_values(doc: dict[str, Any]) -> dict[Any, Any]:
    """Node id → the text the masked batch carries for it (inputs and text mutations)."""
    values: dict[Any, Any] = {}
    for event in doc["events"]:
        data = event.get("data", {})
        if data.get("source") == 5:
            values[data["id"]] = data["text"]
        elif data.get("source") == 0:
            values.update({t["id"]: t["value"] for t in data["texts"]})
    return values


def raw_with_custom_payload_nested(depth: int, site: str = "deep", session: str = "s1") -> bytes:
    """:func:`small_page` plus a custom event whose payload nests ``depth`` lists deep.

    Built as text: orjson itself refuses to write such a value.
    """
    page = orjson.loads(small_page(site, session).to_json())
    marker = '"__payload__"'
    page["events"].append(
        {"type": 5, "timestamp": 1, "data": {"tag": "app", "payload": "__payload__"}}
    )
    text = orjson.dumps(page).decode()
    return text.replace(marker, "[" * depth + "1" + "]" * depth).encode()


def nesting_depth(value: Any) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0, ``[]`` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest
