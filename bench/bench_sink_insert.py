"""One sink insert, taken apart (results in docs/benchmarks.md, "One sink insert, taken apart").

The sink inserts about once a second per worker, and one insert into the embedded
engine costs a fixed amount of CPU whatever it holds. This times exactly that
insert — ``ClickHouseStore.insert_columns`` of N masked envelopes into
``incoming_batches`` of a fresh embedded store, the way the writer calls it — and
splits the cost by taking the schema apart: each variant is the shipped schema
with some statements run after the migrations (a view dropped, a table setting
changed) and/or other settings on the insert.

Each variant runs in a child process of its own (chdb opens one store per process):
``--warmup`` inserts, then ``--inserts`` timed ones, merges stopped so only the
insert itself is counted (``--merges`` leaves them on and counts their CPU too).
Per insert: the process's CPU time (all threads, ``time.process_time``), its user part
(CPU less the kernel's, which other processes' file churn makes noisy) and the
wall time; medians. Variants run in rotating order for ``--rounds`` rounds and
every figure is also given as a ratio to ``shipped`` of the same round.

    .venv/bin/python -m bench.bench_sink_insert [--messages 1,45,90] [--rounds 3]
        [--inserts 40] [--variants shipped,no_views,...] [--merges] [--list]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_sink import load, machine, session_envelopes
from services.shared.envelope import BatchEnvelope
from services.sink.rows import INCOMING_COLUMNS, incoming_row, read_header
from services.sink.schema import migrations, split_statements
from services.sink.store import INCOMING_TABLE, ClickHouseStore, open_client, run_migrations


@dataclass(frozen=True, slots=True)
class Variant:
    """The shipped schema plus ``ddl`` (run after the migrations) and insert ``settings``."""

    meaning: str
    ddl: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    table: str = INCOMING_TABLE
    upto: int | None = None  # apply migrations only up to this version


_NO_SESSIONS = ("DROP VIEW session_batches_mv", "DROP VIEW sessions_mv")
_NO_EVENTS = ("DROP VIEW events_mv",)


def _one_session_view() -> tuple[str, ...]:
    """session_batches_mv's query (as 0003 left it) folded into sessions_mv's GROUP BY."""
    shipped = {name: sql for _, name, sql in migrations()}
    batch_query = split_statements(shipped["linear_rage_clicks"])[0]
    batch_query = batch_query.removeprefix("ALTER TABLE session_batches_mv MODIFY QUERY")
    sessions_mv = next(
        s
        for s in split_statements(shipped["sessions"])
        if s.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv")
    )
    head, _, tail = sessions_mv.partition("FROM session_batches AS b")
    head = head.replace("sessions_mv", "sessions_one_mv", 1)
    return (*_NO_SESSIONS, f"{head}FROM ({batch_query}) AS b{tail}")


def _on_both_tables(alteration: str) -> tuple[str, ...]:
    """``ALTER TABLE … alteration`` of the two tables an insert writes parts into."""
    return tuple(f"ALTER TABLE {table} {alteration}" for table in ("events", "sessions"))


_PLAIN = ("CREATE TABLE plain_batches AS incoming_batches ENGINE = MergeTree ORDER BY tuple()",)

VARIANTS: dict[str, Variant] = {
    "shipped": Variant("the schema and insert as shipped"),
    "packed": Variant(
        "events and sessions write parts under 10 MiB as Packed (measured, not shipped: see "
        "docs/benchmarks.md, 'One sink insert, taken apart')",
        ddl=_on_both_tables("MODIFY SETTING min_bytes_for_full_part_storage = 10485760"),
    ),
    "null_only": Variant(
        "incoming_batches with no view: the query alone",
        ddl=("DROP VIEW parsed_batches_mv",),
    ),
    "plain_mergetree": Variant(
        "the same rows into a plain MergeTree (one part, no view)",
        ddl=_PLAIN,
        table="plain_batches",
    ),
    "parse_only": Variant(
        "parsed_batches_mv only (JSON parsed, nothing stored)",
        ddl=_NO_EVENTS + _NO_SESSIONS,
    ),
    "events_only": Variant("parse + events_mv → events (no sessions)", ddl=_NO_SESSIONS),
    "sessions_only": Variant("parse + session views → sessions (no events)", ddl=_NO_EVENTS),
    "sessions_no_mv": Variant(
        "parse + session_batches_mv into the Null table, no sessions_mv",
        ddl=(*_NO_EVENTS, "DROP VIEW sessions_mv"),
    ),
    "no_dedup_window": Variant(
        "events without its deduplication log",
        ddl=("ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 0",),
    ),
    "no_ttl": Variant(
        "events and sessions without TTL",
        ddl=_on_both_tables("REMOVE TTL"),
    ),
    "no_optimize_on_insert": Variant(
        "insert with optimize_on_insert = 0", settings={"optimize_on_insert": 0}
    ),
    "parallel_views": Variant(
        "insert with parallel_view_processing = 1", settings={"parallel_view_processing": 1}
    ),
    "one_thread": Variant("insert with max_threads = 1", settings={"max_threads": 1}),
    "no_jit": Variant("insert with compile_expressions = 0", settings={"compile_expressions": 0}),
    "sessions_one_view": Variant(
        "session_batches_mv and sessions_mv as one view (parsed_batches → sessions)",
        ddl=_one_session_view(),
    ),
    "fsync_after_insert": Variant(
        "insert with fsync_after_insert = 1 (for scale)",
        ddl=_on_both_tables("MODIFY SETTING fsync_after_insert = 1"),
    ),
    "no_dedup": Variant("insert with insert_deduplicate = 0", settings={"insert_deduplicate": 0}),
    "summary_0003": Variant(
        "the session summary's view as 0003 left it (the schema before 0006)", upto=5
    ),
    "summary_0003_view_only": Variant(
        "parse + session_batches_mv as 0003 left it into the Null table, no sessions_mv",
        ddl=(*_NO_EVENTS, "DROP VIEW sessions_mv"),
        upto=5,
    ),
}


def messages(count: int, seed: int = 7) -> list[BatchEnvelope]:
    """``count`` generated envelopes (batches of ~50 events, as the browser cuts them) of a
    few sessions each, now-ish."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out: list[BatchEnvelope] = []
    while len(out) < count:
        out.extend(session_envelopes(rng, "bench", now_ms - rng.randint(0, 600_000), 150))
    return out[:count]


def insert_columns(envelopes: list[BatchEnvelope]) -> list[list[Any]]:
    """The columns the writer builds for these envelopes (``batching.columns``)."""
    rows = [incoming_row(read_header(raw), raw, 30) for raw in (e.to_json() for e in envelopes)]
    return [list(c) for c in zip(*rows, strict=True)]


# --- child: one variant, one store -------------------------------------------------


def child(name: str, n_messages: int, inserts: int, warmup: int, merges: bool) -> dict[str, Any]:
    """Time ``inserts`` inserts of ``n_messages`` fresh messages each into a fresh store."""
    variant = VARIANTS[name]
    store_dir = Path(tempfile.mkdtemp(prefix="bench-sink-insert-"))
    try:
        # Client settings ride on every query of the client, the inserts included.
        client = open_client(f"chdb://{store_dir}", variant.settings or None)
        run_migrations(client, upto=variant.upto)
        for statement in variant.ddl:
            client.command(statement)
        if not merges:
            client.command("SYSTEM STOP MERGES")
        store = ClickHouseStore(client)
        batches = [insert_columns(messages(n_messages, seed=i)) for i in range(warmup + inserts)]

        async def timed() -> tuple[list[float], list[float], list[float], float, float]:
            cpu: list[float] = []
            wall: list[float] = []
            system: list[float] = []
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            for i, batch in enumerate(batches):
                if i == warmup:
                    started_cpu, started_wall = time.process_time(), time.perf_counter()
                c0, w0, s0 = time.process_time(), time.perf_counter(), os.times().system
                await store.insert_columns(variant.table, batch, INCOMING_COLUMNS, uuid.uuid4().hex)
                if i >= warmup:
                    cpu.append((time.process_time() - c0) * 1000)
                    wall.append((time.perf_counter() - w0) * 1000)
                    system.append((os.times().system - s0) * 1000)
            return (
                cpu,
                wall,
                system,
                time.process_time() - started_cpu,
                time.perf_counter() - started_wall,
            )

        cpu, wall, system, total_cpu, _ = asyncio.run(timed())
        if merges:
            # Let the merges of the timed inserts' parts run, and count their CPU too.
            c0 = time.process_time()
            time.sleep(3)
            total_cpu += time.process_time() - c0
        parts = client.query(
            "SELECT table, part_type, count(), sum(rows) FROM system.parts "
            "WHERE active AND database = currentDatabase() GROUP BY table, part_type "
            "ORDER BY table, part_type"
        ).result_rows
        stored = client.query("SELECT count() FROM events").result_rows[0][0]
        client.close()
        return {
            "variant": name,
            "messages": n_messages,
            "cpu_ms": statistics.median(cpu),
            "wall_ms": statistics.median(wall),
            "sys_ms": statistics.mean(system),
            # The engine's own work without the kernel's (part files), which other
            # processes' file churn makes noisy.
            "user_ms": statistics.median(c - k for c, k in zip(cpu, system, strict=True)),
            "total_cpu_ms_per_insert": total_cpu * 1000 / inserts,
            "parts": [list(p) for p in parts],
            "events_stored": stored,
        }
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)


# --- parent: rounds of children ----------------------------------------------------


def run_child(name: str, n_messages: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "bench.bench_sink_insert", "--child", name,
        "--messages", str(n_messages), "--inserts", str(args.inserts),
        "--warmup", str(args.warmup),
    ] + (["--merges"] if args.merges else [])  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> None:
    """Every variant and message count, ``rounds`` times in rotating order; print medians."""
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    if "shipped" not in names:
        names.insert(0, "shipped")
    counts = [int(n) for n in args.messages.split(",")]
    print(f"machine: {machine()}; load average before {load()}", flush=True)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_no in range(args.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            for n in counts:
                result = run_child(name, n, args)
                results.setdefault((name, n), []).append(result)
                print(
                    f"  round {round_no + 1} {name:<24} {n:>3} msgs: "
                    f"cpu {result['cpu_ms']:6.1f} ms (kernel {result['sys_ms']:5.1f})  "
                    f"wall {result['wall_ms']:6.1f} ms  (with background work "
                    f"{result['total_cpu_ms_per_insert']:6.1f} ms)",
                    flush=True,
                )
    print(f"load average after {load()}")
    print()
    print(
        "| variant | meaning | messages | CPU ms / insert | wall ms | vs shipped (CPU) "
        "| user CPU ms | vs shipped (user) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for n in counts:
            runs = results[(name, n)]
            base = results[("shipped", n)]
            cpu = statistics.median(r["cpu_ms"] for r in runs)
            wall = statistics.median(r["wall_ms"] for r in runs)
            ratio = statistics.median(
                r["cpu_ms"] / b["cpu_ms"] for r, b in zip(runs, base, strict=True)
            )
            user = statistics.median(r["user_ms"] for r in runs)
            user_ratio = statistics.median(
                r["user_ms"] / b["user_ms"] for r, b in zip(runs, base, strict=True)
            )
            print(
                f"| {name} | {VARIANTS[name].meaning} | {n} | {cpu:.1f} | {wall:.1f} | "
                f"{ratio:.2f} | {user:.1f} | {user_ratio:.2f} |"
            )
    print()
    for name in names:
        print(f"parts after {name} ({counts[-1]} msgs): {results[(name, counts[-1])][0]['parts']}")


def main() -> None:
    """Parse arguments; a child times one variant, the parent runs the rounds."""
    parser = argparse.ArgumentParser(prog="bench_sink_insert")
    parser.add_argument("--messages", default="1,45,90", help="messages per insert (list)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inserts", type=int, default=40, help="timed inserts per child")
    parser.add_argument("--warmup", type=int, default=5, help="inserts run first, not timed")
    parser.add_argument("--variants", default="", help="comma-separated (default: all)")
    parser.add_argument("--merges", action="store_true", help="leave merges on and count them")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list:
        for name, variant in VARIANTS.items():
            print(f"{name:<24} {variant.meaning}")
    elif args.child:
        result = child(args.child, int(args.messages), args.inserts, args.warmup, args.merges)
        print(json.dumps(result))
    else:
        run(args)


if __name__ == "__main__":
    main()
