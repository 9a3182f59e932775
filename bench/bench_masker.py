"""Masker throughput, side by side in one run on one real local Kafka broker:

(a) a pass-through faust agent (``bench/masker_passthrough.py``: same faust
    settings, same topic and data, forwards bytes unchanged),
(b) the masker (``replaypipe masker``: rules, state table with changelog,
    acks after delivery),
(c) the pure floor: ``orjson`` loads + dumps of the same messages in-process,
(d) the pure masking work in-process (``mask_message`` on each raw value, the
    session state carried: the masker's whole per-message work), without Kafka;
(b0), (d0) with ``--baseline CHECKOUT``: (b) and (d) of another checkout (say a
    ``git worktree`` of the previous commit), in the same rounds. They run with
    this checkout's interpreter and so with *its* compiled core: to compare two
    cores, give the baseline's build with ``--baseline-core`` (without it a
    baseline that differs only in the core measures this core twice);
(b_agent), (b_agent_state) with ``--agent-only``: the masker's agent with
    ``mask_message`` replaced by a stand-in that publishes the raw value
    (``bench/masker_agent_only.py``), storing no state or one of
    ``--agent-state-bytes`` per batch: the agent's own cost around the masking;
(b_sealed) with ``--raw-encryption``: the masker with ``RAW_ENCRYPTION=required``
    on the same batches sealed as ingest seals them (``bench/masker_sealed.py``:
    ingest's ``RawSealer``, a KEK in a temporary ``RAW_KEK_DIR``, the wrapped data
    key on ``keys.raw``), read from a topic of their own next to the clear one;
    (b) then runs with ``RAW_ENCRYPTION=off`` explicitly; and (d_sealed): (d) on
    the sealed batches, each opened first as the masker opens it.

(c) and (d) count CPU seconds of the process, so a loaded machine slows them
less than the wall clock would. The broker gets N generated sessions
(``services/dev/rrweb_gen.py``, full snapshots grown to a realistic size by
``--page``, see ``bench/heavy_pages.py``) on ``recordings.raw`` once; every round
starts (a) and (b) as fresh processes with a fresh consumer group, so each reads
the same messages from the start. A worker's rate is events / (broker append time
of its last output minus its first output): the output topics use LogAppendTime,
so startup and group join are not counted. One discarded warm-up run, then
rounds alternate which of (a) and (b) goes first; medians are reported. Run:

    .venv/bin/python -m bench.bench_masker [--sessions 2000] [--rounds 3] \
        [--snapshot-bytes 30000] [--page mixed] [--pure-only] [--baseline /tmp/base] \
        [--raw-encryption [--raw-encryption-compression lz4]] [--agent-only]

The default pages are ~30 KB paragraph snapshots; ``--snapshot-bytes 0`` leaves
the generator's own pages (~7 KB batches, ~11 KB snapshots, mouse moves and
typing): the "generator pages" of docs/benchmarks.md.

Prints a Markdown table for docs/benchmarks.md (section ``masker``).
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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.heavy_pages import PAGE_KINDS, grow_session
from bench.masker_sealed import SEALED_TOPIC, seal_values, sealed_opener
from services.dev.kafka_broker import LocalKafkaBroker, free_port
from services.dev.rrweb_gen import generate_session
from services.masker.message import collection_paused, mask_message
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import MAX_MESSAGE_BYTES, KafkaSettings, ensure_topics, topic_specs
from services.shared.keyring import RawEncryptionSettings, load_keyring, new_kek_file
from services.shared.site_settings import SiteRegistry, load_sites_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PASSTHROUGH_TOPIC = "bench.passthrough"
SITE = "demo"  # in config/sites.json: default privacy settings
BATCH_EVENTS = 50  # events per batch, as the generator splits a session


@dataclass(frozen=True, slots=True)
class Message:
    """One ``recordings.raw`` message of the benchmark data."""

    key: bytes
    value: bytes
    events: int


def build_messages(
    sessions: int, snapshot_bytes: int, seed: int = 4, page: str = "paragraphs"
) -> list[Message]:
    """Generated sessions as raw envelopes, interleaved the way live traffic arrives.

    ``page``: how each full snapshot grows to ``snapshot_bytes`` (:data:`PAGE_KINDS`).
    """
    rng = random.Random(seed)
    per_session: list[list[Message]] = []
    for _ in range(sessions):
        session = generate_session(rng, site_id=SITE, start_ms=int(time.time() * 1000))
        key = topics.session_key(SITE, session.session_id)
        events = grow_session(session.events, rng, snapshot_bytes, page)
        batches = []
        for seq, start in enumerate(range(0, len(events), BATCH_EVENTS)):
            envelope = BatchEnvelope(
                site_id=SITE,
                session_id=session.session_id,
                window_id=session.window_id,
                visitor_id=session.visitor_id,
                seq=seq,
                received_at_ms=int(time.time() * 1000),
                events=events[start : start + BATCH_EVENTS],
            )
            batches.append(Message(key, envelope.to_json(), len(envelope.events)))
        per_session.append(batches)
    # Round-robin over sessions: batch 0 of many sessions, then batch 1, ...
    out: list[Message] = []
    for seq in range(max(len(b) for b in per_session)):
        out.extend(b[seq] for b in per_session if seq < len(b))
    return out


def add_message_arguments(
    parser: argparse.ArgumentParser,
    *,
    page: str = "mixed",
    snapshot_bytes: int = 300_000,
    sessions: int = 20,
) -> None:
    """The options of the generated messages (:func:`messages_for`), with these defaults."""
    parser.add_argument("--sessions", type=int, default=sessions)
    parser.add_argument(
        "--snapshot-bytes",
        type=int,
        default=snapshot_bytes,
        help="grow each full snapshot to about this much JSON (0: generator's 11 KB page)",
    )
    parser.add_argument(
        "--page", choices=PAGE_KINDS, default=page,
        help="how snapshots grow (bench/heavy_pages.py)",
    )


def messages_for(args: argparse.Namespace) -> list[Message]:
    """The messages :func:`add_message_arguments`' options ask for."""
    return build_messages(args.sessions, args.snapshot_bytes, page=args.page)


def bench_registry() -> SiteRegistry:
    """The benchmarks' site settings (``config/sites.json``: the demo site's defaults)."""
    return SiteRegistry(load_sites_file(PROJECT_ROOT / "config" / "sites.json"))


async def create_topics(bootstrap: str, partitions: int) -> None:
    """The pipeline topics, with the two output topics stamped by the broker.

    Plus :data:`SEALED_TOPIC`, configured like ``recordings.raw``.
    """
    stamped = {
        "message.timestamp.type": "LogAppendTime",
        "max.message.bytes": str(MAX_MESSAGE_BYTES),
    }
    kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=partitions)
    raw_configs = next(s.configs for s in topic_specs(kafka) if s.name == topics.RAW)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics.MASKED, partitions, 1, topic_configs=stamped),
                NewTopic(PASSTHROUGH_TOPIC, partitions, 1, topic_configs=stamped),
                NewTopic(SEALED_TOPIC, partitions, 1, topic_configs=raw_configs),
            ]
        )
    finally:
        await admin.close()
    await ensure_topics(kafka)


async def produce(bootstrap: str, messages: list[Message], topic: str = topics.RAW) -> None:
    """Write the benchmark data to ``topic`` once."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=10,
        compression_type="zstd",
        max_request_size=MAX_MESSAGE_BYTES,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, m.value, key=m.key) for m in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    """Log end offset of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def append_time_span(
    bootstrap: str, start: dict[TopicPartition, int], end: dict[TopicPartition, int]
) -> float:
    """Seconds between the first and the last broker append among the given records."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    first, last = float("inf"), 0.0
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in start if end[tp] > start[tp]}
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    if record.offset < end[tp]:
                        first = min(first, record.timestamp / 1000)
                        last = max(last, record.timestamp / 1000)
                    if record.offset >= end[tp] - 1:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return last - first


@dataclass(frozen=True, slots=True)
class WorkerRun:
    """One worker's run: the span of its output, and its CPU per output record.

    ``cpu_per_record`` is the process's CPU-seconds (user + system) between the
    first poll that saw output and the last one, over the records written
    meanwhile: startup and group join are left out, and on a machine shared with
    other work it measures the worker's cost where the span measures its speed.
    """

    span_s: float
    cpu_per_record: float


def process_cpu_s(pid: int) -> float:
    """User + system CPU-seconds of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(
    command: list[str],
    env: dict[str, str],
    bootstrap: str,
    topic: str,
    expected: int,
    parts: int,
    *,
    cwd: Path = PROJECT_ROOT,
) -> WorkerRun:
    """Start a worker process, wait for ``expected`` new records on ``topic``; their span."""
    before = asyncio.run(end_offsets(bootstrap, topic, parts))
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=devnull, stderr=subprocess.STDOUT
        )
    first: tuple[int, float] | None = None  # records done, CPU-s at the first poll with output
    try:
        deadline = time.monotonic() + 900
        while True:
            now = asyncio.run(end_offsets(bootstrap, topic, parts))
            done = sum(now[tp] - before[tp] for tp in now)
            cpu = process_cpu_s(proc.pid)
            if first is None and done > 0:
                first = (done, cpu)
            if done >= expected:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{command} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command}: {done}/{expected} records after 900 s")
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert first is not None
    measured = done - first[0]
    per_record = (cpu - first[1]) / measured if measured else float("nan")
    return WorkerRun(asyncio.run(append_time_span(bootstrap, before, now)), per_record)


def pure_floor(messages: list[Message]) -> float:
    """CPU seconds for orjson loads + dumps of every message.

    The in-process measures count CPU time, not wall time: on a machine shared
    with other work they then measure the code, not the neighbours' load.
    """
    started = time.process_time()
    # Paused as the masker pauses it (``mask_message``): the floor is what parsing
    # and serialising once more would cost the masker.
    with collection_paused():
        for m in messages:
            orjson.dumps(orjson.loads(m.value))
    return time.process_time() - started


def pure_masking(
    messages: list[Message],
    registry: SiteRegistry,
    open_value: Callable[[bytes, bytes], bytes] | None = None,
) -> tuple[float, list[int]]:
    """CPU seconds of the masker's per-message work without Kafka; state bytes per session.

    ``open_value`` (message key, value -> envelope) runs first when given: the
    masker's opening of a sealed value.
    """
    states: dict[bytes, bytes] = {}
    started = time.process_time()
    for offset, m in enumerate(messages):
        value = m.value if open_value is None else open_value(m.key, m.value)
        batch = mask_message(value, states.get(m.key), registry, partition=0, offset=offset)
        if batch.state is not None:
            states[m.key] = batch.state
    elapsed = time.process_time() - started
    return elapsed, [len(state) for state in states.values()]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def percentile(values: list[int], q: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The pure masking of a baseline checkout (``--baseline``), run in that checkout by
# its own interpreter: only the stable API (mask_message, the site registry).
_BASELINE_PURE = """
import sys, time, orjson
from pathlib import Path
from services.masker.message import mask_message
from services.shared.site_settings import SiteRegistry, load_sites_file
data = [(k.encode(), v.encode()) for k, v in orjson.loads(Path(sys.argv[1]).read_bytes())]
registry = SiteRegistry(load_sites_file(Path("config/sites.json")))
states = {}
started = time.process_time()
for offset, (key, value) in enumerate(data):
    batch = mask_message(value, states.get(key), registry, partition=0, offset=offset)
    if batch.state is not None:
        states[key] = batch.state
print(time.process_time() - started)
"""


def baseline_pure_masking(checkout: Path, data_file: Path, core: Path | None = None) -> float:
    """CPU seconds for the pure masking of the messages in ``data_file`` by another checkout
    (with the compiled core in ``core``, if given, instead of the installed one)."""
    env = {**os.environ, "PYTHONPATH": baseline_path(checkout, core)}
    out = subprocess.run(
        [sys.executable, "-c", _BASELINE_PURE, str(data_file)],
        cwd=checkout, env=env, check=True, capture_output=True, text=True,
    )
    return float(out.stdout.split()[-1])


def baseline_path(checkout: Path, core: Path | None) -> str:
    """``PYTHONPATH`` of a baseline: its checkout, after ``core`` (a directory holding a
    ``replaypipe_masker_core`` package, as ``bench/ab_core.py`` uses) when given."""
    return str(checkout) if core is None else f"{core}{os.pathsep}{checkout}"


NAMES = {
    "passthrough": "(a) faust pass-through agent (Kafka → Kafka)",
    "masker": "(b) masker agent (Kafka → Kafka, state table, acks after delivery)",
    "sealed": "(b_sealed) masker agent on the same batches sealed (RAW_ENCRYPTION=required)",
    "passthrough_sealed": "(a_sealed) pass-through agent on the sealed batches",
    "baseline": "(b0) baseline checkout's masker agent",
    "agent": "(b_agent) the masker's agent with no masking, no state stored",
    "agent_state": "(b_agent_state) the masker's agent with no masking, a state stored per batch",
    "floor": "(c) pure floor: orjson loads + dumps, in-process",
    "pure": "(d) pure masking (mask_message: parse, mask, write), in-process",
    "pure_sealed": "(d_sealed) pure masking of the sealed batches (open, then as (d)), in-process",
    "baseline_pure": "(d0) baseline checkout's pure masking",
}


def main() -> None:
    """Run the benchmark and print the results as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_message_arguments(parser, page="paragraphs", snapshot_bytes=30_000, sessions=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--pure-only", action="store_true", help="only (c) and (d): no broker, no workers"
    )
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="another checkout (e.g. a git worktree of the previous commit) measured in the "
        "same rounds: its masker as (b0), its pure masking as (d0)",
    )
    parser.add_argument(
        "--baseline-core", type=Path, default=None,
        help="a copy of an older build of the compiled core (a directory holding the "
        "replaypipe_masker_core package) for the baseline's (b0) and (d0)",
    )
    parser.add_argument(
        "--baseline-env", action="append", default=[], metavar="NAME=VALUE",
        help="an environment variable set for (b0) only (repeatable): with --baseline . it "
        "compares a setting, say MASKER_THREAD_BATCH_BYTES, in the same rounds",
    )
    parser.add_argument(
        "--raw-encryption", action="store_true",
        help="also (b_sealed): the masker with RAW_ENCRYPTION=required on the same batches "
        "sealed as ingest seals them, in the same rounds",
    )
    parser.add_argument(
        "--raw-encryption-compression", choices=("none", "lz4"), default="none",
        help="RAW_ENCRYPTION_COMPRESSION of the sealing (lz4: compressed before sealing)",
    )
    parser.add_argument(
        "--agent-only", action="store_true",
        help="also (b_agent) and (b_agent_state): the masker's agent with mask_message "
        "replaced by a stand-in that publishes the raw value (bench/masker_agent_only.py), "
        "without and with a stored state per batch: what the agent around the masking costs",
    )
    parser.add_argument(
        "--agent-state-bytes", type=int, default=400,
        help="the state (b_agent_state) stores per batch (generator pages: ~380)",
    )
    args = parser.parse_args()
    if args.agent_only and args.pure_only:
        parser.error("--agent-only runs workers on the broker: drop --pure-only")
    if args.raw_encryption and args.pure_only:
        parser.error("--raw-encryption seals through keys.raw on the broker: drop --pure-only")

    messages = messages_for(args)
    events = sum(m.events for m in messages)
    data_mb = sum(len(m.value) for m in messages) / 1e6
    print(
        f"data: {args.sessions} sessions, {len(messages)} batches, {events} events, "
        f"{data_mb:.1f} MB",
        flush=True,
    )
    registry = bench_registry()
    rates: dict[str, list[float]] = {"floor": [], "pure": []}
    if not args.pure_only:
        rates = {"passthrough": [], "masker": [], **rates}
    if args.raw_encryption:
        rates["sealed"] = []
        rates["passthrough_sealed"] = []
        rates["pure_sealed"] = []
    if args.agent_only:
        rates["agent"] = []
        rates["agent_state"] = []
    if args.baseline is not None:
        rates["baseline_pure"] = []
        if not args.pure_only:
            rates["baseline"] = []
    state_sizes: list[int] = []
    cpu_per_m: dict[str, list[float]] = {}  # Kafka workers: CPU-s per million events

    with tempfile.TemporaryDirectory(prefix="bench-masker-") as tmp:
        data_file = Path(tmp) / "messages.json"
        if args.baseline is not None:
            data_file.write_bytes(
                orjson.dumps([[m.key.decode(), m.value.decode()] for m in messages])
            )
        broker = None
        if not args.pure_only:
            broker = LocalKafkaBroker(
                Path(tmp) / "kafka", free_port(), free_port(), heap="1g",
                partitions=args.partitions,
            )
            broker.start()
        try:
            workers = {}
            if broker is not None:
                workers = _workers(broker.bootstrap_servers, Path(tmp), args, messages)
                if args.raw_encryption:
                    sealed, open_value = _produce_sealed(
                        broker.bootstrap_servers, Path(tmp) / "keys", args, messages
                    )
                # One discarded pass-through run: the broker's first read of fresh data is slower.
                workers["passthrough"]("bench-warmup")
            for round_no in range(args.rounds):
                # Alternate which worker goes first, so neither always gets a warmer broker.
                order = [
                    k
                    for k in (
                        "passthrough", "masker", "sealed", "passthrough_sealed", "baseline",
                        "agent", "agent_state",
                    )
                    if k in workers
                ]
                if round_no % 2:
                    order.reverse()
                for variant in order:
                    run = workers[variant](f"bench-{variant}-{round_no}")
                    rates[variant].append(events / run.span_s)
                    cpu_per_m.setdefault(variant, []).append(
                        run.cpu_per_record * len(messages) / events * 1e6
                    )
                rates["floor"].append(events / pure_floor(messages))
                elapsed, state_sizes = pure_masking(messages, registry)
                rates["pure"].append(events / elapsed)
                if args.raw_encryption:
                    rates["pure_sealed"].append(
                        events / pure_masking(sealed, registry, open_value)[0]
                    )
                if args.baseline is not None:
                    rates["baseline_pure"].append(
                        events / baseline_pure_masking(
                            args.baseline.resolve(), data_file, args.baseline_core
                        )
                    )
                print(
                    f"round {round_no + 1}: "
                    + ", ".join(f"{k} {v[-1]:,.0f} ev/s" for k, v in rates.items()),
                    flush=True,
                )
        finally:
            if broker is not None:
                broker.stop()

    med = {k: statistics.median(v) for k, v in rates.items()}
    reference = "passthrough" if "passthrough" in med else "floor"
    print()
    print(f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}")
    print(
        f"Data: {args.sessions} sessions, {len(messages)} batches, {events} events "
        f"({events / args.sessions:.0f}/session), {data_mb:.1f} MB; full snapshots "
        f"~{args.snapshot_bytes // 1000} KB ({args.page}); {args.partitions} partitions; "
        f"{args.rounds} rounds; load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print(f"| variant | events/s (median) | batches/s | vs {reference} |")
    print("|---|---:|---:|---:|")
    per_batch = len(messages) / events
    for key, label in NAMES.items():
        if key in med:
            ratio = med[key] / med[reference]
            print(f"| {label} | {med[key]:,.0f} | {med[key] * per_batch:,.0f} | {ratio:.2f}x |")
    print()
    print(
        f"State bytes per session (stored table value): median {percentile(state_sizes, 0.5)}, "
        f"p95 {percentile(state_sizes, 0.95)}, max {max(state_sizes)}"
    )
    pairs = [("masker", "passthrough"), ("sealed", "passthrough"), ("sealed", "masker"),
             ("sealed", "passthrough_sealed"), ("passthrough_sealed", "passthrough"),
             ("baseline", "passthrough"), ("pure", "floor"), ("pure_sealed", "pure"),
             ("baseline_pure", "floor"), ("agent", "passthrough"), ("agent_state", "passthrough")]
    for top, bottom in pairs:
        if top in rates and bottom in rates:
            print_paired(f"{top} / {bottom} per round (same minute)", rates[top], rates[bottom])
    print("Raw rounds:", {k: [round(x) for x in v] for k, v in rates.items()})
    if cpu_per_m:
        # The workers' own CPU per event (busy window): robust where the speed is not.
        print()
        print("| Kafka worker | CPU-s per million events (median) | per round |")
        print("|---|---:|---|")
        for key, values in cpu_per_m.items():
            rounds = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {NAMES[key]} | {statistics.median(values):.1f} | {rounds} |")
        for top, bottom in (
            ("masker", "passthrough"), ("baseline", "masker"), ("agent", "passthrough"),
            ("agent_state", "passthrough"), ("masker", "agent_state"),
        ):
            if top in cpu_per_m and bottom in cpu_per_m:
                # Inverted (bottom / top), so that like the speeds, higher is better for top.
                print_paired(
                    f"CPU per event, {bottom} / {top} per round", cpu_per_m[bottom], cpu_per_m[top]
                )


def print_paired(label: str, tops: list[float], bottoms: list[float]) -> None:
    """One line: ``label``, each round's top / bottom, and their median."""
    paired = [t / b for t, b in zip(tops, bottoms, strict=True)]
    print(
        f"{label}: " + ", ".join(f"{r:.2f}" for r in paired)
        + f"; median {statistics.median(paired):.2f}"
    )


def _workers(
    bootstrap: str, tmp: Path, args: argparse.Namespace, messages: list[Message]
) -> dict[str, Callable[[str], WorkerRun]]:
    """Run-one-round functions of the Kafka workers: name -> its run over all messages."""
    asyncio.run(create_topics(bootstrap, args.partitions))
    asyncio.run(produce(bootstrap, messages))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_PARTITIONS": str(args.partitions),
        "SITES_FILE": str(PROJECT_ROOT / "config" / "sites.json"),
        "MASKER_STATE_DIR": str(tmp / "masker"),
        "LOG_LEVEL": "WARNING",
    }
    if args.raw_encryption:
        env["RAW_ENCRYPTION"] = "off"  # (b) on clear input whatever the caller's environment
        env_sealed = {
            **env, "RAW_ENCRYPTION": "required", "RAW_KEK_DIR": str(tmp / "keys"),
        }
    passthrough_cmd = [sys.executable, "-m", "bench.masker_passthrough"]
    masker_cmd = [sys.executable, "-m", "services.cli", "masker"]

    def passthrough(name: str) -> WorkerRun:
        env_pass = {**env, "BENCH_APP_ID": name, "BENCH_OUTPUT_TOPIC": PASSTHROUGH_TOPIC}
        return run_worker(
            passthrough_cmd, env_pass, bootstrap, PASSTHROUGH_TOPIC, len(messages),
            args.partitions,
        )

    def masker(
        name: str,
        checkout: Path = PROJECT_ROOT,
        extra_env: dict[str, str] | None = None,
        command: list[str] = masker_cmd,
    ) -> WorkerRun:
        env_mask = {
            **env, "MASKER_APP_ID": name, "MASKER_PORT": str(free_port()),
            "MASKER_STATE_DIR": str(tmp / name), "PYTHONPATH": str(checkout), **(extra_env or {}),
        }
        return run_worker(
            command, env_mask, bootstrap, topics.MASKED, len(messages), args.partitions,
            cwd=checkout,
        )

    workers: dict[str, Callable[[str], WorkerRun]] = {
        "passthrough": passthrough, "masker": masker,
    }
    if args.raw_encryption:

        def sealed(name: str) -> WorkerRun:
            env_run = {
                **env_sealed, "MASKER_APP_ID": name, "MASKER_PORT": str(free_port()),
                "MASKER_STATE_DIR": str(tmp / name),
            }
            return run_worker(
                [sys.executable, "-m", "bench.masker_sealed"], env_run, bootstrap,
                topics.MASKED, len(messages), args.partitions,
            )

        def passthrough_sealed(name: str) -> WorkerRun:
            env_pass = {**env, "BENCH_APP_ID": name, "BENCH_OUTPUT_TOPIC": PASSTHROUGH_TOPIC}
            return run_worker(
                [sys.executable, "-m", "bench.masker_sealed", "passthrough"], env_pass,
                bootstrap, PASSTHROUGH_TOPIC, len(messages), args.partitions,
            )

        workers["sealed"] = sealed
        workers["passthrough_sealed"] = passthrough_sealed
    if args.agent_only:

        agent_cmd = [sys.executable, "-m", "bench.masker_agent_only"]

        def agent(state_bytes: int) -> Callable[[str], WorkerRun]:
            extra = {"BENCH_AGENT_STATE_BYTES": str(state_bytes)}
            return lambda name: masker(name, extra_env=extra, command=agent_cmd)

        workers["agent"] = agent(0)
        workers["agent_state"] = agent(args.agent_state_bytes)
    if args.baseline is not None:
        baseline = args.baseline.resolve()
        baseline_env = dict(item.partition("=")[::2] for item in args.baseline_env)
        if args.baseline_core is not None:
            baseline_env.setdefault("PYTHONPATH", baseline_path(baseline, args.baseline_core))
        workers["baseline"] = lambda name: masker(name, baseline, baseline_env)
    return workers


def _produce_sealed(
    bootstrap: str, kek_dir: Path, args: argparse.Namespace, messages: list[Message]
) -> tuple[list[Message], Callable[[bytes, bytes], bytes]]:
    """A new KEK in ``kek_dir``; the messages sealed as ingest seals them, on SEALED_TOPIC.

    Returns the sealed messages and the masker's way of opening them, with the
    data key read back from ``keys.raw``.
    """
    new_kek_file(kek_dir)
    settings = RawEncryptionSettings(
        mode="required", kek_dir=str(kek_dir), compression=args.raw_encryption_compression
    )
    kafka = KafkaSettings(bootstrap_servers=bootstrap, partitions=args.partitions)
    values = asyncio.run(seal_values([(m.key, m.value) for m in messages], settings, kafka))
    sealed = [Message(m.key, v, m.events) for m, v in zip(messages, values, strict=True)]
    asyncio.run(produce(bootstrap, sealed, SEALED_TOPIC))
    # Read it once, as the discarded warm-up run reads the clear copy: the broker's
    # first read of fresh data is slower, and no round should pay for it.
    end = asyncio.run(end_offsets(bootstrap, SEALED_TOPIC, args.partitions))
    asyncio.run(append_time_span(bootstrap, dict.fromkeys(end, 0), end))
    print(
        f"sealed copy on {SEALED_TOPIC} (RAW_ENCRYPTION_COMPRESSION="
        f"{settings.compression}): {sum(len(m.value) for m in sealed) / 1e6:.1f} MB",
        flush=True,
    )
    return sealed, sealed_opener(asyncio.run(load_keyring(settings, kafka, unwrap=True)))


if __name__ == "__main__":
    main()
