"""The soak: the pipeline on a 3-broker KRaft cluster under steady load, with faults.

Run: ``.venv/bin/python -m bench.soak.run [--events 1000000] [--rate 3000] [--quick]``
(``make soak``; not part of ``make test``). In order:

1. a 3-node cluster (:mod:`bench.soak.cluster`: RF 3, ``min.insync.replicas=2``),
   the topics, one ingest, masker ``a`` and sink ``a``;
2. generated sessions POSTed to ingest at a fixed ``--rate`` (events/s) until
   ``--events`` were acknowledged (202); a batch answered otherwise is retried,
   as the recorder does;
3. at 10-20 % of the load one masker and one sink do all the work; at 20 %
   masker ``b`` and sink ``b`` join (same consumer groups); 30-45 % is the
   two-worker window. CPU-seconds (``/proc``) per million events in both;
4. at 50, 65 and 80 % (and 10 s after the previous fault settled): kill -9
   one broker, then masker ``b``, then sink ``b``; each is started again after
   ``--down-s``. Recorded per fault: the group's
   rebalance (or the partitions' leader election) time, and the time until
   the stored rate is back to 90 % of the rate before the fault;
5. when the load is done and the stores have stopped growing: each worker's
   readiness and lag, and every batch on ``recordings.masked``; then the
   services stop and each store is read (``FINAL``): events acknowledged,
   stored, missing (split: never masked, or masked and not stored), visible
   duplicates.

Two sinks, two stores: the sink's embedded ClickHouse (chdb) belongs to one
process, and no ClickHouse server that runs this schema can be installed here
(Debian's is 18.16, older than ``JSONExtract``). So each sink writes its own
embedded store, in one consumer group: a partition that moves from sink ``b``
to ``a`` after the kill is redelivered into ``a``'s store. A batch then found
in both stores is reported as a cross-store copy (one shared server's
``ReplacingMergeTree`` + ``FINAL`` would show it once), apart from visible
duplicates (rows one store's ``FINAL`` query shows twice).

Prints one JSON document (also written to ``var/soak/results.json``) and a
Markdown summary for docs/benchmarks.md (section ``soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.soak.accounting import (
    BatchKey,
    DeliveryReport,
    StoredBatch,
    cpu_s_per_million,
    delivery_report,
    mean_rate,
    offset_runs,
    rates,
    recovery_s,
    running_total,
)
from bench.soak.cluster import KafkaCluster
from services.dev.kafka_broker import PROJECT_ROOT, free_port
from services.dev.rrweb_gen import generate_session
from services.dev.stack import LocalStack
from services.shared import topics
from services.shared.keyring import new_kek_file

SITE_ID = "soak"
SITE_KEY = "pk_soak"
MASKER_APP_ID = "soak-masker"
SINK_GROUP_ID = "soak-sink"
RATE_WINDOW_S = 5.0
RECOVERED_FRACTION = 0.9
SETTLE_S = 10.0


@dataclass
class Slot:
    """A masker and a sink (and maybe the ingest) with their own folder and store."""

    name: str
    stack: LocalStack

    def port(self, service: str) -> int:
        """The service's ops/HTTP port."""
        return {
            "ingest": self.stack.ingest_port,
            "masker": self.stack.masker_port,
            "sink": self.stack.sink_port,
        }[service]

    @property
    def store(self) -> Path:
        """The sink's embedded ClickHouse folder."""
        return self.stack.var_dir / "clickhouse"

    def start(self, service: str) -> None:
        """Start ``service`` and wait for its ``/readyz``."""
        self.stack.start_service(service)
        self.stack.wait_ready(service, self.port(service), timeout=180.0)

    def kill(self, service: str) -> None:
        """kill -9, as a crash."""
        self.stack.stop_service(service, signal.SIGKILL)

    def pid(self, service: str) -> int | None:
        """The running process of ``service``, if any."""
        proc = self.stack.processes.get(service)
        return proc.pid if proc is not None and proc.poll() is None else None


def make_slot(name: str, work: Path, cluster: KafkaCluster, sites: Path, kek_dir: Path) -> Slot:
    """A slot under ``work/name`` on the cluster, in the soak's consumer groups."""
    var_dir = work / name
    env = {
        **cluster.service_env(),
        "MASKER_APP_ID": MASKER_APP_ID,
        "SINK_GROUP_ID": SINK_GROUP_ID,
        "SINK_ADMIN_TOKEN": "soak-admin",
        "RAW_KEK_DIR": str(kek_dir),  # one key for every worker: any masker opens any batch
        "CLICKHOUSE_URL": f"chdb://{var_dir / 'clickhouse'}",
        "LOG_LEVEL": "INFO",  # faust's rebalance and recovery steps, to read after a stall
    }
    stack = LocalStack(
        var_dir=var_dir,
        kafka_port=cluster.nodes[0].port,
        ingest_port=free_port(),
        masker_port=free_port(),
        sink_port=free_port(),
        sites_file=sites,
        extra_env=env,
        stop_with_parent=True,
    )
    return Slot(name, stack)


# --- load -------------------------------------------------------------------------


@dataclass
class Load:
    """The driver's figures: acknowledged batches, answers that were not 202."""

    target_events: int
    rate: float
    acked: dict[BatchKey, int] = field(default_factory=dict)
    acked_events: int = 0
    scheduled_events: int = 0
    not_accepted: dict[str, int] = field(default_factory=dict)
    gave_up_batches: int = 0
    finished_at: float | None = None

    def note(self, status: str) -> None:
        """Count one answer that was not a 202 (or a connection error)."""
        self.not_accepted[status] = self.not_accepted.get(status, 0) + 1


async def post_batch(
    http: aiohttp.ClientSession, url: str, body: bytes, load: Load, attempts: int = 20
) -> bool:
    """POST one batch until ingest answers 202 (retries with backoff, as the recorder)."""
    for attempt in range(attempts):
        try:
            async with http.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                if response.status == 202:
                    return True
                load.note(str(response.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.note(type(exc).__name__)
        await asyncio.sleep(min(0.25 * 2**attempt, 2.0))
    return False


async def drive(url: str, load: Load, concurrency: int, seed: int) -> None:
    """Send generated sessions at ``load.rate`` events/s until ``load.target_events``."""
    rng = random.Random(seed)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)

    async def visitor(http: aiohttp.ClientSession) -> None:
        while load.scheduled_events < load.target_events:
            session = generate_session(rng, site_id=SITE_ID, start_ms=int(time.time() * 1000))
            for seq, batch in enumerate(session.batches):
                if load.scheduled_events >= load.target_events:
                    return
                # Paced: this batch's slot on a fixed events/s schedule.
                slot_at = started + load.scheduled_events / load.rate
                load.scheduled_events += len(batch)
                await asyncio.sleep(max(0.0, slot_at - time.monotonic()))
                body = orjson.dumps(
                    {
                        "session_id": session.session_id,
                        "window_id": session.window_id,
                        "visitor_id": session.visitor_id,
                        "seq": seq,
                        "events": batch,
                    }
                )
                if await post_batch(http, url, body, load):
                    load.acked[(session.session_id, seq)] = len(batch)
                    load.acked_events += len(batch)
                else:
                    load.gave_up_batches += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.gather(*(visitor(http) for _ in range(concurrency)))
    load.finished_at = time.monotonic()


# --- sampling ---------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (``/proc/PID/stat``), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def metric_value(text: str, name: str) -> float:
    """The sum of a Prometheus metric's samples in an exposition (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Samples:
    """Once a second: counters per worker (as scraped) and CPU per worker process."""

    times: list[float] = field(default_factory=list)
    acked: list[float] = field(default_factory=list)
    counters: dict[str, list[float]] = field(default_factory=dict)  # "masker:a" → samples
    cpu: dict[str, list[float]] = field(default_factory=dict)  # "masker:a" → CPU-s (0 if down)

    def total(self, service: str) -> list[float]:
        """A service's events over time, added up over its workers and their restarts."""
        series = [running_total(v) for k, v in self.counters.items() if k.startswith(service)]
        return [sum(column) for column in zip(*series, strict=True)] if series else []


COUNTERS = {"masker": "replaypipe_masker_events_total", "sink": "replaypipe_sink_rows_total"}


async def scrape(http: aiohttp.ClientSession, port: int, name: str) -> float | None:
    """One counter of a worker's ``/metrics``, None if it does not answer."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            return metric_value(await response.text(), name)
    except (aiohttp.ClientError, TimeoutError):
        return None


async def sample_forever(slots: list[Slot], load: Load, samples: Samples) -> None:
    """Append one sample a second until cancelled."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            now = time.monotonic()
            values: dict[str, float] = {}
            for slot in slots:
                for service, counter in COUNTERS.items():
                    key = f"{service}:{slot.name}"
                    previous = samples.counters.get(key, [0.0])[-1] if samples.times else 0.0
                    pid = slot.pid(service)
                    port = slot.port(service)
                    scraped = None if pid is None else await scrape(http, port, counter)
                    # A worker down keeps its last count; its restart counts from 0 again.
                    values[key] = previous if scraped is None else scraped
                    cpu = None if pid is None else cpu_seconds(pid)
                    samples.cpu.setdefault(key, [0.0] * len(samples.times)).append(cpu or 0.0)
            samples.times.append(now)
            samples.acked.append(load.acked_events)
            for key, value in values.items():
                samples.counters.setdefault(key, [0.0] * (len(samples.times) - 1)).append(value)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - now)))


# --- rebalance and leader election ------------------------------------------------

# Consumer-group and topic states read from the cluster; None: it did not answer.
GroupView = tuple[str, frozenset[str]]  # (state, member ids)


class ClusterWatch:
    """Reads group membership and partition leaders; one admin client, its logs quiet.

    Every call blocks (run it in a thread) and answers None / False while the
    cluster is changing under it, to be asked again.
    """

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient

        # A dead broker makes librdkafka log a line per reconnect: not the soak's output.
        quiet = logging.getLogger("soak.admin")
        quiet.setLevel(logging.CRITICAL)
        config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": quiet}
        self._admin = AdminClient(config)

    def group(self, group: str) -> GroupView | None:
        """The group's state and member ids."""
        try:
            found = self._admin.describe_consumer_groups([group], request_timeout=5)[group]
            description = found.result()
        except Exception:  # librdkafka raises KafkaException and friends
            return None
        return str(description.state.name), frozenset(m.member_id for m in description.members)

    def _partitions(self, topic_names: list[str]) -> list[Any] | None:
        try:
            metadata = self._admin.list_topics(timeout=5)
        except Exception:
            return None
        found: list[Any] = []
        for name in topic_names:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None or not topic.partitions:
                return None
            found.extend(topic.partitions.values())
        return found

    def led_without(self, node_id: int, topic_names: list[str]) -> bool:
        """Whether every partition of ``topic_names`` has a leader other than ``node_id``."""
        partitions = self._partitions(topic_names)
        return partitions is not None and all(p.leader not in (-1, node_id) for p in partitions)

    def fully_replicated(self, topic_names: list[str], replicas: int) -> bool:
        """Whether every partition of ``topic_names`` has ``replicas`` in sync."""
        partitions = self._partitions(topic_names)
        return partitions is not None and all(len(p.isrs) >= replicas for p in partitions)

    def replicas(self) -> dict[str, int]:
        """Per topic of the cluster, the fewest replicas any of its partitions has."""
        metadata = self._admin.list_topics(timeout=10)
        return {
            name: min((len(p.replicas) for p in topic.partitions.values()), default=0)
            for name, topic in sorted(metadata.topics.items())
        }

    def settled_without_one_of(self, group: str, before: frozenset[str]) -> Callable[[], bool]:
        """A condition: the group is Stable and exactly one of ``before``'s members left it."""

        def check() -> bool:
            view = self.group(group)
            return view is not None and view[0] == "STABLE" and len(before - view[1]) == 1

        return check

    def settled_with(self, group: str, members: int) -> Callable[[], bool]:
        """A condition: the group is Stable with ``members`` members."""

        def check() -> bool:
            view = self.group(group)
            return view is not None and view[0] == "STABLE" and len(view[1]) == members

        return check


async def seconds_until(
    condition: Callable[[], bool], started: float, give_up_s: float = 60.0
) -> float | None:
    """Seconds from ``started`` until ``condition()`` (polled in a thread) holds."""
    while time.monotonic() - started < give_up_s:
        if await asyncio.to_thread(condition):
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    return None


# --- the run ----------------------------------------------------------------------


@dataclass
class Fault:
    """One kill -9 and restart, with what it cost."""

    what: str
    at_fraction: float
    killed_at: float = 0.0
    restarted_at: float = 0.0  # ready again
    # Broker: new leaders for the dead node's partitions; worker: the group stable
    # with the survivor alone.
    takeover_s: float | None = None
    rejoin_s: float | None = None  # from restart: back in (ISR full / group of two)
    recovery_s: float | None = None
    rate_before: float = 0.0
    rate_during: float = 0.0
    rate_after: float = 0.0


async def wait_until_acked(load: Load, fraction: float) -> None:
    """Return once ``fraction`` of the target events were acknowledged."""
    # A poll: the driver's counter moves on every answer, an event per mark is not worth it.
    while load.acked_events < fraction * load.target_events and load.finished_at is None:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


PIPELINE_TOPICS = ["recordings.raw", "recordings.masked"]


async def inject(
    fault: Fault, load: Load, cluster: KafkaCluster, watch: ClusterWatch, slot: Slot, down_s: float
) -> None:
    """Wait for the fault's moment, kill -9, wait ``down_s``, start again; time the steps.

    Takeover: a broker's partitions led by another node, or a worker's group
    stable again without it. Rejoin (from the restart): every replica back in
    sync, or the group stable with two members again.
    """
    await wait_until_acked(load, fault.at_fraction)
    if fault.what == "broker":
        node = cluster.nodes[1]
        fault.killed_at = time.monotonic()
        node.kill()
        takeover = asyncio.create_task(
            seconds_until(lambda: watch.led_without(node.node_id, PIPELINE_TOPICS), fault.killed_at)
        )
        await asyncio.sleep(down_s)
        await asyncio.to_thread(node.start, 180.0)
        fault.restarted_at = time.monotonic()
        fault.takeover_s = await takeover
        fault.rejoin_s = await seconds_until(
            lambda: watch.fully_replicated(PIPELINE_TOPICS, 3), fault.restarted_at
        )
        return
    group = MASKER_APP_ID if fault.what == "masker" else SINK_GROUP_ID
    view = await asyncio.to_thread(watch.group, group)
    before = view[1] if view is not None else frozenset()
    fault.killed_at = time.monotonic()
    slot.kill(fault.what)
    takeover = asyncio.create_task(
        seconds_until(watch.settled_without_one_of(group, before), fault.killed_at)
    )
    await asyncio.sleep(down_s)
    await asyncio.to_thread(slot.start, fault.what)
    fault.restarted_at = time.monotonic()
    fault.takeover_s = await takeover
    fault.rejoin_s = await seconds_until(watch.settled_with(group, 2), fault.restarted_at)


async def records_to_end(bootstrap: str, topic: str) -> AsyncIterator[Any]:
    """Every record of ``topic`` from its start to the end offsets it had when
    the read began (no group): to the end offsets, not until a quiet poll — a
    slow first fetch is no end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        deadline = time.monotonic() + 300.0
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                break
            batch = await consumer.getmany(timeout_ms=2000)
            for records in batch.values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()


async def masked_batches(bootstrap: str) -> set[BatchKey]:
    """Every soak batch on ``recordings.masked``."""
    found: set[BatchKey] = set()
    async for record in records_to_end(bootstrap, topics.MASKED):
        header = orjson.loads(record.value)
        if header.get("site_id") == SITE_ID:
            found.add((header["session_id"], int(header["seq"])))
    return found


# Where a batch sits on ``recordings.raw``: (partition, offset, record time in ms).
RawPlace = tuple[int, int, int]


async def raw_batches(bootstrap: str, kek_dir: Path) -> dict[BatchKey, list[RawPlace]]:
    """Every soak batch on ``recordings.raw``, opened with the run's KEK, and where it is.

    A batch retried after a lost answer can be there twice: every place is kept.
    """
    from services.shared.kafka import KafkaSettings
    from services.shared.keyring import RawEncryptionSettings, load_keyring, now_ms
    from services.shared.raw_crypto import (
        RawValueUnreadable,
        is_sealed,
        open_sealed,
        sealed_key_id,
    )

    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    settings = RawEncryptionSettings(mode="on", kek_dir=str(kek_dir))
    keyring = await load_keyring(settings, kafka, unwrap=True)
    found: dict[BatchKey, list[RawPlace]] = {}
    async for record in records_to_end(bootstrap, topics.RAW):
        value = record.value or b""
        if is_sealed(value):
            try:
                key = keyring.get(sealed_key_id(value), now_ms())
                value = open_sealed(key, record.key or b"", value)
            except RawValueUnreadable:
                continue
        doc = orjson.loads(value)
        if doc.get("site_id") == SITE_ID:
            place = (record.partition, record.offset, record.timestamp)
            found.setdefault((doc["session_id"], int(doc["seq"])), []).append(place)
    return found


async def dlq_sources(bootstrap: str) -> set[tuple[int, int]]:
    """The ``recordings.raw`` (partition, offset) of every masker pointer on the DLQ."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        "recordings.dlq",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    sources: set[tuple[int, int]] = set()
    try:
        while batch := await consumer.getmany(timeout_ms=3000):
            for record in (r for records in batch.values() for r in records):
                headers = dict(record.headers or ())
                source = headers.get("source", b"").decode()
                topic, _, place = source.partition("/")
                if headers.get("stage") == b"masker" and topic == "recordings.raw":
                    partition, _, offset = place.partition("/")
                    sources.add((int(partition), int(offset)))
    finally:
        await consumer.stop()
    return sources


async def committed_offsets(bootstrap: str, group: str, partitions: int) -> dict[str, int | None]:
    """The group's committed offset per ``recordings.raw`` partition (without joining it)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {
            str(p): await consumer.committed(TopicPartition("recordings.raw", p))
            for p in range(partitions)
        }
    finally:
        await consumer.stop()


def where_missing(
    acked: dict[BatchKey, int],
    masked: set[BatchKey],
    stores: list[dict[BatchKey, StoredBatch]],
    raw: dict[BatchKey, list[RawPlace]] | None = None,
    dlq: set[tuple[int, int]] | None = None,
    load_started_ms: int = 0,
) -> dict[str, Any]:
    """The missing batches split by stage.

    Never on ``recordings.raw`` (lost before the masker), on it but pointed to
    by a masker DLQ record (not maskable), on it and never masked (the masker
    committed past it), or masked and not stored. For the never-masked ones,
    their raw offsets per partition as runs, and their record times (seconds
    from the load's start) to set beside the faults.
    """
    missing = [k for k in acked if not any(k in store for store in stores)]
    not_masked = [k for k in missing if k not in masked]
    stored = set().union(*(store.keys() for store in stores))
    report: dict[str, Any] = {
        "masked_batches_read": len(masked),
        # Must be 0: a stored batch was masked, so the topic read was complete.
        "stored_not_in_masked_read": len(stored - masked),
        "batches": len(missing),
        "not_masked_batches": len(not_masked),
        "not_masked_events": sum(acked[k] for k in not_masked),
        "masked_not_stored_batches": len(missing) - len(not_masked),
        "examples": [list(k) for k in missing[:10]],
    }
    if raw is None:
        return report
    dlq = dlq or set()
    places = [(k, p) for k in not_masked for p in raw.get(k, [])]
    in_dlq = {k for k, (partition, offset, _) in places if (partition, offset) in dlq}
    skipped = [(k, p) for k, p in places if k not in in_dlq]
    by_partition: dict[int, list[int]] = {}
    for _, (partition, offset, _) in skipped:
        by_partition.setdefault(partition, []).append(offset)
    times = sorted((ms - load_started_ms) / 1000 for _, (_, _, ms) in skipped)
    report["never_masked"] = {
        "not_on_raw_batches": sum(1 for k in not_masked if k not in raw),
        "on_dlq_batches": len(in_dlq),
        "on_raw_skipped_batches": len({k for k, _ in skipped}),
        "raw_offset_runs": {str(p): offset_runs(o) for p, o in sorted(by_partition.items())},
        "raw_record_s_from_load_start": [times[0], times[-1]] if times else None,
    }
    return report


def read_store(store: Path) -> dict[BatchKey, StoredBatch]:
    """Every soak batch in one embedded store, read in a child process (chdb is per process)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak.read_store", str(store), SITE_ID],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    )
    batches: dict[BatchKey, StoredBatch] = {}
    for line in result.stdout.splitlines():
        session_id, seq, rows, distinct = orjson.loads(line)
        batches[(session_id, int(seq))] = StoredBatch(int(rows), int(distinct))
    return batches


async def wait_for_drain(
    samples: Samples, load: Load, settled_s: float, stalled_s: float, give_up_s: float
) -> None:
    """After the load: wait until the stored count stops growing.

    Done once it holds at least every acknowledged event (redeliveries count
    too: the stores are read exactly afterwards) and has not moved for
    ``settled_s``; given up if it stays short and still for ``stalled_s``.
    """
    deadline = time.monotonic() + give_up_s
    last_total, last_change = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        stored = samples.total("sink")
        total = stored[-1] if stored else 0.0
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        still_s = now - last_change
        if still_s >= (settled_s if total >= load.acked_events else stalled_s):
            return
        await asyncio.sleep(1.0)


LAGS = {"masker": "replaypipe_masker_consumer_lag", "sink": "replaypipe_sink_consumer_lag"}


async def end_state(slots: list[Slot], watch: ClusterWatch) -> dict[str, Any]:
    """What each worker says once the stores stopped growing: readiness, lag per partition.

    Tells "not yet masked or stored" (lag left on a topic, kept by
    at-least-once) from "gone" when the stores are short of the acknowledged.
    """
    state: dict[str, Any] = {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for slot in slots:
            for service, lag_name in LAGS.items():
                port = slot.port(service)
                entry: dict[str, Any] = {"running": slot.pid(service) is not None}
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        entry["readyz"] = f"{response.status} {await response.text()}"
                    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                        text = await response.text()
                    entry["lag"] = [
                        line for line in text.splitlines() if line.startswith(lag_name + "{")
                    ]
                except (aiohttp.ClientError, TimeoutError) as exc:
                    entry["error"] = type(exc).__name__
                state[f"{service}:{slot.name}"] = entry
    for group in (MASKER_APP_ID, SINK_GROUP_ID):
        view = await asyncio.to_thread(watch.group, group)
        state[f"group:{group}"] = None if view is None else [view[0], len(view[1])]
    return state


def window_cpu(samples: Samples, service: str, start: float, end: float) -> tuple[float, float]:
    """(CPU-s of the service's workers, its events) between ``start`` and ``end``."""
    inside = [i for i, t in enumerate(samples.times) if start <= t <= end]
    if len(inside) < 2:
        return 0.0, 0.0
    first, last = inside[0], inside[-1]
    cpu = sum(
        v[last] - v[first]
        for k, v in samples.cpu.items()
        if k.startswith(service) and v[first] > 0 and v[last] > 0
    )
    totals = samples.total(service)
    return cpu, totals[last] - totals[first]


async def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The whole run; returns the figures."""
    sites = work / "sites.json"
    sites.write_bytes(
        orjson.dumps(
            {
                "sites": [
                    {
                        "site_id": SITE_ID,
                        "public_keys": [SITE_KEY],
                        "rate_limit_per_second": 1e9,
                        "rate_limit_burst": 10**9,
                    }
                ]
            }
        )
    )
    cluster = KafkaCluster(work / "kafka", heap=args.broker_heap)
    print(f"soak: starting 3 brokers in {work}", flush=True)
    # Enough threads for the blocking starts and polls running at once.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(16))
    await cluster.start()
    watch = ClusterWatch(cluster.bootstrap_servers)
    kek_dir = work / "keys"
    new_kek_file(kek_dir)
    slots = [make_slot(name, work, cluster, sites, kek_dir) for name in ("a", "b")]
    a, b = slots
    load = Load(target_events=args.events, rate=args.rate)
    samples = Samples()
    faults = [
        Fault("broker", 0.50),
        Fault("masker", 0.65),
        Fault("sink", 0.80),
    ]
    try:
        for service in ("sink", "masker", "ingest"):
            await asyncio.to_thread(a.start, service)
        print("soak: ingest, masker a and sink a ready; load starts", flush=True)
        sampler = asyncio.create_task(sample_forever(slots, load, samples))
        url = f"http://127.0.0.1:{a.stack.ingest_port}/v1/recordings?key={SITE_KEY}"
        driver = asyncio.create_task(drive(url, load, args.concurrency, args.seed))
        marks: dict[str, float] = {"load_started": time.monotonic()}
        load_started_ms = int(time.time() * 1000)
        await wait_until_acked(load, 0.10)
        marks["one_worker_from"] = time.monotonic()
        await wait_until_acked(load, 0.20)
        marks["one_worker_to"] = time.monotonic()
        print("soak: masker b and sink b join", flush=True)
        for service in ("sink", "masker"):
            await asyncio.to_thread(b.start, service)
        joined = time.monotonic()
        await seconds_until(watch.settled_with(MASKER_APP_ID, 2), joined)
        await seconds_until(watch.settled_with(SINK_GROUP_ID, 2), joined)
        await wait_until_acked(load, 0.30)
        marks["two_workers_from"] = time.monotonic()
        await wait_until_acked(load, 0.45)
        marks["two_workers_to"] = time.monotonic()
        for fault in faults:
            print(f"soak: kill -9 {fault.what} at {fault.at_fraction:.0%}", flush=True)
            await inject(fault, load, cluster, watch, b, args.down_s)
            await asyncio.sleep(SETTLE_S)  # the next fault's "before" is steady again
        await driver
        assert load.finished_at is not None
        marks["load_finished"] = load.finished_at
        replicas = await asyncio.to_thread(watch.replicas)
        print("soak: load done; waiting for the stores to catch up", flush=True)
        await wait_for_drain(samples, load, settled_s=10.0, stalled_s=60.0, give_up_s=900.0)
        marks["drained"] = time.monotonic()
        at_end = await end_state(slots, watch)
        masked = await masked_batches(cluster.bootstrap_servers)
        # Where the batches no store holds went (the masker group still running).
        raw = await raw_batches(cluster.bootstrap_servers, kek_dir)
        dlq = await dlq_sources(cluster.bootstrap_servers)
        committed = await committed_offsets(
            cluster.bootstrap_servers, MASKER_APP_ID, cluster.partitions
        )
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    finally:
        for slot in slots:
            await asyncio.to_thread(slot.stack.stop_services)
        await asyncio.to_thread(cluster.stop)
    stores = [read_store(slot.store) for slot in slots]
    report = delivery_report(load.acked, stores)
    result = summarise(args, load, samples, faults, marks, report)
    result["topic_replicas"] = replicas
    result["at_end"] = at_end
    result["missing_by_stage"] = where_missing(
        load.acked, masked, stores, raw, dlq, load_started_ms
    )
    result["masker_committed_offsets"] = committed
    return result


def summarise(
    args: argparse.Namespace,
    load: Load,
    samples: Samples,
    faults: list[Fault],
    marks: dict[str, float],
    report: DeliveryReport,
) -> dict[str, Any]:
    """The run's figures, times relative to the load's start."""
    t0 = marks["load_started"]
    times = samples.times
    stored = samples.total("sink")
    stored_rate = rates(times, stored, RATE_WINDOW_S)
    ends = [f.killed_at for f in faults[1:]] + [marks["load_finished"]]
    for fault, next_at in zip(faults, ends, strict=True):
        fault.rate_before = mean_rate(times, stored, fault.killed_at - 20.0, fault.killed_at)
        fault.recovery_s = recovery_s(
            times,
            stored_rate,
            fault.killed_at,
            fault.rate_before,
            until=next_at,
            fraction=RECOVERED_FRACTION,
        )
        back_at = fault.killed_at + (fault.recovery_s or 0.0)
        during_to = max(back_at, fault.restarted_at)
        fault.rate_during = mean_rate(times, stored, fault.killed_at, during_to)
        fault.rate_after = mean_rate(times, stored, back_at, next_at)
    scale = {}
    for service in ("masker", "sink"):
        one = window_cpu(samples, service, marks["one_worker_from"], marks["one_worker_to"])
        two = window_cpu(samples, service, marks["two_workers_from"], marks["two_workers_to"])
        one_per_m, two_per_m = cpu_s_per_million(*one), cpu_s_per_million(*two)
        scale[service] = {
            "one_worker": {"cpu_s": one[0], "events": one[1], "cpu_s_per_million": one_per_m},
            "two_workers": {"cpu_s": two[0], "events": two[1], "cpu_s_per_million": two_per_m},
            "two_vs_one": two_per_m / one_per_m if one_per_m else None,
        }
    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "delivery": asdict(report),
        "load": {
            "target_events": load.target_events,
            "rate_events_per_s": load.rate,
            "acked_events": load.acked_events,
            "not_accepted_answers": load.not_accepted,
            "gave_up_batches": load.gave_up_batches,
            "load_seconds": marks["load_finished"] - t0,
            "drain_seconds": marks["drained"] - marks["load_finished"],
            "stored_events_per_s_overall": mean_rate(times, stored, t0, marks["drained"]),
        },
        "faults": [
            {**asdict(f), "killed_at": f.killed_at - t0, "restarted_at": f.restarted_at - t0}
            for f in faults
        ],
        "scale": scale,
        "series": {
            "t": [t - t0 for t in times],
            "acked": samples.acked,
            "masked": samples.total("masker"),
            "stored": stored,
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """The summary tables for docs/benchmarks.md."""
    d, ld = result["delivery"], result["load"]
    lines = [
        "| acknowledged | stored | missing | visible duplicates | cross-store copies |",
        "|---:|---:|---:|---:|---:|",
        f"| {d['acknowledged']:,} | {d['stored']:,} | {d['missing']:,} |"
        f" {d['visible_duplicates']:,} | {d['cross_store_copies']:,} |",
        "",
        f"Load: {ld['acked_events']:,} events acknowledged at {ld['rate_events_per_s']:,.0f}"
        f" events/s in {ld['load_seconds']:.0f} s (drain {ld['drain_seconds']:.0f} s);"
        f" answers other than 202 (retried): {ld['not_accepted_answers'] or 'none'}.",
        "",
        "| kill -9 | at | takeover s | rejoin s | recovery s (90 %) |"
        " stored/s before | during | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def secs(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    for f in result["faults"]:
        lines.append(
            f"| {f['what']} | {f['at_fraction']:.0%} | {secs(f['takeover_s'])} |"
            f" {secs(f['rejoin_s'])} | {secs(f['recovery_s'])} | {f['rate_before']:,.0f} |"
            f" {f['rate_during']:,.0f} | {f['rate_after']:,.0f} |"
        )
    lines += [
        "",
        "| worker | CPU-s per M events, 1 worker | 2 workers | 2 vs 1 |",
        "|---|---:|---:|---:|",
    ]
    for service, s in result["scale"].items():
        ratio = s["two_vs_one"]
        lines.append(
            f"| {service} | {s['one_worker']['cpu_s_per_million']:.1f} |"
            f" {s['two_workers']['cpu_s_per_million']:.1f} |"
            f" {'—' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The soak's flags."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak.run", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="events/s offered")
    parser.add_argument("--quick", action="store_true", help="100k events at 400/s (~5 min)")
    parser.add_argument(
        "--down-s", type=float, default=15.0, help="how long a killed one stays down"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--broker-heap", default="512m")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--work",
        type=Path,
        default=PROJECT_ROOT / "var" / "soak",
        help="the run's folder (emptied first; keeps logs, stores and results.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events = 100_000
        args.rate = min(args.rate, 400.0)
    return args


def run_in_fresh_work(
    work: Path, run: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any]:
    """Empty the run's folder, run ``run`` in it and keep its result as ``results.json``."""
    work = work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result = asyncio.run(run(work))
    (work / "results.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the soak; exit 1 unless every acknowledged event is stored once."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    result = run_in_fresh_work(args.work, lambda work: soak(args, work))
    summary = {k: v for k, v in result.items() if k != "series"}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(markdown(result))
    delivery = result["delivery"]
    return 0 if delivery["missing"] == 0 and delivery["visible_duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
