"""The read API's list filters and summary query (pure: no engine)."""

from __future__ import annotations

import pytest

from services.sink.queries import (
    QueryParamError,
    parse_session_filter,
    session_list_sql,
    session_summary_sql,
)


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "2300-01-01T00:00:00Z"]
)
def test_a_time_outside_what_clickhouse_stores_is_refused_naming_the_parameter(
    value: str,
) -> None:
    with pytest.raises(QueryParamError) as info:
        parse_session_filter({"from": value})
    assert info.value.param == "from" and "1900-01-01 to 2299-12-31" in info.value.detail


def test_epoch_milliseconds_too_large_for_a_date_are_refused() -> None:
    with pytest.raises(QueryParamError) as info:
        parse_session_filter({"to": "9" * 30})
    assert info.value.param == "to"


def test_the_first_and_last_times_clickhouse_stores_are_accepted() -> None:
    f = parse_session_filter({"from": "1900-01-01T00:00:00Z", "to": "2299-12-31T00:00:00Z"})
    assert f.start_from is not None and f.start_to is not None


def test_a_range_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(QueryParamError) as info:
        parse_session_filter({"from": "2025-02-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"})
    assert info.value.param == "to"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1e400", "ten"])
def test_min_duration_must_be_a_finite_number_of_seconds(value: str) -> None:
    with pytest.raises(QueryParamError) as info:
        parse_session_filter({"min_duration": value})
    assert info.value.param == "min_duration"


def test_one_sessions_summary_has_its_own_query_with_the_list_columns() -> None:
    sql, params = session_summary_sql("shop", "s-1")
    list_sql, _ = session_list_sql("shop", parse_session_filter({}))
    assert params == {"site": "shop", "session": "s-1"}
    assert "session_id = {session:String}" in sql and "site_id = {site:String}" in sql
    assert sql.split(" FROM ")[0] == list_sql.split(" FROM ")[0]
    assert "LIMIT" not in sql and "ORDER BY" not in sql


def test_the_list_chooses_its_page_of_ids_before_aggregating_every_column() -> None:
    sql, _ = session_list_sql("shop", parse_session_filter({"rage": "1", "sort": "-events"}))
    outer, _, inner = sql.partition(" IN (")
    assert "LIMIT {limit:UInt32}" in inner and "rage_clicks > 0" in inner
    assert inner.startswith("SELECT session_id FROM session_summaries")
    assert "page_urls" in outer and "LIMIT" not in outer
    assert outer.count("event_count DESC, session_id") == 0
    assert sql.endswith("ORDER BY event_count DESC, session_id")
