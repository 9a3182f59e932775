"""The pipeline benchmark's load generator (its own process): POST batch bodies at an
offered rate of events per second, open loop, for a fixed time.

Open loop: a body is due at ``start + events sent so far / rate`` whatever the
answers to earlier ones, so a slow gateway shows up as latency and lateness, not
as a quietly lower rate (a closed loop such as ``bench/ingest_load.py`` measures
the gateway's ceiling instead). At most ``max_inflight`` requests are open; a body
due while all are busy is sent late, and how late is reported.

Every body is sent with its session id rewritten (``tag`` and a cycle number in
its last 12 characters), so each pass over the bodies records new sessions: the
masker's state and ClickHouse see a stream of distinct sessions, as in production.

Run: ``python -m bench.pipeline_load URL BODIES_FILE EVENTS_PER_S SECONDS TAG
[MAX_INFLIGHT]``; prints one JSON object.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from bench.ingest_load import percentile

ID_TAIL = 12  # characters of a session id the generator rewrites (4 tag + 8 cycle)


def session_id_for(template_id: str, tag: int, cycle: int) -> str:
    """The template's session id with its last 12 characters naming ``tag`` and ``cycle``.

    Ids stay in the alphabet ingest accepts (lowercase hex) and keep their length.
    """
    return f"{template_id[:-ID_TAIL]}{tag % 0x10000:04x}{cycle % 0x100000000:08x}"


async def run(
    url: str,
    bodies_file: str,
    events_per_s: float,
    seconds: float,
    tag: int,
    max_inflight: int = 256,
) -> dict[str, float]:
    """Offer ``events_per_s`` to ``url`` for ``seconds``; returns the round's figures."""
    bodies = Path(bodies_file).read_bytes().splitlines()  # noqa: ASYNC240 - before the clock
    docs = [orjson.loads(b) for b in bodies]
    event_counts = [len(d["events"]) for d in docs]
    template_ids = [str(d["session_id"]) for d in docs]
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    lateness: list[float] = []
    accepted_events = 0
    other = 0
    failed = 0
    wire_bytes = 0
    slots = asyncio.Semaphore(max_inflight)
    connector = aiohttp.TCPConnector(limit=max_inflight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(body: bytes, events: int) -> None:
            nonlocal accepted_events, other, failed
            sent = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                failed += 1
                return
            finally:
                slots.release()
            latencies.append(time.perf_counter() - sent)
            if status == 202:
                accepted_events += events
            else:
                other += 1

        tasks: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        offered_events = 0
        index = cycle = 0
        while True:
            due = started + offered_events / events_per_s
            if due >= started + seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            lateness.append(max(0.0, time.perf_counter() - due))
            template_id = template_ids[index]
            body = bodies[index].replace(
                template_id.encode(), session_id_for(template_id, tag, cycle).encode()
            )
            wire_bytes += len(body)
            task = asyncio.create_task(post(body, event_counts[index]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            offered_events += event_counts[index]
            index += 1
            if index == len(bodies):
                index, cycle = 0, cycle + 1
        sending_s = time.perf_counter() - started
        await asyncio.gather(*tasks)
    latencies.sort()
    lateness.sort()
    return {
        "seconds": sending_s,
        "requests": len(lateness),
        "offered_events": offered_events,
        "accepted_events": accepted_events,
        "non_202": other,
        "failed": failed,
        "accepted_events_per_s": accepted_events / sending_s,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "late_p99_ms": percentile(lateness, 0.99) * 1000,
        "body_bytes_mean": wire_bytes / max(1, len(lateness)),
    }


if __name__ == "__main__":
    url, bodies_file, rate, seconds, tag = sys.argv[1:6]
    inflight = int(sys.argv[6]) if len(sys.argv) > 6 else 256
    result = asyncio.run(run(url, bodies_file, float(rate), float(seconds), int(tag), inflight))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
