"""Where the masker's batch walk spends its time while its rules are still Python.

The walk is compiled (``services/masker/core/src/walk.rs``); everything it calls
(the policy, the scrubber, the node index and tree, ``mask_text``) goes through
``walk_deps.rs``, which until the other parts are compiled in calls today's
Python objects. This masks the benchmark's batches (``bench/bench_masker.py``
data, no broker) once under ``cProfile`` and reports, per dependency, the calls
and the time inside them, against the walk's own time (``mask_events``'s time
outside any Python call): what wiring the parts natively can save. cProfile adds
a fixed cost per Python call, so the dependencies' share is an upper bound; the
unprofiled CPU time of the same masking is printed too. Run:

    .venv/bin/python -m bench.profile_walk [--sessions 100] [--snapshot-bytes 300000] [--page mixed]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.bench_masker import add_message_arguments, bench_registry, messages_for
from services.masker.batch import mask_batch
from services.masker.state import SessionMaskState
from services.shared.envelope import BatchEnvelope
from services.shared.site_settings import SiteRegistry

# Python functions the walk reaches through walk_deps.rs, by the part that owns them.
OWNERS = {
    "detectors.py": "rdet (scrubber, mask_text, detectors)",
    "token_rules.py": "rdet (scrubber, mask_text, detectors)",
    "sensitivity.py": "rdet (key words, sensitive names)",
    "policy.py": "rpol (element_value, change marks)",
    "selectors.py": "rpol (element_value, change marks)",
    "node_index.py": "ridx (index get/set/take/trim)",
    "node_tree.py": "ridx (tree, snapshot shape)",
    "state.py": "ridx (field_fingerprint, remember_field_name)",
}


def _mask_all(batches: list[tuple[bytes, list[object]]], registry: SiteRegistry) -> None:
    states: dict[bytes, SessionMaskState] = {}
    for key, events in batches:
        site = registry.get("demo")
        assert site is not None
        state = states.setdefault(key, SessionMaskState())
        mask_batch(events, state, site)  # type: ignore[arg-type]


def _fresh(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, list[object]]]:
    return [(key, orjson.loads(value)["events"]) for key, value in raw]


def _cpu(run: Callable[[], None]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def main() -> None:
    """Profile the walk on the benchmark's batches and print the split."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_message_arguments(parser, sessions=100)
    args = parser.parse_args()
    messages = messages_for(args)
    raw = [(m.key, m.value) for m in messages]
    BatchEnvelope.from_json(raw[0][1])  # the data is well-formed
    registry = bench_registry()

    _mask_all(_fresh(raw), registry)  # warm-up: caches, imports
    batches = _fresh(raw)
    unprofiled = _cpu(lambda: _mask_all(batches, registry))

    batches = _fresh(raw)
    profile = cProfile.Profile()
    profile.runcall(_mask_all, batches, registry)
    stats = pstats.Stats(profile)
    raw_stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw_stats = stats.stats  # type: ignore[attr-defined]
    by_owner: dict[str, float] = defaultdict(float)
    calls_by_owner: dict[str, int] = defaultdict(int)
    walk_own = 0.0
    total = 0.0
    for (filename, _line, name), (_cc, calls, tottime, cumtime, callers) in raw_stats.items():
        if name.endswith("mask_events>"):
            walk_own = tottime
            total = cumtime
            continue
        from_walk = any("mask_events" in str(caller) for caller in callers)  # type: ignore[attr-defined]
        owner = OWNERS.get(Path(filename).name)
        if owner is None and filename == "~":
            owner = (
                "ridx (snapshot shape recorders: list.append)"
                if from_walk
                else "builtins (re, str, hashlib...) inside the rules"
            )
        if owner is not None:
            by_owner[owner] += tottime
            if from_walk:  # calls made by the walk itself, not by the rules among themselves
                calls_by_owner[owner] += calls
    events = sum(len(events) for _, events in batches)
    print(f"data: {len(batches)} batches, {events} events, snapshots ~{args.snapshot_bytes} B "
          f"({args.page})")
    print(f"unprofiled CPU: {unprofiled:.2f} s ({events / unprofiled:,.0f} events/s)")
    print(f"profiled walk_batch total: {total:.2f} s")
    print("| part | time under cProfile | share | calls from the walk |")
    print("|---|---:|---:|---:|")
    print(f"| the walk itself (walk.rs, incl. walk_deps glue) | {walk_own:.2f} s | "
          f"{walk_own / total:.0%} | |")
    for owner, spent in sorted(by_owner.items(), key=lambda kv: -kv[1]):
        print(f"| {owner} | {spent:.2f} s | {spent / total:.0%} | {calls_by_owner[owner]:,} |")


if __name__ == "__main__":
    main()
