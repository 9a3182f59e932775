"""The masker's per-session node state, compiled core against a baseline checkout.

Measures, on the node ids of heavy full snapshots (``bench/heavy_pages.py``,
~300 KB of JSON), what the walk does once per node and what every batch does
once per session:

* ``set + get``: ``SessionNodeIndex.set`` for every node in document order, then
  ``get`` of every node (the walk's per-node calls, through the Python face);
* ``shape``: recording the snapshot's shape (``recorders()``, one id and one
  depth per node) and encoding it (``to_dict``);
* ``state out`` / ``state in``: ``SessionMaskState.to_dict`` + ``orjson.dumps``, and
  ``orjson.loads`` + ``from_dict`` + a late mark's ``descendants`` (which decodes
  the shape), of the state the snapshot leaves.

The baseline is a checkout of the code before the core (``--baseline``, e.g. a
worktree of main): its ``node_index.py``, ``node_tree.py`` and ``state.py`` are
loaded from there by path, so both run in the same process and the same run.
Both must store the same bytes (checked). CPU time, median of ``--rounds``:

    .venv/bin/python -m bench.bench_node_state --baseline /tmp/base [--rounds 15]

Prints a Markdown table for docs/benchmarks.md (section ``node-state``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from bench.heavy_pages import grow_session
from services.dev.rrweb_gen import generate_session
from services.masker import node_index, node_tree, state

KINDS = ("mixed", "small-text", "paragraphs")


def load_baseline(root: Path) -> tuple[ModuleType, ModuleType, ModuleType]:
    """``node_index``, ``node_tree`` and ``state`` of the checkout at ``root``, by path."""
    names = ("node_index", "node_tree", "state")
    saved = {name: sys.modules[f"services.masker.{name}"] for name in names}
    loaded: list[ModuleType] = []
    try:
        for name in names:
            path = root / "services" / "masker" / f"{name}.py"
            spec = importlib.util.spec_from_file_location(f"baseline_{name}", path)
            if spec is None or spec.loader is None:
                raise SystemExit(f"bench_node_state: no {path}")
            module = importlib.util.module_from_spec(spec)
            # the baseline's state.py imports its siblings by package name: its own
            sys.modules[f"services.masker.{name}"] = sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            loaded.append(module)
    finally:
        for name, current in saved.items():
            sys.modules[f"services.masker.{name}"] = current
    return loaded[0], loaded[1], loaded[2]


def snapshot_walk(kind: str, target_bytes: int) -> list[tuple[int, int]]:
    """``(node id, depth)`` of a heavy page's full snapshot, in document order."""
    rng = random.Random(16)
    events = generate_session(rng, start_ms=1_700_000_000_000).batches[0]
    grown = grow_session(list(events), rng, target_bytes, kind)
    root = next(e for e in grown if e["type"] == 2)["data"]["node"]
    walk: list[tuple[int, int]] = []
    stack: list[tuple[dict[str, Any], int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        walk.append((node["id"], depth))
        for child in reversed(node.get("childNodes") or []):
            stack.append((child, depth + 1))
    return walk


def cpu_median(work: Callable[[], object], rounds: int) -> float:
    """Median CPU seconds of ``work`` over ``rounds`` runs."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times)


def workloads(
    index_mod: Any, tree_mod: Any, state_mod: Any, walk: list[tuple[int, int]]
) -> tuple[dict[str, Callable[[], object]], bytes]:
    """The four measured steps for one implementation, and the state bytes it stores."""
    ids = [node_id for node_id, _ in walk]
    # bits as a page has them: runs of equal values, a change every few nodes
    values = [(i // 7) % 3 * 2 for i in range(len(ids))]

    def set_get() -> object:
        index = index_mod.SessionNodeIndex()
        for node_id, value in zip(ids, values, strict=True):
            index.set(node_id, value)
        get = index.get
        return [get(node_id) for node_id in ids]

    def record_shape() -> object:
        shape = tree_mod.SnapshotShape()
        record_id, record_depth = shape.recorders()
        for node_id, depth in walk:
            record_id(node_id)
            record_depth(depth)
        return shape.to_dict()

    session = state_mod.SessionMaskState()
    shape = session.tree.start_snapshot()
    for node_id, depth in walk:
        shape.visit(node_id, depth)
        session.nodes.set(node_id, values[len(session.nodes) % len(values)])
    session.tree.end_snapshot()
    for offset in range(200):  # nodes added by mutations after the snapshot
        session.tree.add_parent(10_000_000 + offset, ids[offset * 7 % len(ids)])
    stored = orjson.dumps(session.to_dict())
    marked = ids[len(ids) // 3]

    def state_out() -> object:
        return orjson.dumps(session.to_dict())

    def state_in() -> object:
        loaded = state_mod.SessionMaskState.from_dict(orjson.loads(stored))
        return loaded.tree.descendants(marked)

    steps = {
        "set + get": set_get,
        "shape": record_shape,
        "state out": state_out,
        "state in": state_in,
    }
    return steps, stored


def main() -> None:
    """Measure both implementations on each page kind and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--bytes", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    base = load_baseline(args.baseline)
    print(f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| page | nodes | step | baseline µs | core µs | core / baseline |")
    print("|---|---:|---|---:|---:|---:|")
    for kind in KINDS:
        walk = snapshot_walk(kind, args.bytes)
        old_steps, old_stored = workloads(*base, walk)
        new_steps, new_stored = workloads(node_index, node_tree, state, walk)
        if old_stored != new_stored:
            raise SystemExit(f"bench_node_state: {kind}: the stored states differ")
        for name, old in old_steps.items():
            before = cpu_median(old, args.rounds)
            after = cpu_median(new_steps[name], args.rounds)
            print(
                f"| {kind} | {len(walk):,} | {name} | {before * 1e6:,.0f} | "
                f"{after * 1e6:,.0f} | {after / before:.2f} |"
            )
    print()
    print("Stored states identical on every page.")


if __name__ == "__main__":
    main()
