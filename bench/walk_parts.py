"""Where pure masking's time goes: the compiled walk alone, beside parse and dump.

``bench/bench_masker.py``'s pure masking (``mask_message``) is ``orjson.loads`` of
the envelope, the walk (``mask_batch``: ``core.mask_events`` with all its rules),
the session state in and out, and ``orjson.dumps``. This script times the parts
on the same messages in one process, the garbage collector paused as
``mask_message`` pauses it, CPU time, best of ``--rounds``:

- ``loads``, ``dumps``: orjson on the raw values and on the parsed envelopes;
- ``walk``: ``mask_batch`` over every batch in order, each session's state
  carried from batch to batch in memory (parsing done before the clock starts);
- ``pure``: ``mask_message`` as the benchmark runs it, and ``floor/pure``.

``--walk-seconds N`` instead only runs the walk for N seconds on fresh parses
(parsed ahead, outside the clock), a loop for ``perf record`` that is mostly
the walk; ``--pure-seconds N`` loops ``mask_message`` (pure masking) alone:

    .venv/bin/python -m bench.walk_parts --page mixed --snapshot-bytes 300000
    perf record -o /tmp/walk.perf -- .venv/bin/python -m bench.walk_parts \
        --page mixed --snapshot-bytes 300000 --walk-seconds 20
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import orjson

from bench.bench_masker import (
    add_message_arguments,
    bench_registry,
    messages_for,
    pure_floor,
    pure_masking,
)
from services.masker.batch import mask_batch
from services.masker.message import collection_paused
from services.masker.state import SessionMaskState
from services.shared.site_settings import SiteRegistry, SiteSettings


def parsed(values: list[tuple[bytes, bytes]]) -> list[tuple[bytes, dict[str, Any]]]:
    """Every message's envelope as orjson parses it, with its key."""
    return [(key, orjson.loads(value)) for key, value in values]


def walk_seconds(docs: list[tuple[bytes, dict[str, Any]]], registry: SiteRegistry) -> float:
    """CPU seconds of ``mask_batch`` over every parsed envelope, states kept per session."""
    states: dict[bytes, SessionMaskState] = {}
    with collection_paused():
        started = time.process_time()
        for key, doc in docs:
            state = states.setdefault(key, SessionMaskState.from_dict(None))
            site = registry.get(doc["site_id"]) or SiteSettings(site_id=doc["site_id"])
            mask_batch(doc["events"], state, site, doc.get("consent"))
        return time.process_time() - started


def main() -> None:
    """Print the parts' best CPU seconds, or loop the walk for a profiler."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_message_arguments(parser)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--walk-seconds", type=float, default=0.0)
    parser.add_argument("--pure-seconds", type=float, default=0.0)
    args = parser.parse_args()
    messages = messages_for(args)
    values = [(m.key, m.value) for m in messages]
    registry = bench_registry()
    # Paused for the whole run, not only inside each part: parsed envelopes are
    # kept alive between the parse and the walk, and a collection after a pause
    # would walk them all (mask_message frees them before its pause ends).
    gc.disable()
    if args.walk_seconds:
        end = time.monotonic() + args.walk_seconds
        passes = []
        while time.monotonic() < end:
            docs = parsed(values)
            passes.append(walk_seconds(docs, registry))
        print(f"walk: {len(passes)} passes, best {min(passes):.4f} s")
        return
    if args.pure_seconds:
        end = time.monotonic() + args.pure_seconds
        passes = []
        while time.monotonic() < end:
            passes.append(pure_masking(messages, registry)[0])
        print(f"pure: {len(passes)} passes, best {min(passes):.4f} s")
        return
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    for _ in range(args.rounds):
        started = time.process_time()
        docs = parsed(values)
        keep("loads", time.process_time() - started)
        started = time.process_time()
        for _key, doc in docs:
            orjson.dumps(doc)
        keep("dumps", time.process_time() - started)
        del docs
        keep("walk", walk_seconds(parsed(values), registry))
        keep("floor", pure_floor(messages))
        keep("pure", pure_masking(messages, registry)[0])
    print(
        f"{args.page} ~{args.snapshot_bytes // 1000} KB, {args.sessions} sessions, best of "
        f"{args.rounds}: "
        + ", ".join(f"{name} {seconds:.4f} s" for name, seconds in best.items())
        + f"; walk/floor {best['walk'] / best['floor']:.2f}, floor/pure "
        f"{best['floor'] / best['pure']:.2f}"
    )


if __name__ == "__main__":
    main()
