"""Heavy pages for the masker benchmark: what real sites put in a full snapshot.

The generator's page (``services/dev/rrweb_gen.py``) is a small checkout form;
real pages send hundreds of KB. Each kind here grows a generated session to
about ``target_bytes`` of JSON the way one kind of real page is heavy:

- ``paragraphs``: text paragraphs of lower-case words (the original benchmark page);
- ``css``: inline stylesheets (``<style>`` text, ``<link>`` with ``_cssText``) and
  ``style`` attributes, as CSS-in-JS and frameworks inline them;
- ``article``: long text with capitals, prices, dates, links and the odd email;
- ``small-text``: a shop grid and tables: thousands of short text nodes and
  utility classes with digits (``col-6 px-2``);
- ``spa``: a single-page app: a modest snapshot, then mutations that swap views,
  tick counters and toggle classes (mutation adds, texts and attributes);
- ``mixed``: a quarter of each of css, article, small-text and spa.

Node ids start at 1,000,000, clear of the generator's. Benchmark data only: the
tests use the generator's page.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from bench.bench_ingest import grow_full_snapshot
from services.shared.envelope import RrwebEvent

PAGE_KINDS = ("paragraphs", "css", "article", "small-text", "spa", "mixed")

_WORDS = tuple(
    " ".join(
        (
            "the delivery basket order account product size colour free returns within days",
            "of your purchase we ship to most countries and our team answers every message",
            "Sale New Arrivals Women Men Kids Home Gifts Brands Customer reviews Details",
            "Materials cotton wool recycled polyester Care instructions machine wash",
        )
    ).split(" ")
)
_CLASSES = (
    "col-6", "col-md-4", "px-2", "py-3", "mt-1", "mb-4", "d-flex", "gap-2", "text-sm",
    "font-bold", "card", "card-body", "btn", "btn-primary", "price", "grid", "w-100",
)
_CSS_PROPS = (
    "display:flex", "margin:0 auto", "padding:4px 12px", "color:#1a1a2e",
    "font-size:14px", "line-height:1.5", "border-radius:8px", "background:#f5f5f5",
    "grid-template-columns:repeat(4,1fr)", "transition:opacity .2s ease-in-out",
    "box-shadow:0 1px 3px rgba(0,0,0,.12)", "background-image:url(/img/bg-2x.png)",
)


class _Ids:
    def __init__(self) -> None:
        self.next = 1_000_000

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _el(
    ids: _Ids, tag: str, attrs: dict[str, Any], children: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "type": 2, "id": ids(), "tagName": tag, "attributes": attrs, "childNodes": children or [],
    }


def _text(ids: _Ids, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": 3, "id": ids(), "textContent": text, **extra}


def _sentence(rng: random.Random, words: int) -> str:
    picked = [rng.choice(_WORDS) for _ in range(words)]
    if rng.random() < 0.5:
        price = f"£{rng.randint(1, 499)}.{rng.randint(0, 99):02d}"
        picked.insert(rng.randrange(len(picked)), price)
    if rng.random() < 0.3:
        picked.insert(rng.randrange(len(picked)), f"{rng.randint(1, 28)} March 2025")
    if rng.random() < 0.02:
        picked.append("support@shop.example")
    return " ".join(picked).capitalize() + "."


def _stylesheet(rng: random.Random, rules: int) -> str:
    return "".join(
        f".c{rng.randint(0, 9999)} .{rng.choice(_CLASSES)}>a:hover{{"
        + ";".join(rng.sample(_CSS_PROPS, 3))
        + "}"
        for _ in range(rules)
    )


def _css(ids: _Ids, rng: random.Random, target: int) -> tuple[list[Any], list[Any]]:
    head: list[Any] = []
    body: list[Any] = []
    size = 0
    while size < target:
        sheet = _stylesheet(rng, rng.randint(20, 200))
        if rng.random() < 0.5:
            head.append(_el(ids, "style", {}, [_text(ids, sheet, isStyle=True)]))
        else:
            link = {"rel": "stylesheet", "href": "/app.css", "_cssText": sheet}
            head.append(_el(ids, "link", link))
        styled = [
            _el(ids, "div", {"class": rng.choice(_CLASSES), "style": _inline_style(rng)})
            for _ in range(rng.randint(5, 20))
        ]
        body.append(_el(ids, "div", {"class": "styled"}, styled))
        size += len(sheet) + 200 * len(styled)
    return head, body


def _inline_style(rng: random.Random) -> str:
    return ";".join(rng.sample(_CSS_PROPS, 4))


def _article(ids: _Ids, rng: random.Random, target: int) -> list[Any]:
    body: list[Any] = []
    size = 0
    while size < target:
        text = " ".join(_sentence(rng, rng.randint(8, 30)) for _ in range(rng.randint(3, 12)))
        link = _el(
            ids, "a", {"href": f"https://shop.example/p/{rng.randint(1, 99999)}?ref=article"},
            [_text(ids, "Read more")],
        )
        body.append(_el(ids, "p", {}, [_text(ids, text), link]))
        size += len(text) + 200
    return [_el(ids, "article", {"class": "post"}, body)]


def _tile(ids: _Ids, rng: random.Random) -> dict[str, Any]:
    name = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).title()
    return _el(ids, "div", {"class": f"{rng.choice(_CLASSES)} {rng.choice(_CLASSES)}"}, [
        _el(ids, "img", {"src": f"/img/{rng.randint(1, 9999)}.jpg", "alt": name}),
        _el(ids, "span", {"class": "name"}, [_text(ids, name)]),
        _el(ids, "span", {"class": "price"}, [_text(ids, f"£{rng.randint(1, 499)}.99")]),
        _el(ids, "span", {"class": "text-sm"}, [_text(ids, f"{rng.randint(1, 5)} colours")]),
        _el(ids, "button", {"class": "btn btn-primary", "type": "button"}, [_text(ids, "Add")]),
    ])


def _small_text(ids: _Ids, rng: random.Random, target: int) -> list[Any]:
    tiles: list[Any] = []
    size = 0
    while size < target:
        tiles.append(_tile(ids, rng))
        size += 700
    return [_el(ids, "div", {"class": "grid"}, tiles)]


def _view(ids: _Ids, rng: random.Random, target: int) -> dict[str, Any]:
    """One SPA view: a mix of tiles and text, about ``target`` bytes."""
    children: list[Any] = []
    size = 0
    while size < target:
        if rng.random() < 0.6:
            children.append(_tile(ids, rng))
            size += 700
        else:
            text = _sentence(rng, rng.randint(5, 25))
            children.append(_el(ids, "p", {"class": rng.choice(_CLASSES)}, [_text(ids, text)]))
            size += len(text) + 150
    return _el(ids, "main", {"class": "view"}, children)


def _spa_mutations(
    ids: _Ids, rng: random.Random, target: int, parent_id: int, start_ms: int
) -> list[RrwebEvent]:
    """Route changes (the old view removed, a new one added), price ticks, class toggles."""
    events: list[RrwebEvent] = []
    t = start_ms
    size = 0
    view: dict[str, Any] | None = None
    while size < target:
        t += rng.randint(200, 2000)
        removes = [{"parentId": parent_id, "id": view["id"]}] if view else []
        view = _view(ids, rng, rng.randint(2_000, 12_000))
        adds = [{"parentId": parent_id, "nextId": None, "node": view}]
        size += 8_000
        data = {"source": 0, "texts": [], "attributes": [], "removes": removes, "adds": adds}
        events.append({"type": 3, "timestamp": t, "data": data})
        spans = [c["childNodes"][2]["childNodes"][0]["id"] for c in view["childNodes"]
                 if c["tagName"] == "div"]
        for _ in range(rng.randint(3, 10)):
            t += rng.randint(16, 400)
            texts = [{"id": i, "value": f"£{rng.randint(1, 499)}.99"} for i in spans[:5]]
            attrs = [{"id": view["id"], "attributes": {"class": f"view {rng.choice(_CLASSES)}"}}]
            data = {"source": 0, "texts": texts, "attributes": attrs, "removes": [], "adds": []}
            events.append({"type": 3, "timestamp": t, "data": data})
            size += 300
    return events


def _body(snapshot: RrwebEvent) -> tuple[dict[str, Any], dict[str, Any]]:
    html = snapshot["data"]["node"]["childNodes"][-1]
    head, body = html["childNodes"][0], html["childNodes"][1]
    return head, body


def grow_session(
    events: list[RrwebEvent], rng: random.Random, target_bytes: int, kind: str
) -> list[RrwebEvent]:
    """The session's events with its full snapshot grown by ``kind`` (spa: mutations added)."""
    if kind not in PAGE_KINDS:
        raise ValueError(f"unknown page kind {kind!r}; one of {', '.join(PAGE_KINDS)}")
    out: list[RrwebEvent] = []
    for event in events:
        out.append(event)
        if event["type"] != 2 or not target_bytes:
            continue
        if kind == "paragraphs":
            grow_full_snapshot(event, rng, target_bytes)
            continue
        ids = _Ids()
        head, body = _body(event)
        parts = ("css", "article", "small-text", "spa") if kind == "mixed" else (kind,)
        share = target_bytes // len(parts)
        builders: dict[str, Callable[[_Ids, random.Random, int], list[Any]]] = {
            "article": _article,
            "small-text": _small_text,
        }
        for part in parts:
            if part == "css":
                head_nodes, body_nodes = _css(ids, rng, share)
                head["childNodes"].extend(head_nodes)
                body["childNodes"].extend(body_nodes)
            elif part == "spa":
                # a modest first view in the snapshot, the rest arrives as mutations
                first = _view(ids, rng, min(share, 20_000))
                body["childNodes"].append(first)
                out.extend(
                    _spa_mutations(ids, rng, share, body["id"], event["timestamp"])
                )
            else:
                body["childNodes"].extend(builders[part](ids, rng, share))
    return out
