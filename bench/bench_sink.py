"""Sink benchmark (results in docs/benchmarks.md, section ``sink``).

1. Throughput: the same generated events (default 1M, plus a 200k run for
   continuity with earlier figures) go (a) through a real
   Kafka broker and the sink's EventWriter into the embedded engine (message
   bytes → incoming_batches → materialized views → events + sessions), and (b)
   as a raw clickhouse-connect columnar insert of the already-built event rows
   into a plain copy of ``events`` (20k and 100k rows per insert), in the same
   process and run, alternating, several rounds (default 5). Ratio = sink / the
   faster raw (medians), plus per-round ratios; CPU model, cores and load
   average before and after are printed (other work on the machine skews it).
2. Read latency on a large store (default 100k sessions, ~10.9M events, built
   once by columnar inserts of generated sessions under var/bench/sink-store):
   replay fetch of one ~2,000-event session and session-list queries through
   the real read API over HTTP; p50/p95.
3. Storage: compressed bytes per event (system.parts / system.columns).

    .venv/bin/python -m bench.bench_sink [--throughput-events 1000000] [--short-events 200000]
        [--rounds 5] [--warmup 1] [--sessions 100000] [--throughput-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from services.dev.kafka_broker import PROJECT_ROOT
from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.shared.topics import session_key
from services.sink import metrics
from services.sink.read_api import make_read_app
from services.sink.rows import INCOMING_COLUMNS, incoming_row, read_header, to_datetime
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, open_client, run_migrations
from services.sink.writer import EventWriter

ADMIN = "bench-admin"
EVENT_COLUMNS = (
    "site_id",
    "session_id",
    "window_id",
    "visitor_id",
    "seq",
    "idx",
    "ts",
    "received_at",
    "type",
    "source",
    "data",
    "size",
    "retention_days",
)
DAY_MS = 86_400_000


def session_envelopes(
    rng: random.Random, site: str, start_ms: int, mouse_moves: int
) -> list[BatchEnvelope]:
    s = generate_session(rng, site_id=site, start_ms=start_ms, mouse_moves=mouse_moves)
    return s.envelopes(start_ms, user_agent="Mozilla/5.0 (X11; Linux x86_64) bench", consent=True)


def event_columns(envelopes: list[BatchEnvelope], retention: int) -> list[list[Any]]:
    """The ``events`` rows of the envelopes, built in Python (what the raw insert gets)."""
    columns: list[list[Any]] = [[] for _ in EVENT_COLUMNS]
    for e in envelopes:
        received = to_datetime(e.received_at_ms)
        for idx, event in enumerate(e.events):
            data = orjson.dumps(event)
            etype = event["type"]
            source = event["data"].get("source", -1) if etype == 3 else -1
            row: tuple[Any, ...] = (e.site_id, e.session_id, e.window_id, e.visitor_id, e.seq, idx)
            row += (to_datetime(event["timestamp"]), received, etype, source, data, len(data))
            for column, value in zip(columns, (*row, retention), strict=True):
                column.append(value)
    return columns


def incoming_columns(envelopes: list[BatchEnvelope], retention: int) -> list[list[Any]]:
    """``incoming_batches`` rows of the envelopes (what the sink inserts)."""
    rows = [
        incoming_row(read_header(raw), raw, retention) for raw in (e.to_json() for e in envelopes)
    ]
    return [list(c) for c in zip(*rows, strict=True)]


# --- 1. throughput ------------------------------------------------------------------


async def throughput(
    store: ClickHouseStore, bootstrap: str, n_events: int, rounds: int, warmup: int
) -> dict[str, Any]:
    """Sink vs raw insert of the same events, alternating; the first ``warmup`` rounds
    (cold broker page cache, first planning of the views) are reported but not counted."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    rng = random.Random(5)
    now_ms = int(time.time() * 1000)
    envelopes: list[BatchEnvelope] = []
    while sum(len(e.events) for e in envelopes) < n_events:
        envelopes.extend(session_envelopes(rng, "tp", now_ms - rng.randint(0, DAY_MS), 30))
    total = sum(len(e.events) for e in envelopes)
    topic = f"bench-sink-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    for e in envelopes:
        await producer.send(topic, e.to_json(), key=session_key(e.site_id, e.session_id))
    await producer.flush()
    await producer.stop()
    raw_columns = event_columns(envelopes, 30)
    await store.command("CREATE TABLE IF NOT EXISTS raw_events AS events")

    sink_rates: list[float] = []
    sink_inserts: list[int] = []
    sink_busy: list[float] = []  # share of the sink's time with an insert running
    raw_rates: list[float] = []
    raw_big_rates: list[float] = []
    for _ in range(warmup + rounds):
        # (a) the sink: Kafka → header → one insert of the message bytes (views split and
        # summarise them into events and sessions) → commit
        await store.command("TRUNCATE TABLE events")
        settings = SinkSettings(
            group_id=f"bench-{uuid.uuid4().hex[:6]}",
            kafka=KafkaSettings(bootstrap_servers=bootstrap),
        )
        writer = EventWriter(settings, store, None, topic=topic, dlq_topic=topic + ".dlq")
        inserts_before = metrics.INSERTS._value.get()
        insert_s_before = metrics.INSERT_SECONDS._sum.get()
        await writer.start()
        task = asyncio.create_task(writer.run())
        # Time from the group join (a one-time cost per start) to the last row stored.
        assert writer.consumer is not None
        while not writer.consumer.assignment():  # noqa: ASYNC110 - aiokafka has no join event
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        while (await store.query("SELECT count() FROM events")).result_rows[0][0] < total:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling the store: no event to wait on
        elapsed = time.perf_counter() - started
        sink_rates.append(total / elapsed)
        sink_busy.append((metrics.INSERT_SECONDS._sum.get() - insert_s_before) / elapsed)
        sink_inserts.append(int(metrics.INSERTS._value.get() - inserts_before))
        await writer.stop()
        await task
        await writer.close()
        # (b) raw: the same event rows, already built, in 20k- and 100k-row columnar inserts
        for chunk_rows, rates in ((20_000, raw_rates), (100_000, raw_big_rates)):
            await store.command("TRUNCATE TABLE raw_events")
            started = time.perf_counter()
            for start in range(0, total, chunk_rows):
                chunk = [c[start : start + chunk_rows] for c in raw_columns]
                await store.insert_columns("raw_events", chunk, EVENT_COLUMNS, uuid.uuid4().hex)
            rates.append(total / (time.perf_counter() - started))
    await store.command("DROP TABLE raw_events")
    await store.command("TRUNCATE TABLE events")
    warm = {
        "sink": sink_rates[:warmup],
        "raw_20k": raw_rates[:warmup],
        "raw_100k": raw_big_rates[:warmup],
    }
    sink_rates, raw_rates, raw_big_rates = (
        sink_rates[warmup:],
        raw_rates[warmup:],
        raw_big_rates[warmup:],
    )
    sink_inserts, sink_busy = sink_inserts[warmup:], sink_busy[warmup:]
    sink = statistics.median(sink_rates)
    raw = max(statistics.median(raw_rates), statistics.median(raw_big_rates))
    return {
        "events": total,
        "messages": len(envelopes),
        "sink_rows_s": sink,
        "raw_20k_rows_s": statistics.median(raw_rates),
        "raw_100k_rows_s": statistics.median(raw_big_rates),
        "ratio": sink / raw,
        "round_ratios": [
            s / max(r20, r100)
            for s, r20, r100 in zip(sink_rates, raw_rates, raw_big_rates, strict=True)
        ],
        "sink_runs": sink_rates,
        "sink_inserts": sink_inserts,
        "sink_insert_busy": sink_busy,
        "warmup_runs": warm,
        "raw_20k_runs": raw_rates,
        "raw_100k_runs": raw_big_rates,
    }


def machine() -> str:
    """CPU model and cores (the load average is printed around each measurement)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, python {platform.python_version()}"


def load() -> str:
    """The 1/5/15-minute load average."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def print_throughput(label: str, tp: dict[str, Any]) -> None:
    """The figures of one throughput run, readable and complete."""

    def rates(values: list[float]) -> str:
        return " / ".join(f"{v:,.0f}" for v in values)

    print(f"throughput {label}: {tp['events']:,} events, {tp['messages']:,} messages")
    print(f"  sink      median {tp['sink_rows_s']:,.0f}/s  runs {rates(tp['sink_runs'])}")
    busy = " / ".join(f"{b:.0%}" for b in tp["sink_insert_busy"])
    print(f"            inserts per round {tp['sink_inserts']}, insert running {busy}")
    print(f"  raw 20k   median {tp['raw_20k_rows_s']:,.0f}/s  runs {rates(tp['raw_20k_runs'])}")
    print(f"  raw 100k  median {tp['raw_100k_rows_s']:,.0f}/s  runs {rates(tp['raw_100k_runs'])}")
    per_round = " / ".join(f"{r:.2f}" for r in tp["round_ratios"])
    print(f"  ratio (medians) {tp['ratio']:.2f}; per round {per_round}")
    warm = tp["warmup_runs"]
    if warm["sink"]:
        print(
            f"  warm-up (not counted): sink {rates(warm['sink'])}, raw 20k "
            f"{rates(warm['raw_20k'])}, raw 100k {rates(warm['raw_100k'])}",
            flush=True,
        )


# --- 2. large store -----------------------------------------------------------------


def build_dataset(store_client: Any, sessions: int) -> str:
    """Insert ``sessions`` generated sessions (plus one ~2,000-event session); returns its id."""
    rng = random.Random(11)
    now_ms = int(time.time() * 1000)
    pending: list[BatchEnvelope] = []
    target = session_envelopes(rng, "bench", now_ms - 2 * DAY_MS, 1880)
    pending.extend(target)
    done = 0
    for n in range(sessions):
        pending.extend(
            session_envelopes(
                rng, "bench", now_ms - rng.randint(0, 25 * DAY_MS), rng.randint(0, 30)
            )
        )
        if len(pending) >= 4000 or n == sessions - 1:
            store_client.insert(
                "incoming_batches",
                incoming_columns(pending, 365),
                column_names=list(INCOMING_COLUMNS),
                column_oriented=True,
            )
            done += sum(len(e.events) for e in pending)
            pending = []
            if n % 10_000 < 40:
                print(f"  built {n + 1} sessions, {done} events", flush=True)
    return target[0].session_id


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(p / 100 * (len(ordered) - 1)), len(ordered) - 1)]


async def read_latency(store: ClickHouseStore, target: str) -> dict[str, Any]:
    registry = SiteRegistry([SiteSettings(site_id="bench")])
    app = make_read_app(store, registry, SinkSettings(admin_token=ADMIN))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/v1/sites/bench"
    headers = {"Authorization": f"Bearer {ADMIN}"}
    results: dict[str, Any] = {}

    async def timed(
        session: aiohttp.ClientSession, url: str, params: dict[str, str] | None, n: int
    ) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            async with session.get(url, params=params, headers=headers) as response:
                body = await response.read()
                assert response.status == 200, body[:200]
            times.append((time.perf_counter() - started) * 1000)
        results.setdefault("bodies", {})[url + str(params)] = len(body)
        return times

    async with aiohttp.ClientSession() as http:
        await timed(http, f"{base}/sessions/{target}/events", None, 3)  # warm caches
        cases = {
            "replay_2000": (f"{base}/sessions/{target}/events", None, 50),
            "list_recent_50": (f"{base}/sessions", {"limit": "50"}, 20),
            "list_url_rage": (f"{base}/sessions", {"url": "/checkout", "rage": "1"}, 20),
            "list_min_duration_page3": (
                f"{base}/sessions",
                {"min_duration": "20", "sort": "-duration", "offset": "100"},
                20,
            ),
        }
        for name, (url, params, n) in cases.items():
            times = await timed(http, url, params, n)
            results[name] = {
                "p50_ms": statistics.median(times),
                "p95_ms": percentile(times, 95),
                "n": n,
            }
    await runner.cleanup()
    count = (
        await store.query(f"SELECT count() FROM events WHERE session_id = '{target}'")
    ).result_rows[0][0]
    results["replay_events"] = count
    return results


async def storage(store: ClickHouseStore) -> dict[str, Any]:
    parts = (
        await store.query(
            "SELECT sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) "
            "FROM system.parts WHERE active AND table = 'events' AND database = currentDatabase()"
        )
    ).result_rows[0]
    data_col = (
        await store.query(
            "SELECT data_compressed_bytes, data_uncompressed_bytes FROM system.columns "
            "WHERE table = 'events' AND name = 'data' AND database = currentDatabase()"
        )
    ).result_rows[0]
    sessions = (
        await store.query(
            "SELECT sum(data_compressed_bytes) FROM system.parts "
            "WHERE active AND table = 'sessions' AND database = currentDatabase()"
        )
    ).result_rows[0][0]
    summaries = (
        await store.query("SELECT count() FROM session_summaries WHERE site_id = 'bench'")
    ).result_rows[0][0]
    rows = parts[0]
    return {
        "events": rows,
        "sessions": summaries,
        "bytes_per_event": parts[1] / rows,
        "json_bytes_per_event_uncompressed": data_col[1] / rows,
        "json_bytes_per_event_compressed": data_col[0] / rows,
        "sessions_table_bytes_per_session": sessions / summaries,
    }


def run(args: argparse.Namespace) -> None:
    """All three parts, printing the figures as they come."""
    from tests.conftest import start_broker

    store_dir = Path(args.store).resolve()
    marker = store_dir / ".bench-sessions"
    if args.rebuild or not marker.exists() or marker.read_text() != str(args.sessions):
        shutil.rmtree(store_dir, ignore_errors=True)
    client = open_client(f"chdb://{store_dir}")
    run_migrations(client)
    print(f"machine: {machine()}")

    if not args.skip_throughput:
        broker_dir = Path("/tmp") / f"bench-sink-kafka-{uuid.uuid4().hex[:6]}"
        broker = start_broker(broker_dir)
        try:
            for n_events in (args.throughput_events, args.short_events):
                if n_events <= 0:
                    continue
                before = load()
                tp = asyncio.run(
                    throughput(
                        ClickHouseStore(client),
                        broker.bootstrap_servers,
                        n_events,
                        args.rounds,
                        args.warmup,
                    )
                )
                print_throughput(f"{n_events:,}", tp)
                print(f"  load average before {before}, after {load()}", flush=True)
        finally:
            broker.stop()
            shutil.rmtree(broker_dir, ignore_errors=True)
        marker.unlink(missing_ok=True)  # the throughput rounds truncated events: rebuild
    if args.throughput_only:
        client.close()
        return

    if not marker.exists():
        started = time.perf_counter()
        target = build_dataset(client, args.sessions)
        (store_dir / ".bench-target").write_text(target)
        marker.write_text(str(args.sessions))
        print(f"dataset built in {time.perf_counter() - started:.0f}s", flush=True)
    target = (store_dir / ".bench-target").read_text()
    time.sleep(5)  # let background merges settle a little
    print(f"storage: {asyncio.run(storage(ClickHouseStore(client)))}", flush=True)
    latency = asyncio.run(read_latency(ClickHouseStore(client), target))
    latency.pop("bodies", None)
    print(f"read latency: {latency}", flush=True)
    client.close()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(prog="bench_sink")
    parser.add_argument("--throughput-events", type=int, default=1_000_000)
    parser.add_argument(
        "--short-events", type=int, default=200_000, help="a second, short run (0: none)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first, not counted")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--store", default=str(PROJECT_ROOT / "var" / "bench" / "sink-store"))
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-only", action="store_true", help="skip the large store")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
