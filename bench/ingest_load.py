"""The benchmark's load generator (its own process): POST pre-built batch bodies
for a fixed time with a fixed number of concurrent connections.

Run: ``python -m bench.ingest_load URL BODIES_FILE SECONDS CONCURRENCY [plain|gzip]``;
prints one JSON object: requests, accepted events, non-202 answers, latency
percentiles.

``gzip`` sends what the project's browser recorder (``web/src/recorder.js``)
sends: each body gzip-compressed (level 6, as ``CompressionStream`` does) as
``text/plain`` with ``enc=gzip`` in the query string. ``plain`` sends the JSON
as ``application/json``. The compression happens before the clock starts.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import sys
import time
from pathlib import Path

import aiohttp
import orjson


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0..1) of an ascending list (nearest rank)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def with_query(url: str, param: str) -> str:
    """``url`` with one more ``name=value`` in its query string."""
    return f"{url}{'&' if '?' in url else '?'}{param}"


async def run(
    url: str, bodies_file: str, seconds: float, concurrency: int, encoding: str = "plain"
) -> dict[str, float]:
    """Drive ``url`` for ``seconds``; returns the round's figures."""
    bodies = Path(bodies_file).read_bytes().splitlines()  # noqa: ASYNC240 - before the clock
    event_counts = [len(orjson.loads(b)["events"]) for b in bodies]
    headers = {"Content-Type": "application/json"}
    if encoding == "gzip":
        bodies = [gzip.compress(b, compresslevel=6, mtime=0) for b in bodies]
        headers = {"Content-Type": "text/plain;charset=UTF-8"}
        url = with_query(url, "enc=gzip")
    elif encoding != "plain":
        raise SystemExit(f"unknown encoding {encoding!r}; use plain or gzip")
    wire_bytes = 0
    order = itertools.cycle(range(len(bodies)))
    latencies: list[float] = []
    events = 0
    other = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        cpu_started = time.process_time()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal events, other, wire_bytes
            while time.perf_counter() < deadline:
                i = next(order)
                wire_bytes += len(bodies[i])
                sent = time.perf_counter()
                async with http.post(url, data=bodies[i], headers=headers) as response:
                    await response.read()
                    status = response.status
                latencies.append(time.perf_counter() - sent)
                if status == 202:
                    events += event_counts[i]
                else:
                    other += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    latencies.sort()
    return {
        "seconds": elapsed,
        "requests": len(latencies),
        "events": events,
        "non_202": other,
        "requests_per_s": len(latencies) / elapsed,
        "events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "load_cpu_pct": 100 * cpu_s / elapsed,
        "body_bytes_mean": wire_bytes / max(1, len(latencies)),
    }


if __name__ == "__main__":
    url, bodies_file, seconds, concurrency = sys.argv[1:5]
    encoding = sys.argv[5] if len(sys.argv) > 5 else "plain"
    result = asyncio.run(run(url, bodies_file, float(seconds), int(concurrency), encoding))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
