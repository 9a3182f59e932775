"""The string rules of the masker's compiled core against a baseline, in one run.

The baseline is another checkout's ``services`` package (for example main
before the rules moved to Rust, unpacked with ``git archive``), imported
first under its own module objects; then this checkout's. Both run the same
inputs in the same process:

- every string of the heavy benchmark pages (``bench/heavy_pages.py``: text
  nodes, attribute values, styles), each kind scrubbed as text by a fresh
  ``Scrubber`` (so its clean-text memory starts empty, as for a new policy);
- the worst-case texts of ``bench/bench_detectors.py``;
- ``key_is_secret`` over every attribute name and payload key of the pages.

CPU time (``time.process_time``), the median of ``--rounds`` rounds; the
ratio is baseline / this checkout (higher: this checkout is faster). Run:

    git archive <base> services | tar -x -C /tmp/base
    .venv/bin/python -m bench.bench_string_rules --baseline /tmp/base [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

PAGE_BYTES = 300_000


def load_rules(root: str | None) -> tuple[ModuleType, ModuleType]:
    """(detectors, sensitivity) of the checkout at ``root`` (None: this one)."""
    for name in [m for m in sys.modules if m == "services" or m.startswith("services.")]:
        del sys.modules[name]
    if root is not None:
        sys.path.insert(0, root)
    try:
        from services.masker import detectors, sensitivity
    finally:
        if root is not None:
            sys.path.remove(root)
    return detectors, sensitivity


def strings_of(value: Any, keys: list[str]) -> Iterator[str]:
    """Every string leaf of a JSON value (and its dict keys into ``keys``)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            keys.append(key)
            yield from strings_of(item, keys)
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item, keys)


def page_texts() -> dict[str, tuple[list[str], list[str]]]:
    """(strings, keys) of one generated session per heavy page kind."""
    from bench.heavy_pages import PAGE_KINDS, grow_session
    from services.dev.rrweb_gen import generate_session

    out: dict[str, tuple[list[str], list[str]]] = {}
    for kind in PAGE_KINDS:
        rng = random.Random(7)
        session = generate_session(rng, start_ms=1_700_000_000_000)
        events = grow_session(session.events, rng, PAGE_BYTES, kind)
        keys: list[str] = []
        texts = list(strings_of(events, keys))
        out[kind] = (texts, keys)
    return out


def median_cpu(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times)


def scrub_all(detectors: ModuleType, texts: list[str]) -> Callable[[], object]:
    def run() -> None:
        scrubber = detectors.Scrubber.build(("email", "card", "iban"), ("token", "email"))
        counts: Counter[str] = Counter()
        for text in texts:
            scrubber.scrub(text, counts)

    return run


def secret_keys(sensitivity: ModuleType, keys: list[str]) -> Callable[[], object]:
    def run() -> None:
        check = sensitivity.key_is_secret
        for key in keys:
            check(key)

    return run


def main() -> None:
    """Time every case with both implementations and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="root of the baseline checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kib", type=int, default=64, help="size of each worst-case text")
    args = parser.parse_args()
    pages = page_texts()
    from bench.bench_detectors import CASES

    worst_cases = {name: build(args.kib * 1024) for name, build in CASES.items()}
    implementations = {"baseline": load_rules(args.baseline), "core": load_rules(None)}
    rows: list[tuple[str, float, float]] = []

    def measure(name: str, runs: dict[str, Callable[[], object]]) -> None:
        # interleaved rounds, so load changes hit both alike
        base = median_cpu(args.rounds, runs["baseline"])
        core = median_cpu(args.rounds, runs["core"])
        rows.append((name, base, core))

    for kind, (texts, keys) in pages.items():
        measure(
            f"scrub, {kind} page ({len(texts):,} strings)",
            {k: scrub_all(d, texts) for k, (d, _) in implementations.items()},
        )
        measure(
            f"key_is_secret, {kind} page ({len(keys):,} keys)",
            {k: secret_keys(s, keys) for k, (_, s) in implementations.items()},
        )
    for name, text in worst_cases.items():
        measure(
            f"scrub, worst case: {name} ({args.kib} KiB)",
            {k: scrub_all(d, [text]) for k, (d, _) in implementations.items()},
        )
    print(f"CPU ms, median of {args.rounds} rounds; ratio = baseline / core.\n")
    print("| case | baseline ms | core ms | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, base, core in rows:
        print(f"| {name} | {base * 1e3:,.2f} | {core * 1e3:,.2f} | {base / max(core, 1e-9):,.1f} |")


if __name__ == "__main__":
    main()
