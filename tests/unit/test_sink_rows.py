"""Sink pure logic: rows and batch summaries, list filters, analyst SQL checks, cluster DDL."""

from __future__ import annotations

import random

import orjson
import pytest

from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope
from services.sink.queries import (
    QueryParamError,
    analyst_sql_is_select,
    parse_session_filter,
    session_list_sql,
)
from services.sink.rows import (
    EVENT_COLUMNS,
    SUMMARY_COLUMNS,
    RowError,
    batch_rows,
    count_rage_clicks,
)
from services.sink.schema import (
    SchemaError,
    cluster_statements,
    planned_statements,
    split_statements,
)


def envelope(events: list[dict[str, object]], **fields: object) -> BatchEnvelope:
    doc: dict[str, object] = {
        "v": 1,
        "site_id": "shop",
        "session_id": "s1",
        "window_id": "w1",
        "visitor_id": "v1",
        "seq": 3,
        "received_at": 1_700_000_000_000,
        "events": events,
        **fields,
    }
    return BatchEnvelope.from_dict(doc)


def click(ms: int, x: int, y: int) -> dict[str, object]:
    return {"type": 3, "timestamp": ms, "data": {"source": 2, "type": 2, "id": 5, "x": x, "y": y}}


def summary_of(batch: BatchEnvelope) -> dict[str, object]:
    rows = batch_rows(batch, retention_days=30)
    assert rows.summary is not None
    return dict(zip(SUMMARY_COLUMNS, rows.summary, strict=True))


def test_event_rows_keep_batch_sequence_index_and_json() -> None:
    session = generate_session(random.Random(1), start_ms=1_700_000_000_000)
    batch = envelope(session.batches[0])
    rows = batch_rows(batch, retention_days=90)
    assert len(rows.events) == len(session.batches[0])
    first = dict(zip(EVENT_COLUMNS, rows.events[0], strict=True))
    assert (first["seq"], first["idx"], first["retention_days"]) == (3, 0, 90)
    assert orjson.loads(str(first["data"])) == session.batches[0][0]
    assert [dict(zip(EVENT_COLUMNS, r, strict=True))["idx"] for r in rows.events] == list(
        range(len(rows.events))
    )


def test_event_that_is_not_an_object_is_refused_with_its_position() -> None:
    with pytest.raises(RowError, match="event 1"):
        batch_rows(envelope([{"type": 4, "timestamp": 1}, 7]), retention_days=30)  # type: ignore[list-item]


def test_three_quick_clicks_in_one_spot_are_one_rage_click() -> None:
    assert count_rage_clicks([(0, 10, 10), (200, 12, 11), (400, 9, 10)]) == 1


def test_clicks_spread_in_space_or_time_are_not_rage_clicks() -> None:
    assert count_rage_clicks([(0, 10, 10), (200, 300, 10), (400, 600, 10)]) == 0
    assert count_rage_clicks([(0, 10, 10), (900, 10, 10), (1800, 10, 10)]) == 0


def test_summary_counts_page_views_clicks_inputs_errors_and_viewport() -> None:
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
        {"type": 4, "timestamp": 5000, "data": {"href": "https://a/y"}},
    ]
    summary = summary_of(envelope(events, consent=True, user_agent="UA/1"))
    assert summary["event_count"] == 8
    assert summary["page_views"] == 2
    assert summary["page_urls"] == ["https://a/x", "https://a/y"]
    assert summary["entry_url"] == "https://a/x"
    assert (summary["clicks"], summary["rage_clicks"], summary["inputs"]) == (3, 1, 1)
    assert summary["console_errors"] == 1
    assert (summary["viewport_w"], summary["viewport_h"]) == (1024, 700)
    assert summary["active_secs"] == [2, 3]
    assert (summary["consent_state"], summary["agent"]) == (1, "UA/1")


def test_empty_batch_has_no_summary() -> None:
    assert batch_rows(envelope([]), retention_days=30).summary is None


def test_list_filter_reads_every_parameter() -> None:
    f = parse_session_filter(
        {
            "from": "2025-01-01T00:00:00Z",
            "to": "1767225600000",
            "min_duration": "30",
            "url": "/checkout",
            "visitor": "v1",
            "rage": "true",
            "errors": "1",
            "sort": "duration",
            "limit": "20",
            "offset": "40",
        }
    )
    assert (f.sort, f.descending, f.limit, f.offset) == ("duration", False, 20, 40)
    assert f.has_rage_clicks and f.has_errors and f.url_contains == "/checkout"
    sql, params = session_list_sql("shop", f)
    assert "rage_clicks > 0" in sql and "console_errors > 0" in sql
    assert params["limit"] == 21 and params["url"] == "/checkout"


@pytest.mark.parametrize(
    ("param", "value"),
    [("limit", "0"), ("limit", "x"), ("sort", "secret"), ("from", "yesterday"), ("rage", "maybe")],
)
def test_bad_list_parameter_is_named_in_the_error(param: str, value: str) -> None:
    with pytest.raises(QueryParamError) as info:
        parse_session_filter({param: value})
    assert info.value.param == param


def test_analyst_sql_allows_only_one_select() -> None:
    assert analyst_sql_is_select("SELECT count() FROM events")
    assert analyst_sql_is_select("WITH 1 AS x SELECT x")
    assert not analyst_sql_is_select("INSERT INTO events SELECT * FROM events")
    assert not analyst_sql_is_select("ALTER TABLE events DELETE WHERE 1")
    assert not analyst_sql_is_select("SELECT 1 SETTINGS readonly = 0")


def test_cluster_variant_has_replicated_local_tables_and_distributed_by_session() -> None:
    plan = {name: statements for _, name, statements in planned_statements("replaypipe")}
    events = plan["events"]
    assert events[0].startswith("CREATE TABLE IF NOT EXISTS events_local ON CLUSTER 'replaypipe'")
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/events_local'"
        in (events[0])
    )
    assert "Distributed('replaypipe', currentDatabase(), events_local, " in events[1]
    assert "cityHash64(site_id, session_id)" in events[1]
    sessions_ddl = "\n".join(plan["sessions"])
    assert (
        "TO sessions_local AS" in sessions_ddl and "FROM session_batches_local AS b" in sessions_ddl
    )
    assert "ReplicatedAggregatingMergeTree" in sessions_ddl
    assert "session_batches_local ON CLUSTER 'replaypipe' (" in sessions_ddl


def test_cluster_variant_refuses_a_statement_it_cannot_translate() -> None:
    with pytest.raises(SchemaError, match="no cluster translation"):
        cluster_statements(split_statements("DROP TABLE events;\n"), "c", ["events"])
