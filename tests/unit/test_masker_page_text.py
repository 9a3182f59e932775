"""Over-masking is a defect too: the share of visible page text the masker keeps.

``kept_text_share`` counts the characters of text nodes (not CSS, not script)
that come out unchanged. The generator pages' only masked text is the support
e-mail address; a prose page full of words like "password" and "token", dates,
prices and ordinary links keeps every character.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from services.dev.rrweb_gen import generate_session
from services.masker.rules import SessionMaskState, mask_batch
from services.shared.site_settings import SiteSettings

SITE = SiteSettings(site_id="t")
PROSE = (
    "Forgot your password? We will e-mail you a reset link.",
    "Your session expires after 30 minutes; the token ring network is down.",
    "Author: Jane Doe, published 2024-05-01, 7 min read, page 2 of 7.",
    "Basic plan: 9.99 EUR per month. Bearer bonds explained.",
    "Read https://shop.example/blog/spring-sale-2024-newsletter-promo?page=2 now.",
    "Shipping pin code, design notes and the sidebar stay visible.",
    "Order #4821 of 12 items, total 1,234.56 USD, call +1 555 0100.",
)


def _texts(node: dict[str, Any], out: list[str], in_style: bool = False) -> list[str]:
    tag = node.get("tagName")
    style = in_style or tag in ("style", "script")
    text = node.get("textContent")
    if isinstance(text, str) and not style and not node.get("isStyle"):
        out.append(text)
    for child in node.get("childNodes", []):
        _texts(child, out, style)
    return out


def _page_texts(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for event in events:
        data = event.get("data", {})
        if event.get("type") == 2:
            _texts(data["node"], out)
        elif event.get("type") == 3 and data.get("source") == 0:
            for add in data.get("adds", []):
                _texts(add["node"], out)
            out.extend(t["value"] for t in data.get("texts", []))
    return out


def kept_text_share(events: list[dict[str, Any]]) -> float:
    """Share of visible text characters that masking ``events`` leaves unchanged."""
    before = _page_texts(events)
    masked = mask_batch(orjson.loads(orjson.dumps(events)), SessionMaskState(), SITE).events
    after = _page_texts(masked)
    pairs = zip(before, after, strict=True)
    kept = sum(sum(a == b for a, b in zip(x, y, strict=True)) for x, y in pairs)
    return kept / max(1, sum(len(x) for x in before))


def _prose_page() -> list[dict[str, Any]]:
    paragraphs = [
        {"type": 2, "id": 10 + 2 * i, "tagName": "p", "attributes": {},
         "childNodes": [{"type": 3, "id": 11 + 2 * i, "textContent": line}]}
        for i, line in enumerate(PROSE)
    ]
    body = {"type": 2, "id": 3, "tagName": "body", "attributes": {}, "childNodes": paragraphs}
    html = {"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [body]}
    root = {"type": 0, "id": 1, "childNodes": [html]}
    return [{"type": 2, "timestamp": 1, "data": {"node": root, "initialOffset": {}}}]


def test_generator_pages_keep_all_visible_text_but_the_support_address() -> None:
    session = generate_session(random.Random(7), start_ms=0)
    email = len("help@example.org")
    total = sum(len(t) for t in _page_texts(session.events))
    assert kept_text_share(session.events) == (total - email) / total


def test_prose_about_passwords_tokens_and_prices_is_kept_whole() -> None:
    assert kept_text_share(_prose_page()) == 1.0
