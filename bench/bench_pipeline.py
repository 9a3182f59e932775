"""The whole pipeline at once (issue 16 item 2), next to Kafka's own ceiling.

A fresh broker, ingest, masker and sink (embedded chdb) as separate processes in
a temp folder, started as ``replaypipe run`` starts them
(:mod:`bench.pipeline_stack`). A load generator process (``bench/pipeline_load.py``)
offers generated sessions (``services/dev/rrweb_gen.py``, full snapshots grown to
``--snapshot-bytes``) to ingest at a rate that steps up until a step is not
sustained: freshness p95 over ``--freshness-s`` (default 2 s), a refused request,
or the load falling behind. Freshness is POST → queryable: this process posts a
one-batch marker session to a site of its own every ``--marker-interval`` seconds
and polls the read API's session list for it. Per step: events/s, freshness
p50/p95, each stage's CPU seconds per million events (``/proc/<pid>/stat``,
including the drain after the load stops) and peak RSS.

Then, with the services stopped, bytes on disk per million events: Kafka log
segments of ``recordings.raw`` / ``recordings.masked`` and ClickHouse
``system.parts``; and on the same broker Kafka's ``ProducerPerformance`` /
``ConsumerPerformance`` with the records' measured sizes and the stages'
compression (:mod:`bench.pipeline_ceiling`), so each stage's rate is stated as a
fraction of what the broker itself moves here. Run:

    .venv/bin/python -m bench.bench_pipeline [--quick] [--raw-encryption on|off]

``make bench-pipeline`` runs the default (a few minutes). Prints Markdown for
docs/benchmarks.md (section ``pipeline``) and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.bench_ingest import cpu_model, grow_full_snapshot, machine_busy_cpu_s
from bench.bench_masker import build_messages, end_offsets
from bench.pipeline_ceiling import CeilingRun, RecordShape, measure_ceiling
from bench.pipeline_figures import (
    CpuLine,
    cores_per_100k,
    cpu_s_per_million,
    events_per_core_s,
    fit_cpu_line,
    next_rate,
    percentile,
    step_verdict,
)
from bench.pipeline_stack import (
    LOAD_KEY,
    MARK_KEY,
    MARK_SITE,
    READ_TOKEN,
    STAGES,
    PeakMemory,
    bench_stack,
    clickhouse_parts,
    clickhouse_url,
    cpu_by_stage,
    stage_pids,
    topic_log_bytes,
)
from services.dev.kafka_broker import PROJECT_ROOT
from services.dev.rrweb_gen import generate_session
from services.shared import topics

BODY_FIELDS = ("session_id", "window_id", "visitor_id", "seq", "events")
# After the load of a step stops: markers that make sure every partition drained.
DRAIN_MARKERS = 8


def build_bodies(sessions: int, snapshot_bytes: int, sessions_at_once: int = 10) -> list[bytes]:
    """POST bodies of generated sessions, ``sessions_at_once`` of them interleaved at a time.

    Small groups, not all sessions round-robin: every step's load starts again at
    the first body, so a short step must already see whole sessions (first batches
    with full snapshots, then the smaller ones), not only first batches.
    """
    bodies = []
    for group in range(0, sessions, sessions_at_once):
        count = min(sessions_at_once, sessions - group)
        for message in build_messages(count, snapshot_bytes, seed=group):
            envelope = orjson.loads(message.value)
            bodies.append(orjson.dumps({name: envelope[name] for name in BODY_FIELDS}))
    return bodies


@dataclass(slots=True)
class Marker:
    """One marker session: when it was posted and when the read API first listed it."""

    start_ms: int
    sent_at: float
    counted: bool  # False for the drain markers sent after a step's load
    seen_at: float | None = None


@dataclass
class Markers:
    """Posts marker sessions to ingest and watches the read API's list for them."""

    http: aiohttp.ClientSession
    ingest_url: str
    read_url: str
    snapshot_bytes: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    sent: dict[str, Marker] = field(default_factory=dict)
    accepted_events: int = 0
    refused: int = 0
    # Set by a poll that found every posted marker listed.
    all_listed: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_one(self, *, counted: bool) -> None:
        """Post the first batch of a new session (with a grown full snapshot)."""
        start_ms = int(time.time() * 1000)
        session = generate_session(self.rng, site_id=MARK_SITE, start_ms=start_ms)
        events = session.batches[0]
        for event in events:
            if event["type"] == 2 and self.snapshot_bytes:
                grow_full_snapshot(event, self.rng, self.snapshot_bytes)
        body = orjson.dumps(
            {
                "session_id": session.session_id,
                "window_id": session.window_id,
                "visitor_id": session.visitor_id,
                "seq": 0,
                "events": events,
            }
        )
        marker = Marker(start_ms=start_ms, sent_at=time.monotonic(), counted=counted)
        try:
            async with self.http.post(
                self.ingest_url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if status != 202:
            self.refused += 1
            return
        self.accepted_events += len(events)
        self.sent[session.session_id] = marker

    def pending(self) -> list[Marker]:
        """Markers posted and not listed yet."""
        return [m for m in self.sent.values() if m.seen_at is None]

    async def poll_once(self) -> None:
        """One list request for the sessions since the oldest pending marker."""
        pending = self.pending()
        if not pending:
            self.all_listed.set()
            return
        since = min(m.start_ms for m in pending) - 1000
        params = {"from": str(since), "limit": "1000", "sort": "-start"}
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        try:
            async with self.http.get(self.read_url, params=params, headers=headers) as response:
                if response.status != 200:
                    return
                doc = await response.json(loads=orjson.loads)
        except (aiohttp.ClientError, TimeoutError):
            return
        now = time.monotonic()
        for row in doc["sessions"]:
            marker = self.sent.get(row["session_id"])
            if marker is not None and marker.seen_at is None:
                marker.seen_at = now

    async def watch(self, interval_s: float) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_once()
            await asyncio.sleep(interval_s)

    async def post_every(self, interval_s: float, until: asyncio.Future[Any]) -> None:
        """Post a counted marker every ``interval_s`` until ``until`` is done."""
        next_at = time.monotonic()
        while not until.done():
            await self.post_one(counted=True)
            next_at += interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(until), max(0.0, next_at - time.monotonic()))

    async def drained(self, timeout_s: float) -> int:
        """Post the drain markers and wait for every marker to be listed; the missing count."""
        for _ in range(DRAIN_MARKERS):
            await self.post_one(counted=False)
        self.all_listed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_listed.wait(), timeout_s)
        return len(self.pending())


@dataclass
class StepResult:
    """One offered rate: what was carried, how fresh, at what cost per stage."""

    offered_events_per_s: float
    seconds: float
    load: dict[str, float]
    events: int
    events_per_s: float
    freshness_s: list[float]
    markers_missing: int
    cpu_s: dict[str, float]
    peak_rss: dict[str, int]
    machine_cpu_pct: float
    drain_s: float
    wall_s: float  # load plus drain: the window the CPU was counted in
    sustained: bool = False
    reason: str = ""
    cost_only: bool = False  # a step past the search, run for the CPU line

    def freshness(self, fraction: float) -> float:
        """A percentile of the step's marker freshness, seconds."""
        return percentile(self.freshness_s, fraction)

    def cpu_per_m(self, stage: str) -> float:
        """The stage's CPU seconds per million events of this step."""
        return cpu_s_per_million(self.cpu_s[stage], self.events)

    def cores(self, stage: str) -> float:
        """Cores the stage kept busy over the step (load and drain)."""
        return self.cpu_s[stage] / self.wall_s

    @property
    def wall_events_per_s(self) -> float:
        """Events per second over the same window as :meth:`cores`."""
        return self.events / self.wall_s


@dataclass
class Pipeline:
    """The running stack and what the steps need of it."""

    pids: dict[str, int]
    ingest_url: str
    read_url: str
    bodies_file: Path
    args: argparse.Namespace
    steps_run: int = 0
    total_events: int = 0

    async def step(self, rate: float, seconds: float) -> StepResult:
        """Offer ``rate`` events/s for ``seconds``, then wait for the pipeline to drain."""
        self.steps_run += 1
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            markers = Markers(
                http,
                f"{self.ingest_url}/v1/recordings?key={MARK_KEY}",
                f"{self.read_url}/v1/sites/{MARK_SITE}/sessions",
                self.args.snapshot_bytes,
                rng=random.Random(self.steps_run),
            )
            watcher = asyncio.create_task(markers.watch(self.args.poll_interval))
            cpu_before = cpu_by_stage(self.pids)
            busy_before = machine_busy_cpu_s()
            started = time.monotonic()
            with PeakMemory(self.pids) as memory:
                load_proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.pipeline_load",
                    f"{self.ingest_url}/v1/recordings?key={LOAD_KEY}",
                    str(self.bodies_file),
                    str(rate),
                    str(seconds),
                    str(self.steps_run),
                    cwd=PROJECT_ROOT,
                    stdout=asyncio.subprocess.PIPE,
                )
                load_done = asyncio.ensure_future(load_proc.communicate())
                await markers.post_every(self.args.marker_interval, load_done)
                out, _ = await load_done
                load_ended = time.monotonic()
                missing = await markers.drained(self.args.drain_timeout)
                finished = time.monotonic()
            cpu_after = cpu_by_stage(self.pids)
            busy_after = machine_busy_cpu_s()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        load = orjson.loads(out)
        events = int(load["accepted_events"]) + markers.accepted_events
        self.total_events += events
        counted = [m for m in markers.sent.values() if m.counted]
        result = StepResult(
            offered_events_per_s=rate,
            seconds=float(load["seconds"]),
            load=load,
            events=events,
            events_per_s=events / float(load["seconds"]),
            freshness_s=[
                m.seen_at - m.sent_at if m.seen_at is not None else float("inf") for m in counted
            ],
            markers_missing=missing,
            cpu_s={stage: cpu_after[stage] - cpu_before[stage] for stage in STAGES},
            peak_rss=memory.peak,
            machine_cpu_pct=100 * (busy_after - busy_before) / (finished - started),
            drain_s=finished - load_ended,
            wall_s=finished - started,
        )
        verdict = step_verdict(
            offered_events=int(load["offered_events"]),
            accepted_events=int(load["accepted_events"]),
            refused_requests=int(load["non_202"] + load["failed"]) + markers.refused,
            freshness_p95_s=result.freshness(0.95),
            freshness_limit_s=self.args.freshness_s,
            markers_missing=missing,
        )
        result.sustained, result.reason = verdict.sustained, verdict.reason
        return result


async def sample_values(bootstrap: str, topic: str, partitions: int, count: int) -> list[bytes]:
    """About ``count`` record values at evenly spaced offsets of every partition of ``topic``.

    Evenly spaced, not the first ones: the load cycles through its template
    sessions, and the first records of a run are all first batches (full snapshots).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=64 << 10,
        max_partition_fetch_bytes=64 << 10,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        share = max(1, count // partitions)
        for tp in tps:
            for offset in sorted({ends[tp] * i // share for i in range(share)} - {ends[tp]}):
                consumer.seek(tp, offset)
                batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
                values.extend(r.value for r in batch.get(tp, []) if r.value is not None)
    finally:
        await consumer.stop()
    return values


@dataclass
class Storage:
    """What the run left on disk, and the record shapes the ceiling reproduces."""

    events: int
    raw_records: int
    masked_records: int
    raw_log_bytes: int
    masked_log_bytes: int
    raw_value_mean: float
    masked_value_mean: float
    raw_in_clear: bool
    clickhouse: dict[str, tuple[int, int]]

    def per_million(self, bytes_: int) -> float:
        """Bytes per million events carried by the whole run."""
        return bytes_ / self.events * 1e6


def measure_storage(
    work: Path, bootstrap: str, partitions: int, events: int, sample: int
) -> Storage:
    """Kafka and ClickHouse bytes (services stopped) and the mean raw/masked value sizes."""
    raw_ends = asyncio.run(end_offsets(bootstrap, topics.RAW, partitions))
    masked_ends = asyncio.run(end_offsets(bootstrap, topics.MASKED, partitions))
    raw = asyncio.run(sample_values(bootstrap, topics.RAW, partitions, sample))
    masked = asyncio.run(sample_values(bootstrap, topics.MASKED, partitions, sample))
    log_dir = work / "kafka" / "logs"
    storage = Storage(
        events=events,
        raw_records=sum(raw_ends.values()),
        masked_records=sum(masked_ends.values()),
        raw_log_bytes=topic_log_bytes(log_dir, topics.RAW),
        masked_log_bytes=topic_log_bytes(log_dir, topics.MASKED),
        raw_value_mean=statistics.mean(len(v) for v in raw),
        masked_value_mean=statistics.mean(len(v) for v in masked),
        raw_in_clear=all(v.startswith(b"{") for v in raw),
        clickhouse=clickhouse_parts(clickhouse_url(work)),
    )
    return storage


def random_text_values(size: int, count: int) -> list[bytes]:
    """``count`` values of ``size`` random base64 characters: as incompressible as
    ciphertext for lz4, and valid text for ``--payload-file``."""
    return [base64.b64encode(os.urandom(size))[:size] for _ in range(count)]


def payload_file(path: Path, values: list[bytes]) -> Path:
    """Values as ProducerPerformance's ``--payload-file`` (one per line; JSON has no raw
    newline, orjson escapes them)."""
    path.write_bytes(b"\n".join(v for v in values if b"\n" not in v))
    return path


@dataclass
class Ceiling:
    """The ceiling runs of both record shapes (medians over rounds)."""

    raw: list[CeilingRun]
    masked: list[CeilingRun]
    raw_shape: RecordShape
    masked_shape: RecordShape


def ceiling_shapes(work: Path, raw: list[bytes], masked: list[bytes]) -> Ceiling:
    """The record shapes the tools reproduce, from sampled raw and masked values."""
    raw_size = round(statistics.mean(len(v) for v in raw))
    in_clear = all(v.startswith(b"{") for v in raw)
    raw_shape = RecordShape(
        compression="lz4",  # INGEST_COMPRESSION's default
        record_bytes=raw_size,
        # Sealed values are random bytes, which lz4 cannot shrink; nor random base64 text
        # of the same size (ready-made: the tool's own --record-size draws every byte of
        # every record from java.util.Random, and on 2 busy cores that alone limits it).
        # Values in clear compress: then the tool sends the sampled values themselves.
        payload_file=payload_file(
            work / "raw-payloads.txt", raw if in_clear else random_text_values(raw_size, 256)
        ),
    )
    masked_shape = RecordShape(
        compression="zstd",  # MASKER_COMPRESSION's default
        record_bytes=round(statistics.mean(len(v) for v in masked)),
        payload_file=payload_file(work / "masked-payloads.txt", masked),
    )
    return Ceiling([], [], raw_shape, masked_shape)


def ceiling_round(
    ceiling: Ceiling, bootstrap: str, broker_pid: int, args: argparse.Namespace, when: str
) -> None:
    """One ProducerPerformance + ConsumerPerformance run of each shape, added to ``ceiling``."""
    # As ingest's librdkafka producer and the masker's faust producer are set up.
    raw_props = {"acks": "all", "enable.idempotence": "true", "linger.ms": "1"}
    raw_props["batch.size"] = str(1 << 20)
    masked_props = {"acks": "all", "linger.ms": "5"}
    for name, shape, props, runs in (
        ("raw", ceiling.raw_shape, raw_props, ceiling.raw),
        ("masked", ceiling.masked_shape, masked_props, ceiling.masked),
    ):
        records = max(2000, int(args.ceiling_mb * 1e6 / shape.record_bytes))
        run = measure_ceiling(
            bootstrap,
            broker_pid,
            name=name,
            shape=shape,
            records=records,
            partitions=args.partitions,
            producer_props=props,
        )
        runs.append(run)
        print(
            f"ceiling {when}, {name}: produce "
            f"{run.producer.records_per_s:,.0f} records/s ({run.producer.mb_per_s:.1f} MB/s), "
            f"consume {run.consumer.records_per_s:,.0f} records/s "
            f"({run.consumer.mb_per_s:.1f} MB/s); load average {load_average()}",
            flush=True,
        )


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def fit_lines(steps: list[StepResult]) -> dict[str, CpuLine]:
    """Each stage's cores against the rate over the steps that drained (none with fewer
    than two rates): a step whose markers never showed left work uncounted."""
    drained = [s for s in steps if not s.markers_missing]
    rates = [s.wall_events_per_s for s in drained]
    # Rates a few percent apart give a slope of noise: ask for at least 1.5x.
    if not rates or max(rates) < 1.5 * min(rates):
        return {}
    return {stage: fit_cpu_line(rates, [s.cores(stage) for s in drained]) for stage in STAGES}


def median_of(runs: list[CeilingRun], attr: str) -> float:
    """Median of ``producer.records_per_s``-style dotted attribute over the runs."""
    head, tail = attr.split(".")
    return statistics.median(float(getattr(getattr(run, head), tail)) for run in runs)


def mib(n: float) -> str:
    """Bytes as MiB, for the table."""
    return f"{n / (1 << 20):,.0f} MiB"


def print_report(
    steps: list[StepResult],
    storage: Storage,
    ceiling: Ceiling,
    args: argparse.Namespace,
    machine: str,
) -> dict[str, Any]:
    """The Markdown tables of docs/benchmarks.md (section ``pipeline``); the figures."""
    print()
    print(machine)
    print()
    print(
        "| offered events/s | carried events/s | freshness p50 | p95 | ingest CPU-s/M | "
        "masker CPU-s/M | sink CPU-s/M | broker CPU-s/M | peak RSS ingest / masker / sink / "
        "broker | machine CPU (of 200 %) | sustained |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for s in steps:
        rss = " / ".join(mib(s.peak_rss[stage]) for stage in STAGES)
        cpus = " | ".join(f"{s.cpu_per_m(stage):.1f}" for stage in STAGES)
        verdict = "yes" if s.sustained else f"no: {s.reason}"
        if s.cost_only:
            verdict = f"(cost step) {verdict}"
        print(
            f"| {s.offered_events_per_s:,.0f} | {s.events_per_s:,.0f} | "
            f"{s.freshness(0.5):.2f} s | {s.freshness(0.95):.2f} s | {cpus} | {rss} | "
            f"{s.machine_cpu_pct:.0f} % | {verdict} |"
        )
    # A cost step that met the limit was carried as well as any other.
    sustained = [s for s in steps if s.sustained]
    best = max(sustained, key=lambda s: s.events_per_s) if sustained else None
    events_per_raw = storage.events / storage.raw_records
    events_per_masked = storage.events / storage.masked_records
    ceil = {
        "produce_raw": median_of(ceiling.raw, "producer.records_per_s") * events_per_raw,
        "consume_raw": median_of(ceiling.raw, "consumer.records_per_s") * events_per_raw,
        "produce_masked": median_of(ceiling.masked, "producer.records_per_s") * events_per_masked,
        "consume_masked": median_of(ceiling.masked, "consumer.records_per_s") * events_per_masked,
    }
    stage_ceiling = {
        "ingest": ("produce raw", ceil["produce_raw"]),
        "masker": (
            "min(consume raw, produce masked)",
            min(ceil["consume_raw"], ceil["produce_masked"]),
        ),
        "sink": ("consume masked", ceil["consume_masked"]),
    }
    print()
    print(
        f"Records: raw {storage.raw_value_mean / 1024:.1f} KiB mean value "
        f"({'in clear' if storage.raw_in_clear else 'AES-GCM sealed'}), "
        f"{events_per_raw:.1f} events per record; masked {storage.masked_value_mean / 1024:.1f}"
        f" KiB, {events_per_masked:.1f} events per record. Ceiling records (from the warm-up):"
        f" raw-like {ceiling.raw_shape.record_bytes / 1024:.1f} KiB"
        f" {'sampled values' if storage.raw_in_clear else 'random base64'},"
        f" masked-like {ceiling.masked_shape.record_bytes / 1024:.1f} KiB mean, sampled values."
    )
    print()
    print(
        "| ceiling (Kafka's own tools, same broker) | records/s | MB/s | events/s equivalent | "
        "tool CPU-s per M events | broker CPU-s per M events |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, runs, attr, key in (
        ("ProducerPerformance, raw-like (lz4)", ceiling.raw, "producer", "produce_raw"),
        ("ConsumerPerformance, raw-like", ceiling.raw, "consumer", "consume_raw"),
        ("ProducerPerformance, masked-like (zstd)", ceiling.masked, "producer", "produce_masked"),
        ("ConsumerPerformance, masked-like", ceiling.masked, "consumer", "consume_masked"),
    ):
        per_record = events_per_raw if key.endswith("raw") else events_per_masked
        rps = median_of(runs, f"{attr}.records_per_s")
        mbs = median_of(runs, f"{attr}.mb_per_s")
        tool, broker = (
            statistics.median(
                cpu_s_per_million(
                    getattr(run, f"{attr}_{who}_cpu_s"),
                    round(getattr(run, attr).records * per_record),
                )
                for run in runs
            )
            for who in ("tool", "broker")
        )
        print(
            f"| {label} | {rps:,.0f} | {mbs:,.1f} | {ceil[key]:,.0f} | {tool:.1f} | {broker:.1f} |"
        )
    figures: dict[str, Any] = {"ceiling_events_per_s": ceil}
    print()
    if best is None:
        # Still report the costs, at the freshest step, so a loaded run is not wasted.
        best = min(steps, key=lambda s: s.freshness(0.95))
        print(
            f"**No step was sustained** (lower --start-rate). Per stage at the freshest step, "
            f"{best.events_per_s:,.0f} events/s (freshness p95 {best.freshness(0.95):.2f} s):"
        )
    else:
        print(
            f"Highest sustained rate: **{best.events_per_s:,.0f} events/s** (freshness p95 "
            f"{best.freshness(0.95):.2f} s). Per stage at that step:"
        )
    print()
    lines = fit_lines(steps)
    print(
        "| stage | CPU-s per M events at that step | marginal CPU-s per M events (fit) | "
        "idle cores (fit) | cores per 100k events/s | events/s per busy core | peak RSS | "
        "ceiling compared with | ceiling events/s | carried / ceiling | one busy core / ceiling |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    stages: dict[str, Any] = {}
    for stage in STAGES:
        at_step = best.cpu_per_m(stage)
        # Without a line (rates too close), the step's own average stands in.
        line = lines.get(stage, CpuLine(math.nan, at_step))
        per_m = line.cpu_s_per_m_events
        idle = "—" if math.isnan(line.idle_cores) else f"{line.idle_cores:.2f}"
        row: dict[str, Any] = {
            "cpu_s_per_m_events_at_step": at_step,
            "marginal_cpu_s_per_m_events": per_m,
            "idle_cores": line.idle_cores,
            "cores_per_100k_events_per_s": cores_per_100k(per_m),
            "events_per_core_s": events_per_core_s(per_m),
            "peak_rss_bytes": best.peak_rss[stage],
        }
        against, limit = stage_ceiling.get(stage, ("—", float("nan")))
        fraction = best.events_per_s / limit
        core_fraction = events_per_core_s(per_m) / limit
        row.update(ceiling=against, ceiling_events_per_s=limit, fraction=fraction)
        stages[stage] = row
        tail = (
            f"{against} | {limit:,.0f} | {fraction:.2f} | {core_fraction:.2f}"
            if stage in stage_ceiling
            else "— | — | — | —"
        )
        print(
            f"| {stage} | {at_step:.1f} | {per_m:.1f} | {idle} | "
            f"{cores_per_100k(per_m):.2f} | {events_per_core_s(per_m):,.0f} | "
            f"{mib(best.peak_rss[stage])} | {tail} |"
        )
    producer_broker = statistics.median(
        run.producer_broker_cpu_s / (run.producer.records * events_per_raw) * 1e6
        for run in ceiling.raw
    )
    print(
        f"| broker in ProducerPerformance, raw-like | {producer_broker:.1f} | — | — | "
        f"{cores_per_100k(producer_broker):.2f} | {events_per_core_s(producer_broker):,.0f} | "
        "— | — | — | — | — |"
    )
    print()
    print("Bytes on disk per million events:")
    print()
    print("| where | bytes per M events | total |")
    print("|---|---:|---:|")
    raw_mode = "in clear" if storage.raw_in_clear else "sealed"
    disk = {
        f"Kafka `recordings.raw` (lz4, {raw_mode})": storage.raw_log_bytes,
        "Kafka `recordings.masked` (zstd)": storage.masked_log_bytes,
    }
    for table, (_rows, bytes_on_disk) in sorted(storage.clickhouse.items()):
        disk[f"ClickHouse `{table}`"] = bytes_on_disk
    disk["ClickHouse, all tables"] = sum(b for _r, b in storage.clickhouse.values())
    for label, bytes_ in disk.items():
        print(f"| {label} | {mib(storage.per_million(bytes_))} | {mib(bytes_)} |")
    stored = storage.clickhouse.get("events", (0, 0))[0]
    print()
    print(f"{storage.events:,} events accepted by ingest, {stored:,} rows in `events`.")
    figures.update(
        sustained=bool(sustained),
        sustained_events_per_s=best.events_per_s,
        freshness_p50_s=best.freshness(0.5),
        freshness_p95_s=best.freshness(0.95),
        stages=stages,
        broker_cpu_s_per_m_in_producer_performance=producer_broker,
        disk_bytes_per_m_events={k: storage.per_million(v) for k, v in disk.items()},
    )
    return figures


def main() -> None:
    """Start the stack, step the rate up, measure the ceiling, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="~2 minutes on a quiet machine: 10 s steps, one 60 MB ceiling round (overrides"
        " the step, warm-up, factor, cost and ceiling options)",
    )
    parser.add_argument("--start-rate", type=float, default=1000.0, help="events/s of step 1")
    parser.add_argument("--step-factor", type=float, default=1.5)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument(
        "--cost-factors",
        type=lambda text: [float(f) for f in text.split(",") if f],
        default=[2.0, 4.0],
        help="after the search, steps at these multiples of the top rate for the CPU line",
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="more tries of a rate that was not sustained"
    )
    parser.add_argument("--warmup-seconds", type=float, default=15.0)
    parser.add_argument("--freshness-s", type=float, default=2.0, help="p95 limit of a step")
    parser.add_argument("--marker-interval", type=float, default=0.5)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--sessions", type=int, default=300, help="template sessions")
    parser.add_argument("--snapshot-bytes", type=int, default=30_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--raw-encryption", choices=["on", "off"], default="on")
    parser.add_argument("--ceiling-mb", type=float, default=200.0, help="MB per ceiling run")
    parser.add_argument("--ceiling-rounds", type=int, default=2)
    parser.add_argument("--log-level", default="WARNING", help="LOG_LEVEL of the services")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    if args.quick:
        args.step_seconds, args.warmup_seconds = 10.0, 5.0
        args.step_factor, args.max_steps = 2.0, 4
        args.ceiling_mb, args.ceiling_rounds = 60.0, 1
        args.cost_factors = [3.0]  # one step, far enough apart after its drain for a line

    load_before = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    bodies = build_bodies(args.sessions, args.snapshot_bytes)
    bodies_file = work / "bodies.ndjson"
    bodies_file.write_bytes(b"\n".join(bodies))
    events_per_body = statistics.mean(len(orjson.loads(b)["events"]) for b in bodies)
    print(
        f"data: {len(bodies)} bodies of {args.sessions} template sessions, "
        f"{events_per_body:.0f} events per body, {statistics.mean(map(len, bodies)) / 1024:.1f}"
        f" KiB mean; work dir {work}",
        flush=True,
    )
    stack = bench_stack(work, raw_encryption=args.raw_encryption, log_level=args.log_level)
    stack.start()
    steps: list[StepResult] = []
    try:
        pids = stage_pids(stack)
        pipeline = Pipeline(
            pids=pids,
            ingest_url=f"http://127.0.0.1:{stack.ingest_port}",
            read_url=f"http://127.0.0.1:{stack.sink_port}",
            bodies_file=bodies_file,
            args=args,
        )
        warm = asyncio.run(pipeline.step(args.start_rate / 2, args.warmup_seconds))
        print(
            f"warm-up: {warm.events_per_s:,.0f} events/s, freshness p50 "
            f"{warm.freshness(0.5):.2f} s p95 {warm.freshness(0.95):.2f} s",
            flush=True,
        )
        assert stack.broker is not None
        bootstrap = stack.broker.bootstrap_servers
        # The first ceiling round before the steps (services idle), the others after
        # them (services stopped): the neighbours' load moves within a run, and the
        # fractions should not rest on one moment. Shapes from the warm-up's records.
        ceiling = ceiling_shapes(
            work,
            asyncio.run(sample_values(bootstrap, topics.RAW, args.partitions, 400)),
            asyncio.run(sample_values(bootstrap, topics.MASKED, args.partitions, 400)),
        )
        ceiling_round(ceiling, bootstrap, pids["kafka"], args, "before the steps")
        rate = args.start_rate
        retries = args.retries
        for _ in range(args.max_steps + args.retries):
            step = asyncio.run(pipeline.step(rate, args.step_seconds))
            steps.append(step)
            print(
                f"step {rate:,.0f} events/s offered: carried {step.events_per_s:,.0f}, "
                f"freshness p50 {step.freshness(0.5):.2f} s p95 {step.freshness(0.95):.2f} s, "
                f"drain {step.drain_s:.1f} s, machine {step.machine_cpu_pct:.0f} %, CPU-s/M "
                + ", ".join(f"{stage} {step.cpu_per_m(stage):.1f}" for stage in STAGES)
                + f"; {'sustained' if step.sustained else step.reason}",
                flush=True,
            )
            if not step.sustained:
                # On a shared machine one bad half-minute is often someone else's test
                # run: the same rate gets ``--retries`` more tries before the end.
                if retries == 0:
                    break
                retries -= 1
                continue
            if len(steps) - (args.retries - retries) >= args.max_steps:
                break
            rate = next_rate(rate, args.step_factor)
        # The CPU line needs rates apart even when freshness failed early (a loaded
        # machine): then steps at multiples of the top rate, past the limit.
        top = max(s.offered_events_per_s for s in steps)
        spread = len({s.offered_events_per_s for s in steps}) >= 3
        for factor in [] if spread else args.cost_factors:
            pipeline.args.drain_timeout = max(args.drain_timeout, 120.0)
            step = asyncio.run(pipeline.step(top * factor, args.step_seconds))
            step.cost_only = True
            steps.append(step)
            print(
                f"cost step {top * factor:,.0f} events/s offered: carried "
                f"{step.events_per_s:,.0f}, drain {step.drain_s:.1f} s, missing markers "
                f"{step.markers_missing}, CPU-s/M "
                + ", ".join(f"{stage} {step.cpu_per_m(stage):.1f}" for stage in STAGES),
                flush=True,
            )
        stack.stop_services()
        storage = measure_storage(work, bootstrap, args.partitions, pipeline.total_events, 800)
        for _ in range(args.ceiling_rounds - 1):
            ceiling_round(ceiling, bootstrap, pids["kafka"], args, "after the steps")
    finally:
        stack.stop()
    load_after = load_average()
    machine = (
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
        f"load average {load_before} before, {load_after} after (shared with other work); "
        f"RAW_ENCRYPTION={args.raw_encryption}, LOG_LEVEL={args.log_level}; steps of "
        f"{args.step_seconds:.0f} s, marker every {args.marker_interval} s, freshness limit "
        f"p95 ≤ {args.freshness_s} s; {args.partitions} partitions; bodies "
        f"{events_per_body:.0f} events, full snapshots ~{args.snapshot_bytes // 1000} KB; "
        f"ceiling: {args.ceiling_mb:.0f} MB per shape and run, 1 round before the steps and "
        f"{args.ceiling_rounds - 1} after, medians."
    )
    figures = print_report(steps, storage, ceiling, args, machine)
    if args.json:
        doc = {
            "machine": machine,
            "steps": [asdict(s) for s in steps],
            "storage": asdict(storage),
            "figures": figures,
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
