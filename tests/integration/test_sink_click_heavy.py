"""Session summaries of click-heavy batches: linear cost, rage clicks still found (issue 12).

Rage click (docs/sink.md): >= 3 clicks within 1000 ms and 30 px of the burst's
first click, greedily in time order, a click counting towards one burst at
most, among the batch's first 5,000 clicks. :func:`rage_bursts` is that
definition in Python; ClickHouse must agree with it on every batch.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import pytest

from services.shared.envelope import BatchEnvelope
from services.sink.rows import INCOMING_COLUMNS, incoming_row, read_header
from services.sink.store import INCOMING_TABLE, ClickHouseStore

pytestmark = pytest.mark.integration

Click = tuple[int, float, float]  # (ms, x, y)
RAGE_CLICKS_LOOKED_AT = 5_000  # per batch: ingest's default event limit per batch


def rage_bursts(clicks: list[Click]) -> int:
    """The definition: from each click not yet in a burst, the run of following clicks near it."""
    # Stable: ties keep their batch order.
    ordered = sorted(clicks, key=lambda c: c[0])[:RAGE_CLICKS_LOOKED_AT]
    bursts, i = 0, 0
    while i < len(ordered):
        ms, x, y = ordered[i]
        end = i + 1
        while end < len(ordered):
            t, cx, cy = ordered[end]
            if t - ms > 1000 or (cx - x) ** 2 + (cy - y) ** 2 > 900:
                break
            end += 1
        if end - i >= 3:
            bursts += 1
            i = end
        else:
            i += 1
    return bursts


def click_event(ms: int, x: float, y: float) -> dict[str, Any]:
    return {"type": 3, "timestamp": ms, "data": {"source": 2, "type": 2, "id": 5, "x": x, "y": y}}


def envelope(session_id: str, clicks: list[Click], now_ms: int) -> BatchEnvelope:
    return BatchEnvelope(
        site_id="clicks",
        session_id=session_id,
        window_id="w1",
        visitor_id="v1",
        seq=1,
        received_at_ms=now_ms,
        events=[click_event(now_ms + ms, x, y) for ms, x, y in clicks],
    )


def incoming_columns(envelopes: list[BatchEnvelope]) -> list[list[Any]]:
    rows = [incoming_row(read_header(raw), raw, 30) for raw in (e.to_json() for e in envelopes)]
    return [list(column) for column in zip(*rows, strict=True)]


async def rage_clicks_by_session(store: ClickHouseStore, sessions: list[str]) -> dict[str, int]:
    result = await store.query(
        "SELECT session_id, rage_clicks FROM session_summaries "
        "WHERE site_id = 'clicks' AND session_id IN {s:Array(String)}",
        parameters={"s": sessions},
    )
    return {session: int(rage) for session, rage in result.result_rows}


def bursty_clicks(rng: random.Random, count: int) -> list[Click]:
    """Clicks that wander and sometimes hammer one spot: bursts, near misses, ties in time."""
    clicks: list[Click] = []
    ms, x, y = 0, 400.0, 300.0
    while len(clicks) < count:
        if rng.random() < 0.3:  # a burst attempt: 2-6 clicks, quick, jittering around one spot
            for _ in range(rng.randint(2, 6)):
                clicks.append((ms, x + rng.uniform(-25, 25), y + rng.uniform(-25, 25)))
                ms += rng.choice((0, 50, 150, 300, 450))
        else:
            ms += rng.randint(100, 1500)
            x, y = rng.uniform(0, 1200), rng.uniform(0, 800)
            clicks.append((ms, x, y))
    rng.shuffle(clicks)  # the batch need not be in time order
    return clicks[:count]


async def test_rage_clicks_match_the_definition_on_random_click_streams(
    store: ClickHouseStore,
) -> None:
    rng = random.Random(7)
    now_ms = int(time.time() * 1000) - 3_600_000
    streams = {uuid.uuid4().hex[:12]: bursty_clicks(rng, rng.randint(0, 60)) for _ in range(200)}
    envelopes = [envelope(session, clicks, now_ms) for session, clicks in streams.items()]
    await store.insert_columns(
        INCOMING_TABLE, incoming_columns(envelopes), INCOMING_COLUMNS, uuid.uuid4().hex
    )
    found = await rage_clicks_by_session(store, list(streams))
    expected = {s: rage_bursts(c) for s, c in streams.items() if c}
    assert found == expected
    assert sum(expected.values()) > 100  # the streams do rage


async def test_a_click_heavy_batch_is_summarised_within_a_small_memory_limit(
    store: ClickHouseStore,
) -> None:
    # Issue 12: 4,999 clicks in one 429 KB batch. Comparing every click with every
    # other needed ~1.9 GiB for this insert; one pass needs ~80 MiB.
    rng = random.Random(11)
    now_ms = int(time.time() * 1000) - 3_600_000
    clicks: list[Click] = [(20 * i, rng.randint(0, 999), rng.randint(0, 799)) for i in range(4999)]
    for start in range(0, 4_999, 50):  # a burst of 5 clicks in one spot every second
        clicks[start : start + 5] = [(20 * (start + k), 500, 500) for k in range(5)]
    session = uuid.uuid4().hex[:12]
    columns = incoming_columns([envelope(session, clicks, now_ms)])
    assert 400_000 < len(columns[-1][0]) < 450_000
    started = time.perf_counter()
    await insert_with_memory_limit(store, columns, max_memory_usage=256 * 1024 * 1024)
    elapsed = time.perf_counter() - started
    assert (await rage_clicks_by_session(store, [session]))[session] == rage_bursts(clicks) == 100
    assert elapsed < 5.0, f"insert of a 4,999-click batch took {elapsed:.1f} s"


async def insert_with_memory_limit(
    store: ClickHouseStore, columns: list[list[Any]], *, max_memory_usage: int
) -> None:
    """One insert under a per-query memory limit (as a server profile sets it)."""
    await asyncio.to_thread(
        store.client.insert,
        INCOMING_TABLE,
        columns,
        column_names=list(INCOMING_COLUMNS),
        column_oriented=True,
        settings={
            "insert_deduplication_token": uuid.uuid4().hex,
            "max_memory_usage": max_memory_usage,
        },
    )


async def test_rage_clicks_are_looked_for_among_a_batchs_first_5000_clicks_only(
    store: ClickHouseStore,
) -> None:
    now_ms = int(time.time() * 1000) - 3_600_000
    scattered: list[Click] = [(600 * i, (i % 2) * 100, 0) for i in range(RAGE_CLICKS_LOOKED_AT)]
    in_time: list[Click] = [(-1000, 5, 5), (-900, 5, 5), (-800, 5, 5)]  # a burst, in the first
    too_late: list[Click] = [(10_000_000 + k, 5, 5) for k in range(5)]  # after the first 5,000
    session = uuid.uuid4().hex[:12]
    await store.insert_columns(
        INCOMING_TABLE,
        incoming_columns([envelope(session, in_time + scattered + too_late, now_ms)]),
        INCOMING_COLUMNS,
        uuid.uuid4().hex,
    )
    result = await store.query(
        "SELECT clicks, rage_clicks FROM session_summaries WHERE session_id = {s:String}",
        parameters={"s": session},
    )
    assert result.result_rows == [(RAGE_CLICKS_LOOKED_AT + 8, 1)]
