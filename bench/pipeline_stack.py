"""The pipeline benchmark's stack and what it measures of it: the broker and the three
services as processes (:class:`services.dev.stack.LocalStack`, as ``replaypipe run``
starts them) on free ports in a temp folder, their CPU and memory from ``/proc``,
and the bytes they left on disk (Kafka log segments, ClickHouse ``system.parts``).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import Any

import orjson

from bench.bench_ingest import cpu_seconds
from services.dev.kafka_broker import free_port
from services.dev.stack import LocalStack

LOAD_SITE, LOAD_KEY = "bench", "pk_bench"
# Marker sessions go to a site of their own, so finding them is a list query
# over a few hundred sessions rather than over everything the load wrote.
MARK_SITE, MARK_KEY = "mark", "pk_mark"
READ_TOKEN = "rt_bench_local"  # a throwaway token of the temp stack's own sites file
STAGES = ("ingest", "masker", "sink", "kafka")


def write_sites_file(path: Path) -> None:
    """The two benchmark sites: default privacy settings, no rate limit in the way."""
    token_sha256 = hashlib.sha256(READ_TOKEN.encode()).hexdigest()
    sites = [
        {
            "site_id": site_id,
            "public_keys": [key],
            "rate_limit_per_second": 1e9,
            "rate_limit_burst": 10**9,
            "read_token_sha256": [token_sha256],
        }
        for site_id, key in ((LOAD_SITE, LOAD_KEY), (MARK_SITE, MARK_KEY))
    ]
    path.write_bytes(orjson.dumps({"sites": sites}))


def bench_stack(work: Path, *, raw_encryption: str, log_level: str) -> LocalStack:
    """A :class:`LocalStack` under ``work`` on free ports, with the benchmark's sites.

    ``raw_encryption`` is ``on`` (what ``replaypipe run`` does: a local KEK) or ``off``.
    The ClickHouse store is the embedded engine under ``work/clickhouse`` whatever
    ``CLICKHOUSE_URL`` this shell has.
    """
    sites = work / "sites.json"
    write_sites_file(sites)
    return LocalStack(
        var_dir=work,
        kafka_port=free_port(),
        controller_port=free_port(),
        ingest_port=free_port(),
        masker_port=free_port(),
        sink_port=free_port(),
        sites_file=sites,
        extra_env={
            "RAW_ENCRYPTION": raw_encryption,
            "LOG_LEVEL": log_level,
            "CLICKHOUSE_URL": clickhouse_url(work),
        },
        stop_with_parent=True,
    )


def clickhouse_url(work: Path) -> str:
    """The embedded store of the benchmark's sink."""
    return f"chdb://{work / 'clickhouse'}"


def stage_pids(stack: LocalStack) -> dict[str, int]:
    """Process id of each stage: the three services and the broker's JVM."""
    assert stack.broker is not None and stack.broker.process is not None
    pids = {name: proc.pid for name, proc in stack.processes.items()}
    pids["kafka"] = stack.broker.process.pid
    return {stage: pids[stage] for stage in STAGES}


def rss_bytes(pid: int) -> int:
    """Resident memory of a process now (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_by_stage(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) each stage has used so far."""
    return {stage: cpu_seconds(pid) for stage, pid in pids.items()}


class PeakMemory:
    """Samples every stage's resident memory once a second; keeps the highest seen."""

    def __init__(self, pids: dict[str, int], interval_s: float = 1.0) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        for stage, pid in self._pids.items():
            # An exited stage is reported by the step's markers, not here.
            with contextlib.suppress(OSError):
                self.peak[stage] = max(self.peak[stage], rss_bytes(pid))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()


def topic_log_bytes(log_dir: Path, topic: str) -> int:
    """Bytes of a topic's log segments (``*.log`` of every partition; indexes not counted,
    as Kafka preallocates them)."""
    return sum(
        segment.stat().st_size
        for partition in log_dir.glob(f"{topic}-*")
        if partition.name.rsplit("-", 1)[1].isdigit()
        for segment in partition.glob("*.log")
    )


def clickhouse_parts(url: str) -> dict[str, tuple[int, int]]:
    """``(rows, bytes_on_disk)`` of the active parts of each table that has any, from
    ``system.parts``.

    Opens the embedded store itself: only once the sink has stopped.
    """
    from services.sink.store import open_client

    client: Any = open_client(url)
    try:
        result = client.query(
            "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts "
            "WHERE active AND database = currentDatabase() GROUP BY table"
        )
        return {str(row[0]): (int(row[1]), int(row[2])) for row in result.result_rows}
    finally:
        client.close()
