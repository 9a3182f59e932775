"""What ClickHouse makes of an inserted batch: event rows, deduplication and session summaries."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from services.shared.envelope import BatchEnvelope
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import (
    envelopes,
    expected_events,
    insert_envelopes,
    scalar,
)

pytestmark = pytest.mark.integration


async def test_same_batch_retried_with_its_token_is_not_stored_twice(
    store: ClickHouseStore,
) -> None:
    batch = envelopes("token", sessions=1, seed=2)
    for _ in range(2):
        await insert_envelopes(store, batch, "same-token")
    # No FINAL: the retried block never reached the events table.
    assert await scalar(
        store, "SELECT count() FROM events WHERE site_id = 'token'"
    ) == expected_events(batch)


async def test_event_rows_keep_batch_sequence_index_and_json(store: ClickHouseStore) -> None:
    batch = envelopes("rows", sessions=1, seed=12)[:2]
    await insert_envelopes(store, batch, uuid.uuid4().hex, retention=90)
    result = await store.query(
        "SELECT seq, idx, type, source, data, size, retention_days, toUnixTimestamp64Milli(ts) "
        "FROM events WHERE site_id = 'rows' ORDER BY seq, idx"
    )
    expected = [(e.seq, i, event) for e in batch for i, event in enumerate(e.events)]
    assert len(result.result_rows) == len(expected)
    for (seq, idx, etype, source, data, size, retention, ts), (e_seq, e_idx, event) in zip(
        result.result_rows, expected, strict=True
    ):
        assert (seq, idx, retention, ts) == (e_seq, e_idx, 90, event["timestamp"])
        assert orjson.loads(data) == event and size == len(data.encode())
        assert etype == event["type"]
        assert source == (event["data"]["source"] if event["type"] == 3 else -1)


def click(ms: int, x: int, y: int) -> dict[str, Any]:
    return {"type": 3, "timestamp": ms, "data": {"source": 2, "type": 2, "id": 5, "x": x, "y": y}}


async def batch_summary(store: ClickHouseStore, events: list[dict[str, Any]], **fields: Any) -> Any:
    """The session summary ClickHouse computes for one batch of ``events`` (times from now)."""
    now_ms = int(time.time() * 1000) - 60_000
    session = uuid.uuid4().hex[:12]
    shifted = [{**e, "timestamp": e["timestamp"] + now_ms} for e in events]
    envelope = BatchEnvelope(
        site_id="summary",
        session_id=session,
        window_id="w1",
        visitor_id="v1",
        seq=3,
        received_at_ms=now_ms,
        events=shifted,
        **fields,
    )
    await insert_envelopes(store, [envelope], uuid.uuid4().hex)
    result = await store.query(
        "SELECT * FROM session_summaries WHERE site_id = 'summary' AND session_id = {s:String}",
        parameters={"s": session},
    )
    return dict(zip(result.column_names, result.result_rows[0], strict=True)), now_ms


async def test_three_quick_clicks_in_one_spot_are_one_rage_click(store: ClickHouseStore) -> None:
    summary, _ = await batch_summary(
        store, [click(0, 10, 10), click(200, 12, 11), click(400, 9, 10)]
    )
    assert (summary["clicks"], summary["rage_clicks"]) == (3, 1)


async def test_clicks_spread_in_space_or_time_are_not_rage_clicks(store: ClickHouseStore) -> None:
    spread = [click(0, 10, 10), click(200, 300, 10), click(400, 600, 10)]
    slow = [click(0, 10, 10), click(900, 10, 10), click(1800, 10, 10)]
    for clicks in (spread, slow):
        summary, _ = await batch_summary(store, clicks)
        assert (summary["clicks"], summary["rage_clicks"]) == (3, 0)


async def test_a_click_counts_towards_one_rage_burst_only(store: ClickHouseStore) -> None:
    # Seven clicks in one spot within 1 s: bursts 1-2-3... greedily -> one burst of 7.
    # Then a failed start, and a burst starting at the second click of the rest.
    clicks = [click(10 * i, 5, 5) for i in range(7)]
    clicks += [click(5000, 500, 500), click(5100, 100, 100), click(5200, 100, 100)]
    clicks += [click(5300, 100, 100)]
    summary, _ = await batch_summary(store, clicks)
    assert (summary["clicks"], summary["rage_clicks"]) == (11, 2)


async def test_summary_counts_page_views_clicks_inputs_errors_and_viewport(
    store: ClickHouseStore,
) -> None:
    events = [
        {
            "type": 4,
            "timestamp": 1000,
            "data": {"href": "https://a/x", "width": 800, "height": 600},
        },
        click(2000, 5, 5),
        click(2100, 6, 5),
        click(2200, 5, 6),
        {"type": 3, "timestamp": 3000, "data": {"source": 5, "id": 9, "text": "***"}},
        {"type": 3, "timestamp": 3500, "data": {"source": 4, "width": 1024, "height": 700}},
        {
            "type": 6,
            "timestamp": 4000,
            "data": {"plugin": "rrweb/console@1", "payload": {"level": "error"}},
        },
        {"type": 3, "timestamp": 4500, "data": {"source": 11, "level": "error"}},
        {"type": 4, "timestamp": 5000, "data": {"href": "https://a/y"}},
    ]
    summary, now_ms = await batch_summary(store, events, consent=True, user_agent="UA/1")
    assert summary["event_count"] == 9
    assert summary["page_views"] == 2
    assert summary["page_urls"] == ["https://a/x", "https://a/y"]
    assert summary["first_url"] == "https://a/x"
    assert (summary["clicks"], summary["rage_clicks"], summary["inputs"]) == (3, 1, 1)
    assert summary["console_errors"] == 2
    assert summary["viewport"] == (1024, 700)
    assert summary["active_s"] == len({(now_ms + t) // 1000 for t in (2000, 2100, 2200, 3000)})
    assert (summary["consent"], summary["user_agent"]) == (1, "UA/1")
    assert summary["duration_s"] == 4.0


async def test_empty_batch_adds_no_session(store: ClickHouseStore) -> None:
    env = envelopes("empty", sessions=1, seed=13)[0]
    env.events = []
    await insert_envelopes(store, [env], uuid.uuid4().hex)
    assert await scalar(store, "SELECT count() FROM session_summaries WHERE site_id = 'empty'") == 0
