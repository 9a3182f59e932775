"""The cost of sealing recordings.raw: the gateway with raw encryption on, side by side
with the same gateway with it off and with the bare handler, in alternating rounds.

Three servers on one local broker (the load generator of ``bench_ingest`` as a
fourth process): bare handler, gateway ``RAW_ENCRYPTION=off``, gateway
``RAW_ENCRYPTION=required`` (plus ``--sealed-env`` settings). Each round runs
the three one after the other, in a rotating order; a busy machine moves the
three alike within a round, so the per-round ratios are the numbers to read.

    .venv/bin/python -m bench.bench_raw_encryption [--rounds 6] [--seconds 5]
        [--sealed-env RAW_ENCRYPTION_COMPRESSION=lz4 --sealed-env INGEST_COMPRESSION=none]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from bench.bench_ingest import (
    PROJECT_ROOT,
    SITE_KEY,
    build_bodies,
    cpu_seconds,
    load_round,
    wait_port,
)
from services.dev.kafka_broker import LocalKafkaBroker, free_port
from services.shared.kafka import KafkaSettings, ensure_topics
from services.shared.keyring import new_kek_file

SERVERS = ("bare", "clear", "sealed")


def main() -> None:
    """Run the rounds and print the medians and per-round ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sealed-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-raw-crypto-"))
    bodies_file = work / "bodies.ndjson"
    bodies_file.write_bytes(b"\n".join(build_bodies(200, 10, 300_000)))
    broker = LocalKafkaBroker(work / "kafka", free_port(), free_port(), heap="1g")
    broker.start()
    asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=broker.bootstrap_servers)))
    sites = work / "sites.json"
    site = {"site_id": "bench", "public_keys": [SITE_KEY], "rate_limit_per_second": 1e9}
    sites.write_bytes(orjson.dumps({"sites": [{**site, "rate_limit_burst": 10**9}]}))
    new_kek_file(work / "keys")
    base = {
        **os.environ,
        "INGEST_HOST": "127.0.0.1",
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SITES_FILE": str(sites),
        "LOG_LEVEL": "WARNING",
    }
    ports = {name: free_port() for name in SERVERS}
    sealed = {
        "RAW_ENCRYPTION": "required",
        "RAW_KEK_DIR": str(work / "keys"),
        **dict(item.split("=", 1) for item in args.sealed_env),
    }
    ingest = [sys.executable, "-m", "services.cli", "ingest"]
    procs = {
        "bare": subprocess.Popen(
            [sys.executable, "-m", "bench.ingest_bare", str(ports["bare"]), "uvloop"],
            cwd=PROJECT_ROOT,
        ),
        "clear": subprocess.Popen(
            ingest, cwd=PROJECT_ROOT, env={**base, "INGEST_PORT": str(ports["clear"])}
        ),
        "sealed": subprocess.Popen(
            ingest,
            cwd=PROJECT_ROOT,
            env={**base, **sealed, "INGEST_PORT": str(ports["sealed"])},
        ),
    }
    urls = {
        "bare": f"http://127.0.0.1:{ports['bare']}/v1/recordings",
        **{
            name: f"http://127.0.0.1:{ports[name]}/v1/recordings?key={SITE_KEY}"
            for name in ("clear", "sealed")
        },
    }
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for name in SERVERS:
            wait_port(ports[name])
            load_round(urls[name], bodies_file, 3.0, args.concurrency, "plain")  # warm-up
        for round_no in range(args.rounds):
            order = SERVERS[round_no % 3 :] + SERVERS[: round_no % 3]
            results: dict[str, dict[str, float]] = {}
            for name in order:
                before = cpu_seconds(procs[name].pid)
                result = load_round(
                    urls[name], bodies_file, args.seconds, args.concurrency, "plain"
                )
                cpu = cpu_seconds(procs[name].pid) - before
                result["cpu_us_per_request"] = 1e6 * cpu / max(result["requests"], 1)
                results[name] = result
            rounds.append(results)
            print(
                f"round {round_no}: "
                + ", ".join(
                    f"{n} {results[n]['requests_per_s']:.0f}/s "
                    f"{results[n]['cpu_us_per_request']:.0f} µs"
                    for n in SERVERS
                ),
                flush=True,
            )
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(30)
        broker.stop()

    def ratios(num: str, den: str) -> list[float]:
        return [r[num]["requests_per_s"] / r[den]["requests_per_s"] for r in rounds]

    def median_cpu(name: str) -> float:
        return statistics.median(r[name]["cpu_us_per_request"] for r in rounds)

    print(f"\nload average after: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"sealed settings: {sealed}")
    print("| ratio | median | per round |\n|---|---:|---|")
    for num, den in (("clear", "bare"), ("sealed", "bare"), ("sealed", "clear")):
        values = ratios(num, den)
        per_round = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {num}/{den} | {statistics.median(values):.2f} | {per_round} |")
    print("\n| server | CPU per request (median) |\n|---|---:|")
    for name in SERVERS:
        print(f"| {name} | {median_cpu(name):.0f} µs |")


if __name__ == "__main__":
    main()
