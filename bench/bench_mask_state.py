"""Size of the masker's per-session state (what the changelog stores) and the
time to mask, on four kinds of pages:

* ``generator``: the generator's pages (``services/dev/rrweb_gen.py``, ~11 KB snapshot);
* ``30KB`` / ``300KB``: the same sessions with full snapshots grown to that size
  (``bench.bench_ingest.grow_full_snapshot``, as ``bench/bench_masker.py`` does:
  a flat run of paragraphs, a regular shape);
* ``300KB tree``: grown instead with a random nested tree (1 to 6 children per
  element, up to 14 levels, text leaves), numbered depth-first as rrweb does —
  a shape that compresses worse;
* ``churn``: a 30 KB page followed by heavy mutation churn — a live feed that
  adds an item (``li > span > text``, one rrweb add per node) and removes an old
  one every event, a ticking clock text, class toggles, and once per batch a
  mark (``rr-mask``) added to the feed and then to a fresh item.

Every session is masked batch by batch with its state stored and reloaded as
JSON in between, as the masker does; a session's size is the largest state it
stored. Run it on the code to measure (it only uses ``mask_batch`` and
``SessionMaskState``, so it also runs on older code for a before/after):

    .venv/bin/python -m bench.bench_mask_state [--sessions 200] [--churn-batches 40]

Prints a Markdown table for docs/benchmarks.md (section ``mask-state``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from typing import Any

import orjson

from bench.bench_ingest import grow_full_snapshot
from services.dev.rrweb_gen import generate_session
from services.masker.rules import SessionMaskState, mask_batch
from services.shared.site_settings import SiteSettings

SITE = SiteSettings(site_id="demo")
FEED_ID = 900_000  # the feed list's id in the churn page
FIRST_ITEM_ID = 2_000_000


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def generated_batches(rng: random.Random, snapshot_bytes: int) -> list[list[dict[str, Any]]]:
    """One generated session's batches, full snapshots grown to ``snapshot_bytes``."""
    session = generate_session(rng, start_ms=1_700_000_000_000)
    for batch in session.batches:
        for event in batch:
            if event["type"] == 2 and snapshot_bytes:
                grow_full_snapshot(event, rng, snapshot_bytes)
    return [list(batch) for batch in session.batches]


def grow_random_tree(event: dict[str, Any], rng: random.Random, target_bytes: int) -> None:
    """Append a random nested tree of about ``target_bytes`` of JSON to a full snapshot."""
    next_id = 1_000_000
    size = 0
    words = ["price", "basket", "delivery", "order", "account", "product", "size", "colour"]

    def subtree(depth: int) -> dict[str, Any]:
        nonlocal next_id, size
        node_id = next_id
        next_id += 1
        if depth >= 14 or size >= target_bytes or rng.random() < 0.3:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 8)))
            size += len(text) + 40
            return {"type": 3, "id": node_id, "textContent": text}
        size += 80
        tag = rng.choice(("div", "span", "li", "ul", "a", "p", "section"))
        attrs = {"class": f"c{rng.randint(0, 99)}"}
        kids = [subtree(depth + 1) for _ in range(rng.randint(1, 6))]
        return {"type": 2, "id": node_id, "tagName": tag, "attributes": attrs, "childNodes": kids}

    children = []
    while size < target_bytes:
        children.append(subtree(1))
    event["data"]["node"]["childNodes"].append(
        {"type": 2, "id": next_id, "tagName": "div", "attributes": {}, "childNodes": children}
    )


def tree_batches(rng: random.Random, snapshot_bytes: int) -> list[list[dict[str, Any]]]:
    """A generated session whose full snapshots get a random nested tree."""
    batches = generated_batches(rng, 0)
    for batch in batches:
        for event in batch:
            if event["type"] == 2:
                grow_random_tree(event, rng, snapshot_bytes)
    return batches


def _mutation(t: int, **parts: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"source": 0, "texts": [], "attributes": [], "removes": [], "adds": []}
    data.update(parts)
    return {"type": 3, "timestamp": t, "data": data}


def churn_batches(rng: random.Random, batches: int, per_batch: int = 50) -> list[list[Any]]:
    """A 30 KB page, a feed list added under its body, then ``batches`` of churn."""
    first = generated_batches(rng, 30_000)[0]
    snapshot = next(e for e in first if e["type"] == 2)
    t = snapshot["timestamp"] + 1
    feed = {"type": 2, "id": FEED_ID, "tagName": "ul", "attributes": {}, "childNodes": []}
    clock = {"type": 3, "id": FEED_ID + 1, "textContent": "12:00:00"}
    setup = _mutation(
        t,
        adds=[
            {"parentId": 10, "nextId": None, "node": feed},
            {"parentId": 10, "nextId": None, "node": clock},
        ],
    )
    out: list[list[Any]] = [[snapshot, setup]]
    next_id = FIRST_ITEM_ID
    live: list[int] = []
    for _ in range(batches):
        batch: list[Any] = []
        for k in range(per_batch):
            t += 40
            li, span, text = next_id, next_id + 1, next_id + 2
            next_id += 3
            adds = [
                {"parentId": FEED_ID, "nextId": live[-1] if live else None,
                 "node": {"type": 2, "id": li, "tagName": "li",
                          "attributes": {"class": "item"}, "childNodes": []}},
                {"parentId": li, "nextId": None,
                 "node": {"type": 2, "id": span, "tagName": "span", "attributes": {},
                          "childNodes": []}},
                {"parentId": span, "nextId": None,
                 "node": {"type": 3, "id": text, "textContent": f"order {li} shipped"}},
            ]
            live.append(li)
            removes = []
            if len(live) > 30:
                removes.append({"parentId": FEED_ID, "id": live.pop(0)})
            texts = [{"id": FEED_ID + 1, "value": f"12:00:{k:02d}"}]
            toggled = rng.choice(live)
            attributes = [{"id": toggled, "attributes": {"class": f"item c{k % 3}"}}]
            if k == per_batch // 2:
                attributes.append({"id": FEED_ID, "attributes": {"class": "rr-mask"}})
            if k == per_batch - 1:
                attributes.append({"id": live[-2], "attributes": {"class": "item rr-mask"}})
            batch.append(
                _mutation(t, adds=adds, removes=removes, texts=texts, attributes=attributes)
            )
        out.append(batch)
    return out


def measure(sessions: list[list[list[Any]]]) -> tuple[list[int], float]:
    """Largest stored state per session (bytes) and masking seconds per batch."""
    sizes: list[int] = []
    elapsed = 0.0
    count = 0
    for batches in sessions:
        stored: Any = None
        largest = 0
        for batch in batches:
            events = orjson.loads(orjson.dumps(batch))  # mask_batch works in place
            started = time.perf_counter()
            state = SessionMaskState.from_dict(stored)
            mask_batch(events, state, SITE)
            value = orjson.dumps(state.to_dict())
            elapsed += time.perf_counter() - started
            count += 1
            stored = orjson.loads(value)
            largest = max(largest, len(value))
        sizes.append(largest)
    return sizes, elapsed / max(1, count)


def main() -> None:
    """Run the four workloads and print the results as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--churn-sessions", type=int, default=20)
    parser.add_argument("--churn-batches", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(13)
    workloads = {
        "generator": [generated_batches(rng, 0) for _ in range(args.sessions)],
        "30KB": [generated_batches(rng, 30_000) for _ in range(args.sessions)],
        "300KB": [generated_batches(rng, 300_000) for _ in range(args.sessions // 4)],
        "300KB tree": [tree_batches(rng, 300_000) for _ in range(args.sessions // 4)],
        "churn": [
            churn_batches(rng, args.churn_batches) for _ in range(args.churn_sessions)
        ],
    }
    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| page | sessions | state bytes p50 | p95 | max | ms per batch (mask + state) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, sessions in workloads.items():
        sizes, per_batch = measure(sessions)
        print(
            f"| {name} | {len(sessions)} | {percentile(sizes, 0.5):,} | "
            f"{percentile(sizes, 0.95):,} | {max(sizes):,} | {per_batch * 1000:.2f} |"
        )


if __name__ == "__main__":
    main()
