"""A loop for ``perf`` over the masker's compiled core: pure masking of one page kind.

Builds the benchmark's messages (``bench/bench_masker.py`` data) once, then masks
them again and again for ``--seconds`` so a sampling profiler sees the core's
hot functions (the crate is built with symbols). Run under perf:

    perf record -g -o /tmp/core.perf -- .venv/bin/python -m bench.profile_core \
        --page article --snapshot-bytes 300000 --sessions 20 --seconds 20
    perf report -i /tmp/core.perf --no-children --percent-limit 1

Prints the best CPU seconds of the passes, and of ``orjson`` parse+dump of the
same messages run between them (the floor the benchmark compares with).
"""

from __future__ import annotations

import argparse
import time

from bench.bench_masker import (
    add_message_arguments,
    bench_registry,
    messages_for,
    pure_floor,
    pure_masking,
)


def main() -> None:
    """Mask the messages in a loop for the given time and print each pass's CPU seconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_message_arguments(parser)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    messages = messages_for(args)
    registry = bench_registry()
    end = time.monotonic() + args.seconds
    passes: list[float] = []
    floors: list[float] = []
    while time.monotonic() < end:
        # interleaved, so both see the same load; the best of each is the least disturbed
        floors.append(pure_floor(messages))
        passes.append(pure_masking(messages, registry)[0])
    best, floor = min(passes), min(floors)
    print(
        f"{args.page} ~{args.snapshot_bytes // 1000} KB: {len(passes)} passes, best "
        f"{best:.3f} s, floor {floor:.3f} s, floor/masking {floor / best:.2f}"
    )


if __name__ == "__main__":
    main()
