"""Pure masking of two checkouts on the same messages, each in its own interpreter.

``bench/bench_masker.py --baseline`` measures this checkout's pure masking in the
benchmark's own process (whose heap holds every generated message, so the garbage
collector's full passes cost more) and the baseline's in a fresh one; here both
sides run the same way (``baseline_pure_masking``), alternating first place each
round, against the ``orjson`` floor measured between them. Run:

    .venv/bin/python -m bench.ab_pure --after /tmp/after --before /tmp/before \
        --page article --snapshot-bytes 300000 --sessions 30 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import orjson

from bench.bench_masker import (
    add_message_arguments,
    baseline_pure_masking,
    messages_for,
    pure_floor,
)


def main() -> None:
    """Print each round's floor/masking ratio of both checkouts and their medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    add_message_arguments(parser, page="paragraphs", snapshot_bytes=30_000, sessions=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    messages = messages_for(args)
    ratios: dict[str, list[float]] = {"after": [], "before": []}
    with tempfile.TemporaryDirectory(prefix="ab-pure-") as tmp:
        data = Path(tmp) / "messages.json"
        data.write_bytes(orjson.dumps([[m.key.decode(), m.value.decode()] for m in messages]))
        for round_no in range(args.rounds):
            sides = ["after", "before"] if round_no % 2 == 0 else ["before", "after"]
            for side in sides:
                checkout = args.after if side == "after" else args.before
                floor = pure_floor(messages)
                ratios[side].append(floor / baseline_pure_masking(checkout.resolve(), data))
    print(
        f"{args.page} ~{args.snapshot_bytes // 1000} KB, {args.sessions} sessions: floor/masking "
        + "; ".join(
            f"{side} " + ", ".join(f"{r:.2f}" for r in values)
            + f" (median {statistics.median(values):.2f})"
            for side, values in ratios.items()
        )
    )


if __name__ == "__main__":
    main()
