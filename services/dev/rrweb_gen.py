"""A generator of realistic rrweb sessions for tests, demos and benchmarks.

Each session is a page with a login/checkout form: a full snapshot (with a
stylesheet, text, an email field, a password field, a card field and a masked
note), then mouse moves, clicks, scrolls, a mutation adding a message, and
input events typing the visitor's secrets character by character, the way the
rrweb recorder emits them.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

from services.shared.envelope import BatchEnvelope, RrwebEvent

# Node ids of the generated page (stable, so tests can address nodes).
EMAIL_INPUT_ID = 20
PASSWORD_INPUT_ID = 22
CARD_INPUT_ID = 24
NOTE_TEXTAREA_ID = 26


@dataclass(slots=True)
class GeneratedSession:
    """One generated session: its batches of events and the secrets typed into it."""

    site_id: str
    session_id: str
    window_id: str
    visitor_id: str
    batches: list[list[RrwebEvent]]
    secrets: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[RrwebEvent]:
        """All events of the session, in order."""
        return [event for batch in self.batches for event in batch]

    def envelopes(
        self, received_at_ms: int, *, user_agent: str = "", consent: bool | None = None
    ) -> list[BatchEnvelope]:
        """The session's batches as ingest would publish them (``seq`` = batch number)."""
        return [
            BatchEnvelope(
                site_id=self.site_id,
                session_id=self.session_id,
                window_id=self.window_id,
                visitor_id=self.visitor_id,
                seq=seq,
                received_at_ms=received_at_ms,
                events=batch,
                user_agent=user_agent,
                consent=consent,
            )
            for seq, batch in enumerate(self.batches)
        ]


def random_id(rng: random.Random, length: int = 16) -> str:
    """A random id in the alphabet ingest accepts."""
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=length))


def _el(
    nid: int, tag: str, attrs: dict[str, Any], children: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"type": 2, "id": nid, "tagName": tag, "attributes": attrs, "childNodes": children}


def _text(nid: int, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "id": nid, "textContent": text, **extra}


def page_tree(url_title: str = "Checkout") -> dict[str, Any]:
    """The serialized DOM of the generated page (rrweb full snapshot ``data.node``)."""
    css = "body{font-family:sans-serif}.password-hint{color:#888}input[type=password]{width:20em}"
    head = _el(
        3,
        "head",
        {},
        [
            _el(4, "title", {}, [_text(5, url_title)]),
            _el(6, "style", {}, [_text(7, "", isStyle=True, textContent=css)]),
        ],
    )
    form = _el(
        12,
        "form",
        {"action": "/checkout", "method": "post"},
        [
            _el(13, "h1", {}, [_text(14, "Sign in and pay")]),
            _el(15, "p", {}, [_text(16, "Welcome back! Support: help@example.org")]),
            _el(19, "label", {}, [_text(190, "Email")]),
            _el(EMAIL_INPUT_ID, "input", {"type": "email", "name": "email", "value": ""}, []),
            _el(21, "label", {}, [_text(210, "Password")]),
            _el(
                PASSWORD_INPUT_ID,
                "input",
                {"type": "password", "name": "password", "value": ""},
                [],
            ),
            _el(23, "label", {}, [_text(230, "Card number")]),
            _el(
                CARD_INPUT_ID,
                "input",
                {"type": "text", "name": "cardnumber", "autocomplete": "cc-number", "value": ""},
                [],
            ),
            _el(25, "label", {}, [_text(250, "Note")]),
            _el(
                NOTE_TEXTAREA_ID, "textarea", {"name": "note", "data-recording-ignore": "mask"}, []
            ),
            _el(27, "button", {"type": "submit"}, [_text(28, "Pay now")]),
        ],
    )
    body = _el(
        10,
        "body",
        {},
        [
            _el(11, "div", {"id": "app", "class": "page"}, [form]),
            _el(30, "div", {"id": "messages"}, []),
        ],
    )
    html = _el(2, "html", {"lang": "en"}, [head, body])
    return {
        "type": 0,
        "id": 1,
        "childNodes": [
            {"type": 1, "id": 100, "name": "html", "publicId": "", "systemId": ""},
            html,
        ],
    }


def _typing(node_id: int, value: str, t: int, step: int) -> tuple[list[RrwebEvent], int]:
    events: list[RrwebEvent] = []
    for i in range(1, len(value) + 1):
        t += step
        events.append(
            {
                "type": 3,
                "timestamp": t,
                "data": {"source": 5, "id": node_id, "text": value[:i], "isChecked": False},
            }
        )
    return events, t


def generate_session(
    rng: random.Random | None = None,
    *,
    site_id: str = "demo",
    start_ms: int,
    mouse_moves: int = 40,
    batch_size: int = 50,
    password: str | None = None,
) -> GeneratedSession:
    """Generate one session starting at ``start_ms`` split into batches of ``batch_size``."""
    rng = rng or random.Random()
    password = password or "Pw-" + random_id(rng, 12)
    email = f"visitor.{random_id(rng, 6)}@mail.example"
    card = "4111 1111 1111 1111"
    note = "call me at home " + random_id(rng, 8)
    href = f"https://shop.example/checkout?step=pay&token={random_id(rng, 20)}"
    t = start_ms
    events: list[RrwebEvent] = [
        {"type": 4, "timestamp": t, "data": {"href": href, "width": 1280, "height": 800}},
        {
            "type": 2,
            "timestamp": t + 1,
            "data": {"node": page_tree(), "initialOffset": {"left": 0, "top": 0}},
        },
    ]
    t += 10
    for _ in range(mouse_moves):
        t += rng.randint(16, 60)
        positions = [
            {"x": rng.randint(0, 1279), "y": rng.randint(0, 799), "id": 11, "timeOffset": -k * 16}
            for k in range(3)
        ]
        events.append({"type": 3, "timestamp": t, "data": {"source": 1, "positions": positions}})
    for node_id, value in (
        (EMAIL_INPUT_ID, email),
        (PASSWORD_INPUT_ID, password),
        (CARD_INPUT_ID, card),
        (NOTE_TEXTAREA_ID, note),
    ):
        t += 200
        events.append(
            {
                "type": 3,
                "timestamp": t,
                "data": {
                    "source": 2,
                    "type": 2,
                    "id": node_id,
                    "x": 400,
                    "y": 300,
                    "pointerType": 0,
                },
            }
        )
        typed, t = _typing(node_id, value, t, rng.randint(60, 140))
        events.extend(typed)
    t += 300
    events.append({"type": 3, "timestamp": t, "data": {"source": 3, "id": 1, "x": 0, "y": 240}})
    t += 100
    events.append(
        {
            "type": 3,
            "timestamp": t,
            "data": {"source": 2, "type": 2, "id": 27, "x": 420, "y": 600, "pointerType": 0},
        }
    )
    t += 50
    events.append(
        {
            "type": 3,
            "timestamp": t,
            "data": {
                "source": 0,
                "texts": [],
                "attributes": [],
                "removes": [],
                "adds": [
                    {
                        "parentId": 30,
                        "nextId": None,
                        "node": _el(
                            40, "p", {"class": "ok"}, [_text(41, "Payment received, thank you")]
                        ),
                    }
                ],
            },
        }
    )
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    return GeneratedSession(
        site_id=site_id,
        session_id=random_id(rng, 24),
        window_id=random_id(rng, 8),
        visitor_id=random_id(rng, 16),
        batches=batches,
        secrets=[password, card.replace(" ", ""), note.split()[-1]],
    )
