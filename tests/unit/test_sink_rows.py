"""Sink pure logic: envelope headers, list filters, analyst SQL checks, cluster DDL."""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson
import pytest

from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope, EnvelopeError
from services.sink.queries import (
    QueryParamError,
    parse_session_filter,
    session_list_sql,
)
from services.sink.rows import (
    INCOMING_COLUMNS,
    RowError,
    check_envelope,
    estimated_events,
    incoming_row,
    read_header,
)
from services.sink.schema import (
    SchemaError,
    cluster_statements,
    planned_statements,
    split_statements,
)


def envelope(events: Sequence[object], **fields: object) -> BatchEnvelope:
    doc: dict[str, object] = {
        "v": 1,
        "site_id": "shop",
        "session_id": "s1",
        "window_id": "w1",
        "visitor_id": "v1",
        "seq": 3,
        "received_at": 1_700_000_000_000,
        "events": list(events),
        **fields,
    }
    return BatchEnvelope.from_dict(doc)


def test_header_is_read_without_the_events() -> None:
    session = generate_session(random.Random(1), start_ms=1_700_000_000_000)
    raw = envelope(session.batches[0], consent=False, user_agent="UA/1").to_json()
    header = read_header(raw)
    assert (header.site_id, header.session_id, header.window_id, header.seq) == (
        "shop",
        "s1",
        "w1",
        3,
    )
    assert (header.visitor_id, header.user_agent, header.consent) == ("v1", "UA/1", False)
    assert estimated_events(raw) == len(session.batches[0])


def test_incoming_row_carries_the_bytes_unchanged_and_the_sites_retention() -> None:
    raw = envelope([{"type": 4, "timestamp": 1}], consent=True).to_json()
    row = dict(zip(INCOMING_COLUMNS, incoming_row(read_header(raw), raw, 90), strict=True))
    assert row["body"] is raw
    assert (row["retention_days"], row["consent_state"], row["seq"]) == (90, 1, 3)


def test_header_in_another_key_order_is_still_read() -> None:
    doc = orjson.loads(envelope([{"type": 4, "timestamp": 1}], extra={"events": 1}).to_json())
    reordered = {"events": doc.pop("events"), **doc}
    assert read_header(orjson.dumps(reordered)).window_id == "w1"
    assert read_header(orjson.dumps(reordered, option=orjson.OPT_INDENT_2)).seq == 3


def test_value_that_is_not_json_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        read_header(b"{not json")


def test_header_missing_a_field_is_refused_naming_it() -> None:
    raw = orjson.dumps({"v": 1, "site_id": "shop", "session_id": "x", "events": []})
    with pytest.raises(EnvelopeError, match="missing field 'window_id'"):
        read_header(raw)


def test_events_that_are_not_a_list_are_refused() -> None:
    doc = orjson.loads(envelope([]).to_json())
    doc["events"] = {"type": 4}
    with pytest.raises(EnvelopeError, match="'events' is not a list"):
        read_header(orjson.dumps(doc))


@pytest.mark.parametrize("seq", [2**32, -1])
def test_a_seq_the_events_table_cannot_store_is_refused_not_retried_as_an_outage(seq: int) -> None:
    # A seq over UInt32 made the insert fail in the driver (no ClickHouse code),
    # which the writer retried forever: it is a bad envelope, for the DLQ.
    doc = orjson.loads(envelope([]).to_json())
    doc["seq"] = seq
    with pytest.raises(EnvelopeError, match="'seq' is outside"):
        read_header(orjson.dumps(doc))


def test_event_that_is_not_an_object_is_found_by_the_full_check() -> None:
    raw = envelope([{"type": 4, "timestamp": 1}, 7]).to_json()
    read_header(raw)  # the header is fine: ClickHouse refuses the body, the writer re-checks
    with pytest.raises(RowError, match="event 1"):
        check_envelope(raw)


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


def test_cluster_variant_changes_a_materialized_views_query_on_every_shard() -> None:
    plan = {name: statements for _, name, statements in planned_statements("replaypipe")}
    [statement] = plan["linear_rage_clicks"]
    assert statement.startswith(
        "ALTER TABLE session_batches_mv ON CLUSTER 'replaypipe' MODIFY QUERY"
    )
    assert "FROM parsed_batches_local" in statement and "session_batches_mv_local" not in statement


def test_cluster_variant_changes_the_event_codecs_on_every_shards_local_table() -> None:
    plan = {name: statements for _, name, statements in planned_statements("replaypipe")}
    statements = plan["event_codecs"]
    assert len(statements) == 11
    for statement in statements:
        assert statement.startswith(
            "ALTER TABLE events_local ON CLUSTER 'replaypipe' MODIFY COLUMN "
        )


def test_cluster_variant_of_the_cheap_summary_adds_times_and_changes_both_views_per_shard() -> None:
    plan = {name: statements for _, name, statements in planned_statements("replaypipe")}
    column, parse, summary = plan["cheap_session_summary"]
    assert column == (
        "ALTER TABLE parsed_batches_local ON CLUSTER 'replaypipe' "
        "ADD COLUMN IF NOT EXISTS times Array(Int64)"
    )
    assert parse.startswith("ALTER TABLE parsed_batches_mv ON CLUSTER 'replaypipe' MODIFY QUERY")
    assert "FROM incoming_batches_local" in parse
    assert summary.startswith("ALTER TABLE session_batches_mv ON CLUSTER 'replaypipe' MODIFY QUERY")
    assert "FROM parsed_batches_local" in summary
