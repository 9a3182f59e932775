"""Read latency while the sink writes (results in docs/benchmarks.md, section ``sink-reads``).

A store of generated sessions (default 20k sessions plus one ~2,000-event
session, built once under var/bench/sink-reads) is served by the real read API
over HTTP while a writer inserts batches into ``incoming_batches`` back to back
through the store's write lane (the call the sink's writer makes; the views
split them into events and sessions), i.e. at the full insert rate. Measured,
per store layout, in the same run and alternating:

- ``one-lock``: one client and one lock for everything (the store before the
  lanes: reads wait for the insert in flight);
- ``lanes``: the store as the sink opens it (``ClickHouseStore.open``: a write
  connection, read connections, an analyst connection).

and per load: ``idle`` (no writes), ``writing`` (inserts back to back) and
``analyst`` (inserts back to back and an analyst query running all the time,
``--analyst-sql``). Reported: p50/p95 of the 2,000-event replay and of a
50-session list page, the insert rate and the insert p50/p95.

    .venv/bin/python -m bench.bench_sink_reads [--sessions 20000] [--requests 60] [--rounds 2]
        [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.bench_sink import (
    DAY_MS,
    build_dataset,
    incoming_columns,
    load,
    machine,
    percentile,
    session_envelopes,
)
from services.dev.kafka_broker import PROJECT_ROOT
from services.shared.envelope import BatchEnvelope
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink.analyst_sql import AnalystLimits
from services.sink.read_api import make_read_app
from services.sink.rows import INCOMING_COLUMNS
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore, LaneBusy, open_client, run_migrations

ADMIN = "bench-admin"
ANALYST_SQL = "SELECT session_id, uniqExact(data) FROM events GROUP BY session_id ORDER BY 2 DESC"


class OneLockStore(ClickHouseStore):
    """The store before the lanes: one client, every call behind one lock."""

    async def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        async with self._lock:
            return await super().query(sql, parameters, settings)

    async def raw_query(
        self, sql: str, parameters: dict[str, Any] | None = None, fmt: str = "TSVRaw"
    ) -> bytes:
        async with self._lock:
            return await super().raw_query(sql, parameters, fmt)

    async def analyst_sql(self, sql: str, limits: AnalystLimits) -> Any:
        async with self._lock:
            return await super().analyst_sql(sql, limits)


def build(store_dir: Path, sessions: int) -> str:
    """The read benchmark's store (``bench_sink``'s dataset); the ~2,000-event session's id."""
    client = open_client(f"chdb://{store_dir}")
    run_migrations(client)
    target = build_dataset(client, sessions)
    client.close()
    return target


def write_batches(count: int) -> list[list[list[Any]]]:
    """Pre-built insert batches (~20k events each, a new site so reads are not affected)."""
    rng = random.Random(7)
    now_ms = int(time.time() * 1000)
    batches = []
    for _ in range(count):
        envelopes: list[BatchEnvelope] = []
        while sum(len(e.events) for e in envelopes) < 20_000:
            envelopes.extend(session_envelopes(rng, "writes", now_ms - rng.randint(0, DAY_MS), 30))
        batches.append(incoming_columns(envelopes, 30))
    return batches


async def writer_loop(
    store: ClickHouseStore, batches: Sequence[list[list[Any]]], stop: asyncio.Event
) -> list[float]:
    """Insert the batches back to back until ``stop``; the insert times in ms."""
    times = []
    index = 0
    while not stop.is_set():
        started = time.perf_counter()
        await store.insert_columns(
            "incoming_batches", batches[index % len(batches)], INCOMING_COLUMNS, uuid.uuid4().hex
        )
        times.append((time.perf_counter() - started) * 1000)
        index += 1
    return times


async def analyst_loop(store: ClickHouseStore, stop: asyncio.Event) -> int:
    """Run the analyst query over and over until ``stop``; how many ran."""
    runs = 0
    limits = AnalystLimits(max_seconds=120)
    while not stop.is_set():
        with contextlib.suppress(LaneBusy):
            await store.analyst_sql(ANALYST_SQL, limits)
            runs += 1
    return runs


async def timed_requests(
    http: aiohttp.ClientSession, url: str, params: dict[str, str] | None, n: int, budget_s: float
) -> list[float]:
    """``n`` requests one after the other, fewer if ``budget_s`` runs out (slow layouts)."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < n and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        async with http.get(url, params=params, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            await r.read()
            assert r.status == 200, r.status
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)  # a viewer's pace, not a flood
    return times


def figures(times: list[float]) -> str:
    return f"p50 {statistics.median(times):6.1f} ms  p95 {percentile(times, 95):6.1f} ms"


async def measure(
    store: ClickHouseStore,
    target: str,
    load_kind: str,
    batches: Sequence[list[list[Any]]],
    requests: int,
    budget_s: float,
) -> dict[str, Any]:
    """Reads through the HTTP API under one load; returns the figures."""
    app = make_read_app(
        store, SiteRegistry([SiteSettings(site_id="bench")]), SinkSettings(admin_token=ADMIN)
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/v1/sites/bench"
    stop = asyncio.Event()
    background: list[asyncio.Task[Any]] = []
    if load_kind in ("writing", "analyst"):
        background.append(asyncio.create_task(writer_loop(store, batches, stop)))
    if load_kind == "analyst":
        background.append(asyncio.create_task(analyst_loop(store, stop)))
    started = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(0.5)  # let the load start
            replay = await timed_requests(
                http, f"{base}/sessions/{target}/events", None, requests, budget_s
            )
            listing = await timed_requests(
                http, f"{base}/sessions", {"limit": "50"}, requests, budget_s
            )
    finally:
        stop.set()
        done = await asyncio.gather(*background)
        await runner.cleanup()
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"replay": replay, "list": listing}
    if done:
        inserts = done[0]
        result["inserts"] = inserts
        result["insert_events_per_s"] = len(inserts) * 20_000 / elapsed
    if len(done) > 1:
        result["analyst_runs"] = done[1]
    return result


async def merges_settled(store: ClickHouseStore, limit_s: float = 30) -> None:
    """Wait (bounded) until the engine runs no merge: the previous load's leave CPU busy."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not (await store.query("SELECT count() FROM system.merges")).result_rows[0][0]:
            return
        await asyncio.sleep(0.5)


def clear_writes(url: str) -> None:
    """Delete what the write load stored, so every run reads the same store."""
    client = open_client(url)
    for table in ("events", "sessions"):
        client.command(f"DELETE FROM {table} WHERE site_id = 'writes'")
    client.close()


async def run(args: argparse.Namespace, store_dir: Path, target: str) -> None:
    batches = write_batches(4)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    url = f"chdb://{store_dir}"
    clear_writes(url)
    for round_ in range(args.rounds):
        # Alternate which layout goes first: the writes of one leave merges behind.
        for layout in ("one-lock", "lanes") if round_ % 2 == 0 else ("lanes", "one-lock"):
            if layout == "one-lock":
                client = open_client(url)
                store: ClickHouseStore = OneLockStore(client)
            else:
                store = ClickHouseStore.open(url)
            try:
                for load_kind in ("idle", "writing", "analyst"):
                    await merges_settled(store)
                    figures_ = await measure(
                        store, target, load_kind, batches, args.requests, args.seconds
                    )
                    results.setdefault((layout, load_kind), []).append(figures_)
                    print(f"  {layout:8} {load_kind:8} done", flush=True)
            finally:
                store.close()
    clear_writes(url)
    print(f"\nmachine: {machine()}; load average now {load()}")
    for (layout, load_kind), runs in results.items():
        replay = [t for r in runs for t in r["replay"]]
        listing = [t for r in runs for t in r["list"]]
        line = (
            f"{layout:8} {load_kind:8} replay {figures(replay)} (n={len(replay)})"
            f" | list {figures(listing)} (n={len(listing)})"
        )
        inserts = [t for r in runs for t in r.get("inserts", [])]
        if inserts:
            rate = statistics.median(r["insert_events_per_s"] for r in runs)
            line += f" | inserts {rate:,.0f} events/s, {figures(inserts)}"
        if any("analyst_runs" in r for r in runs):
            line += f" | analyst runs {sum(r.get('analyst_runs', 0) for r in runs)}"
        print(line)


def main() -> None:
    """Build the store once, then measure."""
    parser = argparse.ArgumentParser(prog="bench_sink_reads")
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=60, help="per endpoint and load")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--seconds", type=float, default=20, help="time budget per endpoint and load"
    )
    parser.add_argument("--store", default=str(PROJECT_ROOT / "var" / "bench" / "sink-reads"))
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    store_dir = Path(args.store).resolve()
    marker = store_dir / ".bench-target"
    if args.rebuild or not marker.exists():
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir(parents=True)
        started = time.perf_counter()
        marker.write_text(build(store_dir, args.sessions))
        print(f"store built in {time.perf_counter() - started:.0f}s", flush=True)
    asyncio.run(run(args, store_dir, marker.read_text()))


if __name__ == "__main__":
    main()
