"""What a second worker costs: CPU-seconds per million events with 1 and 2 workers per stage.

Issue 16 item 3's last goal (2 workers within 10 % of 1), measured on its own
rather than inside the soak's fault run. One local broker, a fixed offered
rate well below saturation, generated sessions sealed as ingest seals them
(``RawSealer``, a KEK shared by every worker) produced straight to
``recordings.raw`` by this process. A *phase* runs ``n`` maskers and ``n``
sinks (same consumer group per stage; each sink its own embedded store):

1. new consumer groups, their offsets set to the topics' ends (nothing old
   is read); the workers start, and each group is waited for to be Stable
   with ``n`` members;
2. **idle**: no traffic for ``--idle-s`` (after a short settle): each
   process's CPU per second, its fixed cost;
3. **busy**: the producer runs at ``--rate`` events/s; after ``--settle-s``,
   CPU-seconds (``/proc/PID/stat`` user + system, summed over the stage's
   workers) and events (the workers' own counters) over ``--window-s``;
   also the sinks' inserts per second;
4. the workers stop (SIGTERM).

Phases alternate 1, 2, 1, 2, … (``--rounds`` of each) so drift in the load
of a shared machine hits both. ``--variant NAME:VAR=VALUE,…`` (repeatable)
runs this checkout with other settings, and ``--baseline CHECKOUT`` the
workers of another checkout (say ``git archive HEAD~3 | tar -x -C
/tmp/base``), each in every round, the order reversed every other round.
Medians per stage and variant; the ratio 2 vs 1 raw, and the per-event part
(busy CPU minus the idle CPU of the same processes over the same time) 2 vs 1.

Run: ``make bench-scaleout`` (``BENCH_SCALEOUT_ARGS=--quick`` for ~6 min), or
``.venv/bin/python -m bench.bench_scaleout [--rate 2000] [--rounds 3]
[--window-s 40] [--baseline /tmp/base]``. Not part of ``make test``. Prints
one JSON document (also ``var/scaleout/results.json``) and a Markdown table
for docs/benchmarks.md (section ``soak``, "What a second worker costs").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.soak.run import (
    ClusterWatch,
    cpu_seconds,
    metric_value,
    run_in_fresh_work,
    seconds_until,
)
from services.dev.kafka_broker import PROJECT_ROOT, LocalKafkaBroker, exit_with_parent, free_port
from services.dev.rrweb_gen import generate_session
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import KafkaSettings, ensure_topics
from services.shared.keyring import RawEncryptionSettings, RawSealer, new_kek_file

SITE_ID = "scaleout"
STAGES = ("masker", "sink")
COUNTERS = {"masker": "replaypipe_masker_events_total", "sink": "replaypipe_sink_rows_total"}
SINK_INSERTS = "replaypipe_sink_inserts_total"
IDLE_SETTLE_S = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- figures (pure) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageWindow:
    """One stage's processes over one phase: idle CPU rates, then the busy window."""

    workers: int
    idle_cpu_per_s: tuple[float, ...]  # per process, CPU-s per second with no traffic
    busy_cpu_s: float  # every worker of the stage, over the busy window
    busy_s: float
    events: float  # masked / stored by the stage in the busy window

    @property
    def cpu_s_per_million(self) -> float:
        """CPU-seconds per million events, everything the processes spent."""
        return self.busy_cpu_s / self.events * 1e6 if self.events else float("nan")

    @property
    def idle_cpu_s(self) -> float:
        """What the same processes would have spent over the window with no traffic."""
        return sum(self.idle_cpu_per_s) * self.busy_s

    @property
    def per_event_cpu_s_per_million(self) -> float:
        """CPU-seconds per million events above the processes' idle cost."""
        if not self.events:
            return float("nan")
        return (self.busy_cpu_s - self.idle_cpu_s) / self.events * 1e6


def median(values: Sequence[float]) -> float:
    """The median of the finite values (NaN if there are none)."""
    finite = [v for v in values if v == v]
    return statistics.median(finite) if finite else float("nan")


def two_vs_one(windows: Sequence[StageWindow]) -> dict[str, float]:
    """Medians of the 1- and 2-worker windows, and their ratios (raw and per-event part)."""
    one = [w for w in windows if w.workers == 1]
    two = [w for w in windows if w.workers == 2]
    figures = {
        "one_cpu_s_per_million": median([w.cpu_s_per_million for w in one]),
        "two_cpu_s_per_million": median([w.cpu_s_per_million for w in two]),
        "one_per_event": median([w.per_event_cpu_s_per_million for w in one]),
        "two_per_event": median([w.per_event_cpu_s_per_million for w in two]),
        "idle_cpu_ms_per_s_per_process": 1000
        * median([rate for w in windows for rate in w.idle_cpu_per_s]),
    }
    figures["ratio"] = figures["two_cpu_s_per_million"] / figures["one_cpu_s_per_million"]
    figures["per_event_ratio"] = figures["two_per_event"] / figures["one_per_event"]
    return figures


def phase_order(rounds: int, variants: Sequence[str]) -> list[tuple[str, int]]:
    """(variant, workers) per phase: 1, 2, 1, 2, …; the variants' order flips every round."""
    order: list[tuple[str, int]] = []
    for index in range(rounds):
        names = list(variants) if index % 2 == 0 else list(reversed(variants))
        order += [(name, workers) for name in names for workers in (1, 2)]
    return order


# --- the load ------------------------------------------------------------------------


@dataclass
class Producer:
    """Generated sessions at a fixed events/s, sealed as ingest seals them; pausable."""

    bootstrap: str
    kek_dir: Path
    rate: float
    seed: int = 16
    running: asyncio.Event = field(default_factory=asyncio.Event)
    produced_events: int = 0

    async def run(self) -> None:
        """Produce while :attr:`running` is set, until cancelled."""
        from confluent_kafka import Producer as KafkaProducer

        producer = KafkaProducer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "lz4",  # ingest's defaults (INGEST_COMPRESSION, _LINGER_MS)
                "linger.ms": 1,
                "partitioner": "murmur2_random",
            }
        )
        kafka = KafkaSettings(bootstrap_servers=self.bootstrap)
        sealer = RawSealer(RawEncryptionSettings(mode="on", kek_dir=str(self.kek_dir)), kafka)
        await sealer.start()
        rng = random.Random(self.seed)
        try:
            while True:
                await self.running.wait()
                started, scheduled = time.monotonic(), 0
                while self.running.is_set():
                    session = generate_session(rng, site_id=SITE_ID, start_ms=now_ms())
                    key = topics.session_key(SITE_ID, session.session_id)
                    for seq, events in enumerate(session.batches):
                        await asyncio.sleep(
                            max(0.0, started + scheduled / self.rate - time.monotonic())
                        )
                        if not self.running.is_set():
                            break
                        scheduled += len(events)
                        envelope = BatchEnvelope(
                            site_id=SITE_ID,
                            session_id=session.session_id,
                            window_id=session.window_id,
                            visitor_id=session.visitor_id,
                            seq=seq,
                            received_at_ms=now_ms(),
                            events=events,
                        )
                        value = await sealer.seal(key, envelope.to_json())
                        producer.produce(topics.RAW, value, key)
                        producer.poll(0)
                        self.produced_events += len(events)
        finally:
            producer.flush(10)
            await sealer.stop()


def cpu_seconds_of(stat: Path) -> float | None:
    """User + system CPU of a process or thread from its ``stat`` file, None if gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return int(time.time() * 1000)


async def move_group_to_end(bootstrap: str, group: str, topic: str, partitions: int) -> None:
    """Commit the topic's end offsets for ``group``: its first member reads only what is new."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


# --- the workers ---------------------------------------------------------------------


@dataclass
class Worker:
    """One masker or sink process of a phase."""

    stage: str
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def cpu_s(self) -> float:
        """User + system CPU so far (0 once it is gone)."""
        return cpu_seconds(self.process.pid) or 0.0

    def cpu_s_by_thread(self) -> dict[str, float]:
        """User + system CPU so far per thread name (digits dropped: one pool, one figure)."""
        by_name: dict[str, float] = {}
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                comm = (task / "comm").read_text().strip()
            except OSError:
                continue
            name = comm.rstrip("0123456789-_ ") or comm
            by_name[name] = by_name.get(name, 0.0) + (cpu_seconds_of(task / "stat") or 0.0)
        return by_name


def start_worker(
    stage: str, name: str, checkout: Path, env: Mapping[str, str], work: Path
) -> Worker:
    """Start ``replaypipe <stage>`` of ``checkout`` on a free port, logging under ``work``."""
    port = free_port()
    folder = work / name
    folder.mkdir(parents=True)
    variables = {
        **env,
        "MASKER_PORT": str(port),
        "SINK_PORT": str(port),
        "MASKER_STATE_DIR": str(folder / "masker"),
        "CLICKHOUSE_URL": f"chdb://{folder / 'clickhouse'}",
        "PYTHONPATH": str(checkout),
        "PYTHONUNBUFFERED": "1",
    }
    with open(folder / f"{stage}.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", stage],
            env=variables,
            cwd=checkout,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    return Worker(stage, name, port, process)


async def wait_ready(http: aiohttp.ClientSession, worker: Worker, timeout_s: float = 180.0) -> None:
    """Until the worker's ``/readyz`` answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"{worker.name} exited with {worker.process.returncode}")
        try:
            async with http.get(f"http://127.0.0.1:{worker.port}/readyz") as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{worker.name} not ready after {timeout_s:.0f} s")


async def counter(http: aiohttp.ClientSession, worker: Worker, name: str) -> float:
    """One counter of the worker's ``/metrics``."""
    async with http.get(f"http://127.0.0.1:{worker.port}/metrics") as response:
        return metric_value(await response.text(), name)


def stop_workers(workers: Sequence[Worker]) -> None:
    """SIGTERM to all at once; SIGKILL those not gone within 30 s."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30.0
    for worker in workers:
        try:
            worker.process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


# --- one phase -----------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """What one set of phases runs: the workers of a checkout, with extra variables."""

    checkout: Path
    env: dict[str, str] = field(default_factory=dict)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:VAR=VALUE,VAR=VALUE`` → (NAME, {VAR: VALUE}); ``NAME:`` for no variables."""
    name, sep, assignments = text.partition(":")
    if not name or not sep:
        raise argparse.ArgumentTypeError(f"--variant needs NAME:VAR=VALUE,…, not {text!r}")
    env: dict[str, str] = {}
    for assignment in filter(None, assignments.split(",")):
        variable, equals, value = assignment.partition("=")
        if not equals or not variable:
            raise argparse.ArgumentTypeError(f"--variant {name}: {assignment!r} is not VAR=VALUE")
        env[variable] = value
    return name, env


def chosen_variants(args: argparse.Namespace) -> dict[str, Variant]:
    """``this`` checkout (or each ``--variant`` of it), plus ``baseline`` with ``--baseline``."""
    variants = {name: Variant(PROJECT_ROOT, env) for name, env in args.variant}
    if not variants:
        variants["this"] = Variant(PROJECT_ROOT)
    if args.baseline is not None:
        variants["baseline"] = Variant(args.baseline.resolve())
    return variants


@dataclass
class Bench:
    """The run's fixed parts: broker, producer, environment, flags."""

    args: argparse.Namespace
    work: Path
    broker: LocalKafkaBroker
    producer: Producer
    watch: ClusterWatch
    env: dict[str, str]
    variants: dict[str, Variant]
    phases: int = 0

    async def phase(self, variant: str, workers: int) -> dict[str, Any]:
        """Start ``workers`` maskers and sinks of ``variant``; measure idle, then busy."""
        self.phases += 1
        tag = f"p{self.phases}-{variant}-{workers}"
        masker_group, sink_group = f"scaleout-masker-{tag}", f"scaleout-sink-{tag}"
        bootstrap, partitions = self.broker.bootstrap_servers, self.args.partitions
        await move_group_to_end(bootstrap, masker_group, topics.RAW, partitions)
        await move_group_to_end(bootstrap, sink_group, topics.MASKED, partitions)
        chosen = self.variants[variant]
        env = {**self.env, **chosen.env, "MASKER_APP_ID": masker_group, "SINK_GROUP_ID": sink_group}
        started = [
            start_worker(stage, f"{tag}-{stage}-{i}", chosen.checkout, env, self.work)
            for i in range(workers)
            for stage in STAGES
        ]
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                await asyncio.gather(*(wait_ready(http, w) for w in started))
                for group in (masker_group, sink_group):
                    took = await seconds_until(
                        self.watch.settled_with(group, workers), time.monotonic(), 120.0
                    )
                    if took is None:
                        raise RuntimeError(f"{group} not Stable with {workers} members")
                await asyncio.sleep(IDLE_SETTLE_S)
                idle = await self.idle_rates(started)
                self.producer.running.set()
                await asyncio.sleep(self.args.settle_s)
                busy = await self.busy_window(http, started)
                self.producer.running.clear()
        finally:
            self.producer.running.clear()
            await asyncio.to_thread(stop_workers, started)
        result: dict[str, Any] = {"variant": variant, "workers": workers, "tag": tag}
        for stage in STAGES:
            mine = [w for w in started if w.stage == stage]
            window = StageWindow(
                workers=workers,
                idle_cpu_per_s=tuple(idle[w.name] for w in mine),
                busy_cpu_s=sum(busy["cpu"][w.name] for w in mine),
                busy_s=busy["seconds"],
                events=sum(busy["events"][w.name] for w in mine),
            )
            result[stage] = window
        result["sink_inserts_per_s"] = busy["inserts"] / busy["seconds"]
        result["busy_cpu_s_by_thread"] = busy["threads"]
        # per worker: its busy CPU-s and the events its own counter moved
        result["busy_by_worker"] = {
            w.name: {"cpu_s": busy["cpu"][w.name], "events": busy["events"][w.name]}
            for w in started
        }
        result["load_average_1m"] = os.getloadavg()[0]
        print(
            f"scaleout: {tag}: masker {result['masker'].cpu_s_per_million:.1f},"
            f" sink {result['sink'].cpu_s_per_million:.1f} CPU-s/M events;"
            f" idle ms/s {[round(1000 * r, 1) for r in idle.values()]};"
            f" sink inserts/s {result['sink_inserts_per_s']:.2f}",
            flush=True,
        )
        return result

    async def idle_rates(self, workers: Sequence[Worker]) -> dict[str, float]:
        """CPU-s per second of each process with no traffic, over ``--idle-s``."""
        before = {w.name: w.cpu_s() for w in workers}
        began = time.monotonic()
        await asyncio.sleep(self.args.idle_s)
        elapsed = time.monotonic() - began
        return {w.name: (w.cpu_s() - before[w.name]) / elapsed for w in workers}

    def profile(self, worker: Worker) -> subprocess.Popen[bytes]:
        """py-spy's collapsed stacks of the worker over the busy window (``--profile``)."""
        py_spy = Path(sys.executable).with_name("py-spy")
        output = self.work / worker.name / "busy.folded"
        command = [str(py_spy), "record", "--pid", str(worker.process.pid), "--nonblocking"]
        command += ["--rate", "50", "--format", "raw", "--output", str(output)]
        command += ["--duration", str(int(self.args.window_s))]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def busy_window(
        self, http: aiohttp.ClientSession, workers: Sequence[Worker]
    ) -> dict[str, Any]:
        """CPU-s and events per worker (and the sinks' inserts) over ``--window-s``."""

        async def counts() -> tuple[dict[str, float], float]:
            events = {w.name: await counter(http, w, COUNTERS[w.stage]) for w in workers}
            sinks = [w for w in workers if w.stage == "sink"]
            inserts = sum([await counter(http, w, SINK_INSERTS) for w in sinks])
            return events, inserts

        events_before, inserts_before = await counts()
        cpu_before = {w.name: w.cpu_s() for w in workers}
        threads_before = {w.name: w.cpu_s_by_thread() for w in workers}
        began = time.monotonic()
        profiled = [w for w in workers if self.args.profile and (
            not self.args.profile_one or w.name.endswith("-0")
        )]
        profilers = [self.profile(w) for w in profiled]
        await asyncio.sleep(self.args.window_s)
        cpu_after = {w.name: w.cpu_s() for w in workers}
        for profiler in profilers:
            await asyncio.to_thread(profiler.wait)
        threads_after = {w.name: w.cpu_s_by_thread() for w in workers}
        seconds = time.monotonic() - began
        events_after, inserts_after = await counts()
        return {
            "seconds": seconds,
            "cpu": {name: cpu_after[name] - cpu_before[name] for name in cpu_before},
            "events": {name: events_after[name] - events_before[name] for name in events_before},
            "inserts": inserts_after - inserts_before,
            "threads": {
                name: {
                    thread: round(cpu - threads_before[name].get(thread, 0.0), 2)
                    for thread, cpu in sorted(threads_after[name].items())
                    if cpu - threads_before[name].get(thread, 0.0) > 0
                }
                for name in threads_after
            },
        }


def write_sites_file(path: Path) -> None:
    """The benchmark's one site: default privacy settings, no rate limit."""
    site = {"site_id": SITE_ID, "public_keys": ["pk_scaleout"], "rate_limit_per_second": 1e9}
    path.write_bytes(orjson.dumps({"sites": [site]}))


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Broker, producer, every phase; the figures."""
    broker = LocalKafkaBroker(
        work / "kafka", free_port(), free_port(), partitions=args.partitions, stop_with_parent=True
    )
    await asyncio.to_thread(broker.start)
    try:
        await ensure_topics(
            KafkaSettings(bootstrap_servers=broker.bootstrap_servers, partitions=args.partitions)
        )
        kek_dir = work / "keys"
        new_kek_file(kek_dir)
        sites = work / "sites.json"
        write_sites_file(sites)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_PARTITIONS": str(args.partitions),
            "SITES_FILE": str(sites),
            "RAW_ENCRYPTION": "on",
            "RAW_KEK_DIR": str(kek_dir),
            "LOG_LEVEL": "INFO",
        }
        variants = chosen_variants(args)
        producer = Producer(broker.bootstrap_servers, kek_dir, args.rate)
        bench = Bench(
            args, work, broker, producer, ClusterWatch(broker.bootstrap_servers), env, variants
        )
        producing = asyncio.create_task(producer.run())
        phases = []
        try:
            for variant, workers in phase_order(args.rounds, list(variants)):
                phases.append(await bench.phase(variant, workers))
        finally:
            producing.cancel()
            await asyncio.gather(producing, return_exceptions=True)
    finally:
        await asyncio.to_thread(broker.stop)
    return summarise(args, phases, list(variants))


def summarise(
    args: argparse.Namespace, phases: list[dict[str, Any]], variants: list[str]
) -> dict[str, Any]:
    """Medians and ratios per variant and stage, with every phase's figures."""
    figures = {
        variant: {
            stage: two_vs_one([p[stage] for p in phases if p["variant"] == variant])
            for stage in STAGES
        }
        for variant in variants
    }
    for variant in variants:
        mine = [p for p in phases if p["variant"] == variant]
        figures[variant]["sink_inserts_per_s"] = {
            str(n): median([p["sink_inserts_per_s"] for p in mine if p["workers"] == n])
            for n in (1, 2)
        }

    def plain(phase: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in phase.items() if k not in STAGES}
        for stage in STAGES:
            w: StageWindow = phase[stage]
            out[stage] = {
                "idle_cpu_per_s": w.idle_cpu_per_s,
                "busy_cpu_s": w.busy_cpu_s,
                "busy_s": w.busy_s,
                "events": w.events,
                "cpu_s_per_million": w.cpu_s_per_million,
                "per_event_cpu_s_per_million": w.per_event_cpu_s_per_million,
            }
        return out

    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "figures": figures,
        "phases": [plain(p) for p in phases],
    }


def markdown(result: dict[str, Any]) -> str:
    """The summary table for docs/benchmarks.md."""
    lines = [
        "| variant | stage | idle ms CPU/s per process | CPU-s/M, 1 worker | 2 workers |"
        " 2 vs 1 | per-event part, 1 | 2 | 2 vs 1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, stages in result["figures"].items():
        for stage in STAGES:
            f = stages[stage]
            lines.append(
                f"| {variant} | {stage} | {f['idle_cpu_ms_per_s_per_process']:.1f} |"
                f" {f['one_cpu_s_per_million']:.1f} | {f['two_cpu_s_per_million']:.1f} |"
                f" **{f['ratio']:.2f}** | {f['one_per_event']:.1f} | {f['two_per_event']:.1f} |"
                f" {f['per_event_ratio']:.2f} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scaleout", description=__doc__)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s offered")
    parser.add_argument("--rounds", type=int, default=3, help="phases of each worker count")
    parser.add_argument("--window-s", type=float, default=40.0, help="busy window")
    parser.add_argument("--idle-s", type=float, default=15.0, help="idle window")
    parser.add_argument("--settle-s", type=float, default=10.0, help="load before the window")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 25 s windows")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy (pip install -e '.[bench]') each busy window into WORK/NAME/busy.folded",
    )
    parser.add_argument(
        "--profile-one",
        action="store_true",
        help="with --profile: only the first worker of each stage (one py-spy per stage "
        "disturbs a 2-core run far less than one per worker)",
    )
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout, measured in the same rounds"
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE,…",
        help="this checkout with these variables (repeatable: each one its own phases)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=PROJECT_ROOT / "var" / "scaleout",
        help="the run's folder (emptied first; keeps logs and results.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.window_s, args.idle_s = 2, 25.0, 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the JSON figures and the Markdown table."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run_in_fresh_work(args.work, lambda work: run(args, work))
    print(orjson.dumps(result["figures"], option=orjson.OPT_INDENT_2).decode())
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
