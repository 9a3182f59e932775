"""Two builds of the masker's compiled core on the same messages, each in its own interpreter.

``bench/ab_pure.py`` compares two checkouts, but both import the compiled module
installed in ``.venv``, so it shows changes to the Python code only. Here each
side is a directory holding a ``replaypipe_masker_core`` package (a copy of
``.venv/lib/python3.11/site-packages/replaypipe_masker_core`` taken after a
build), put first on ``PYTHONPATH`` for ``bench/walk_parts.py`` in this
checkout; the sides alternate first place each pair. Keep a baseline before a
change, build, and compare:

    cp -r .venv/lib/python3.11/site-packages/replaypipe_masker_core /tmp/core-before/
    ./scripts/bootstrap.sh   # or maturin develop in services/masker/core
    cp -r .venv/lib/python3.11/site-packages/replaypipe_masker_core /tmp/core-after/
    .venv/bin/python -m bench.ab_core /tmp/core-before /tmp/core-after \
        --page mixed --snapshot-bytes 300000 --sessions 20 --pairs 3

Prints, per side, the median over the runs of each run's best CPU seconds for
the walk alone and for pure masking, the after/before ratios (also of the best
runs), and the median ``floor/pure`` ratio (the issue's measure).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from bench.bench_masker import add_message_arguments

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PARTS = {"walk": r"walk ([\d.]+) s", "pure": r"pure ([\d.]+) s", "ratio": r"floor/pure ([\d.]+)"}


def run_side(core_dir: Path, page: str, snapshot_bytes: int, sessions: int) -> dict[str, float]:
    """One ``walk_parts`` run with the core in ``core_dir``: its best seconds per part."""
    env = {**os.environ, "PYTHONPATH": f"{core_dir}{os.pathsep}{PROJECT_ROOT}"}
    out = subprocess.run(
        [sys.executable, "-m", "bench.walk_parts", "--page", page,
         "--snapshot-bytes", str(snapshot_bytes), "--sessions", str(sessions), "--rounds", "5"],
        cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout
    found: dict[str, float] = {}
    for name, pattern in PARTS.items():
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"walk_parts printed no {name!r}: {out!r}")
        found[name] = float(match.group(1))
    return found


def main() -> None:
    """Alternate the two cores and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    add_message_arguments(parser)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for pair in range(args.pairs):
        sides = ["before", "after"] if pair % 2 == 0 else ["after", "before"]
        for side in sides:
            core = (args.before if side == "before" else args.after).resolve()
            runs[side].append(run_side(core, args.page, args.snapshot_bytes, args.sessions))

    def median(side: str, part: str) -> float:
        return statistics.median(run[part] for run in runs[side])

    def best(side: str, part: str) -> float:
        return min(run[part] for run in runs[side])

    print(
        f"{args.page} ~{args.snapshot_bytes // 1000} KB, {args.sessions} sessions, "
        f"{args.pairs} pairs: "
        + "; ".join(
            f"{part} {median('before', part):.4f} -> {median('after', part):.4f} s "
            f"(x{median('after', part) / median('before', part):.2f}, best runs "
            f"x{best('after', part) / best('before', part):.2f})"
            for part in ("walk", "pure")
        )
        + f"; floor/pure {median('before', 'ratio'):.2f} -> {median('after', 'ratio'):.2f}"
    )


if __name__ == "__main__":
    main()
