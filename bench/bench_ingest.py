"""Ingest throughput: the gateway (real local Kafka broker, acks=all) side by side
with a bare aiohttp handler that only reads and parses the same bodies.

Both servers run as their own processes on 127.0.0.1, the load generator as a
third; rounds alternate between them and the medians are compared. Run:

    .venv/bin/python -m bench.bench_ingest [--rounds 5] [--seconds 10] [--concurrency 32]
        [--encoding plain|gzip|both] [--baseline-ref GIT_REF]

``--encoding gzip`` posts the bodies gzip-compressed as ``text/plain`` with
``?enc=gzip``, as the project's browser recorder sends every batch; the bare
handler then inflates before parsing. ``both`` (the default) runs both
encodings in the same alternating rounds. ``--baseline-ref`` also runs the
gateway of an earlier commit (exported with ``git archive``) in the same rounds,
so a change is measured against its own before on the same machine at the same
time (on a shared machine, runs minutes apart are not comparable). Prints one
Markdown table per encoding for docs/benchmarks.md (section ``ingest``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from services.dev.kafka_broker import LocalKafkaBroker, free_port
from services.dev.rrweb_gen import generate_session
from services.shared.kafka import KafkaSettings, ensure_topics

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SITE_KEY = "pk_bench"


def grow_full_snapshot(event: dict[str, Any], rng: random.Random, target_bytes: int) -> None:
    """Make a generated full snapshot as big as a real page's (``target_bytes`` of JSON)."""
    node_id = 1_000_000
    children: list[dict[str, Any]] = []
    size = 0
    words = ["price", "basket", "delivery", "order", "account", "product", "size", "colour"]
    while size < target_bytes:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        paragraph = {
            "type": 2,
            "id": node_id,
            "tagName": "p",
            "attributes": {"class": f"c{rng.randint(0, 99)}"},
            "childNodes": [{"type": 3, "id": node_id + 1, "textContent": text}],
        }
        node_id += 2
        children.append(paragraph)
        size += len(text) + 90
    event["data"]["node"]["childNodes"].append(
        {"type": 2, "id": node_id, "tagName": "div", "attributes": {}, "childNodes": children}
    )


def build_bodies(count: int, snapshot_every: int, snapshot_bytes: int) -> list[bytes]:
    """``count`` bodies of ~50 events; one in ``snapshot_every`` holds a big full snapshot."""
    rng = random.Random(42)
    bodies: list[bytes] = []
    while len(bodies) < count:
        session = generate_session(rng, start_ms=int(time.time() * 1000), mouse_moves=400)
        for seq, batch in enumerate(session.batches):
            for event in batch:
                if event["type"] == 2:
                    grow_full_snapshot(event, rng, snapshot_bytes)
            doc = {
                "session_id": session.session_id,
                "window_id": session.window_id,
                "visitor_id": session.visitor_id,
                "seq": seq,
                "events": batch,
            }
            bodies.append(orjson.dumps(doc))
    # Keep one snapshot batch in every `snapshot_every` bodies.
    with_snapshot = [b for b in bodies if b'"type":2,' in b]
    plain = [b for b in bodies if b'"type":2,' not in b]
    mixed: list[bytes] = []
    while len(mixed) < count:
        mixed.append(with_snapshot[len(mixed) % len(with_snapshot)])
        mixed += plain[len(mixed) % len(plain) :][: snapshot_every - 1]
    return mixed[:count]


def wait_port(port: int, timeout_s: float = 60.0) -> None:
    """Block until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:.0f}s")


def export_tree(ref: str, into: Path) -> Path:
    """The project's files at git ``ref``, written under ``into`` (for a baseline gateway)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "services"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    tar_path = into / "baseline.tar"
    tar_path.write_bytes(archive)
    tree = into / "baseline"
    with tarfile.open(tar_path) as tar:
        tar.extractall(tree, filter="data")
    return tree


def load_round(
    url: str, bodies_file: Path, seconds: float, concurrency: int, encoding: str
) -> dict[str, float]:
    """One round of the load generator in its own process."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ingest_load",
            url,
            str(bodies_file),
            str(seconds),
            str(concurrency),
            encoding,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    )
    result: dict[str, float] = orjson.loads(out.stdout)
    return result


def renice_all_threads(pid: int, niceness: int) -> None:
    """Lower the priority of every thread of ``pid`` (Linux nice is per thread)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_cpu_s() -> float:
    """CPU seconds all cores spent not idle so far (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    """Run the side-by-side benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--snapshot-every", type=int, default=10)
    parser.add_argument("--snapshot-bytes", type=int, default=300_000)
    parser.add_argument("--only", choices=["bare", "gateway"], help="run one server only")
    parser.add_argument(
        "--baseline-ref",
        metavar="GIT_REF",
        help="also run the gateway as of this commit in the same rounds (before/after)",
    )
    parser.add_argument(
        "--encoding",
        choices=["plain", "gzip", "both"],
        default="both",
        help="body encoding: plain JSON, gzip as the browser recorder sends, or both",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="e.g. INGEST_LINGER_MS=2",
    )
    parser.add_argument(
        "--broker-nice",
        type=int,
        default=0,
        help="run the Kafka broker at this nice level (the servers stay at 0)",
    )
    parser.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of both servers",
    )
    args = parser.parse_args()

    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    bodies = build_bodies(args.bodies, args.snapshot_every, args.snapshot_bytes)
    bodies_file = work / "bodies.ndjson"
    bodies_file.write_bytes(b"\n".join(bodies))
    sizes = sorted(len(b) for b in bodies)
    events_per_body = statistics.mean(len(orjson.loads(b)["events"]) for b in bodies)

    broker = LocalKafkaBroker(work / "kafka", free_port(), free_port(), heap="1g")
    broker.start()
    assert broker.process is not None
    broker_pid = broker.process.pid
    if args.broker_nice:
        renice_all_threads(broker_pid, args.broker_nice)
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=broker.bootstrap_servers)))
    sites = work / "sites.json"
    sites.write_bytes(
        orjson.dumps(
            {
                "sites": [
                    {
                        "site_id": "bench",
                        "public_keys": [SITE_KEY],
                        "rate_limit_per_second": 1e9,
                        "rate_limit_burst": 10**9,
                    }
                ]
            }
        )
    )
    gateway_port, bare_port, baseline_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "INGEST_HOST": "127.0.0.1",
        "INGEST_PORT": str(gateway_port),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SITES_FILE": str(sites),
        "LOG_LEVEL": "WARNING",
        "INGEST_EVENT_LOOP": args.event_loop,
        **dict(item.split("=", 1) for item in args.gateway_env),
    }
    servers = {
        "gateway": subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ingest"], cwd=PROJECT_ROOT, env=env
        ),
        "bare": subprocess.Popen(
            [sys.executable, "-m", "bench.ingest_bare", str(bare_port), args.event_loop],
            cwd=PROJECT_ROOT,
        ),
    }
    urls = {
        "gateway": f"http://127.0.0.1:{gateway_port}/v1/recordings?key={SITE_KEY}",
        "bare": f"http://127.0.0.1:{bare_port}/v1/recordings",
    }
    ports = {"gateway": gateway_port, "bare": bare_port}
    if args.baseline_ref:
        # `-m services.cli` from the exported tree: its own `services` comes first on sys.path.
        servers["baseline"] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ingest"],
            cwd=export_tree(args.baseline_ref, work),
            env={**env, "INGEST_PORT": str(baseline_port)},
        )
        urls["baseline"] = f"http://127.0.0.1:{baseline_port}/v1/recordings?key={SITE_KEY}"
        ports["baseline"] = baseline_port
    names = [name for name in ("bare", "gateway", "baseline") if name in servers]
    encodings = ["plain", "gzip"] if args.encoding == "both" else [args.encoding]
    results: dict[tuple[str, str], list[dict[str, float]]] = {
        (encoding, name): [] for encoding in encodings for name in names
    }
    try:
        for port in ports.values():
            wait_port(port)
        for url in urls.values():  # warm-up: connections, producer metadata, caches
            for encoding in encodings:
                load_round(url, bodies_file, 3.0, args.concurrency, encoding)
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else names[::-1]
            order = [name for name in order if args.only in (None, name)]
            runs = [(encoding, name) for encoding in encodings for name in order]
            for encoding, name in runs if round_no % 2 == 0 else runs[::-1]:
                pid = servers[name].pid
                cpu_before = cpu_seconds(pid)
                broker_before = cpu_seconds(broker_pid)
                busy_before = machine_busy_cpu_s()
                result = load_round(
                    urls[name], bodies_file, args.seconds, args.concurrency, encoding
                )
                result["server_cpu_pct"] = 100 * (cpu_seconds(pid) - cpu_before) / result["seconds"]
                result["server_cpu_us_per_request"] = (
                    10_000 * result["server_cpu_pct"] / result["requests_per_s"]
                )
                result["broker_cpu_pct"] = (
                    100 * (cpu_seconds(broker_pid) - broker_before) / result["seconds"]
                )
                result["machine_cpu_pct"] = (
                    100 * (machine_busy_cpu_s() - busy_before) / result["seconds"]
                )
                results[encoding, name].append(result)
                line = orjson.dumps(result).decode()
                print(f"round {round_no} {encoding} {name}: {line}", flush=True)
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)  # the gateway flushes and closes
        for server in servers.values():
            server.wait(30)
        broker.stop()

    if args.only:
        return

    print()
    print(
        f"Machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
        f"load average before the run {load_before}; "
        f"{args.rounds} alternating rounds of {args.seconds:.0f} s, {args.concurrency} "
        f"connections; {len(bodies)} bodies, {events_per_body:.0f} events each on average, "
        f"1 in {args.snapshot_every} with a full snapshot; JSON body size median "
        f"{sizes[len(sizes) // 2] // 1024} KiB, max {sizes[-1] // 1024} KiB; event loop "
        f"{args.event_loop} in both servers; broker nice {args.broker_nice}"
        + (f"; baseline gateway at {args.baseline_ref}." if args.baseline_ref else ".")
    )
    for encoding in encodings:
        print_table(encoding, {name: results[encoding, name] for name in names})


def print_table(encoding: str, results: dict[str, list[dict[str, float]]]) -> None:
    """The Markdown table of one encoding: medians of the rounds, and the ratio."""

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    for name in results:
        if any(r["non_202"] for r in results[name]):
            print(f"WARNING: {encoding} {name} answered non-202 in some rounds")
    ratio_rps = median("gateway", "requests_per_s") / median("bare", "requests_per_s")
    ratio_eps = median("gateway", "events_per_s") / median("bare", "events_per_s")
    per_round = ", ".join(
        f"{g['requests_per_s'] / b['requests_per_s']:.2f}"
        for b, g in zip(results["bare"], results["gateway"], strict=True)
    )
    print()
    print(
        f"Encoding {encoding}: mean body on the wire "
        f"{median('bare', 'body_bytes_mean') / 1024:.1f} KiB; ratio per round: {per_round}"
    )
    print()
    print(
        "| server | requests/s | events/s | p50 ms | p99 ms | server CPU | server CPU per "
        "request | broker CPU | load generator CPU | machine CPU (of 200 %) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in results:
        rps, eps = median(name, "requests_per_s"), median(name, "events_per_s")
        p50, p99 = median(name, "p50_ms"), median(name, "p99_ms")
        cpus = " | ".join(
            f"{median(name, field):.0f} %"
            for field in ("broker_cpu_pct", "load_cpu_pct", "machine_cpu_pct")
        )
        server_cpu = median(name, "server_cpu_pct")
        cpus = f"{server_cpu:.0f} % | {median(name, 'server_cpu_us_per_request'):.0f} µs | {cpus}"
        print(f"| {name} | {rps:,.0f} | {eps:,.0f} | {p50:.1f} | {p99:.1f} | {cpus} |")
    print(f"| **ratio gateway/bare** | **{ratio_rps:.2f}** | **{ratio_eps:.2f}** |" + " |" * 7)
    if "baseline" in results:
        base_rps = median("baseline", "requests_per_s") / median("bare", "requests_per_s")
        base_eps = median("baseline", "events_per_s") / median("bare", "events_per_s")
        print(f"| ratio baseline/bare | {base_rps:.2f} | {base_eps:.2f} |" + " |" * 7)
        per_round = ", ".join(
            f"{g['requests_per_s'] / b['requests_per_s']:.2f}"
            for b, g in zip(results["baseline"], results["gateway"], strict=True)
        )
        print()
        print(f"Gateway/baseline requests/s per round: {per_round}")


if __name__ == "__main__":
    main()
