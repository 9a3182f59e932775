"""The analyst SQL policy on EXPLAIN AST text as ClickHouse prints it (pure).

The trees below are ClickHouse 26.9's own output for the query in each test's
name; tests/integration/test_sink_analyst_sql.py runs the same checks on the
real engine's parse.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.sink.analyst_sql import (
    AnalystLimits,
    AnalystSqlRefused,
    capped_rows,
    check_explain_ast,
)

DATABASE = {"events", "sessions", "session_summaries", "schema_migrations", "incoming_batches"}


def tree(*lines: str) -> str:
    """An EXPLAIN AST output: the wrapper ``SELECT * FROM (…)`` around ``lines``."""
    head = [
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        "  SelectQuery (children 2)",
        "   ExpressionList (children 1)",
        "    Asterisk",
        "   TablesInSelectQuery (children 1)",
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        "      Subquery (children 1)",
    ]
    return "\n".join(head + ["       " + line for line in lines]) + "\n"


def select(*lines: str) -> str:
    return tree(
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        "  SelectQuery (children 2)",
        *["   " + line for line in lines],
    )


FROM_EVENTS = (
    "TablesInSelectQuery (children 1)",
    " TablesInSelectQueryElement (children 1)",
    "  TableExpression (children 1)",
    "   TableIdentifier events (alias e)",
)


def refusal(explain: str) -> AnalystSqlRefused:
    with pytest.raises(AnalystSqlRefused) as info:
        check_explain_ast(explain, DATABASE)
    return info.value


def test_an_aggregate_over_the_events_is_allowed() -> None:
    check_explain_ast(
        select(
            "ExpressionList (children 2)",
            " Identifier site_id",
            " Function countIf (alias n) (children 1)",
            "  ExpressionList (children 1)",
            "   Function greater (children 1)",
            "    ExpressionList (children 2)",
            "     Identifier size",
            "     Literal UInt64_100",
            *FROM_EVENTS,
        ),
        DATABASE,
    )


@pytest.mark.parametrize("name", ["file", "FILE", "url", "s3", "executable", "input", "dictGet"])
def test_a_function_outside_the_allowlist_is_refused_by_name(name: str) -> None:
    error = refusal(
        select(
            "ExpressionList (children 1)",
            f" Function {name} (children 1)",
            "  ExpressionList (children 1)",
            "   Literal \\'/etc/passwd\\'",
        )
    )
    assert error.code == "function_not_allowed" and f"'{name}'" in error.detail
    assert "passwd" not in error.detail


@pytest.mark.parametrize("name", ["addressToLine", "getSetting", "sleepEachRow", "throwIf"])
def test_introspection_settings_sleeps_and_throws_are_not_allowed(name: str) -> None:
    assert refusal(select("ExpressionList (children 1)", f" Function {name}")).code == (
        "function_not_allowed"
    )


def test_a_function_inside_a_lambda_is_checked_too() -> None:
    error = refusal(
        select(
            "ExpressionList (children 1)",
            " Function arrayMap (children 1)",
            "  ExpressionList (children 2)",
            "   Function lambda (children 1)",
            "    ExpressionList (children 2)",
            "     Function tuple (children 1)",
            "      ExpressionList (children 1)",
            "       Identifier x",
            "     Function file (children 1)",
            "      ExpressionList (children 1)",
            "       Identifier x",
            "   Literal Array_[\\'/etc/passwd\\']",
        )
    )
    assert "'file'" in error.detail


@pytest.mark.parametrize("name", ["uniqExactIf", "sumArray", "countIf", "quantilesIf", "anyLastIf"])
def test_aggregate_combinators_of_allowed_aggregates_are_allowed(name: str) -> None:
    check_explain_ast(select("ExpressionList (children 1)", f" Function {name}"), DATABASE)


def test_a_combinator_does_not_make_a_forbidden_function_allowed() -> None:
    assert refusal(select("ExpressionList (children 1)", " Function fileIf")).code == (
        "function_not_allowed"
    )


@pytest.mark.parametrize("table", ["system.tables", "system.one", "INFORMATION_SCHEMA.TABLES"])
def test_tables_of_other_databases_are_refused(table: str) -> None:
    lines = list(FROM_EVENTS)
    lines[-1] = f"   TableIdentifier {table}"
    error = refusal(select("ExpressionList (children 1)", " Asterisk", *lines))
    assert error.code == "table_not_allowed"


def test_a_table_of_the_database_outside_the_project_tables_is_refused() -> None:
    lines = list(FROM_EVENTS)
    lines[-1] = "   TableIdentifier schema_migrations"
    assert refusal(select("ExpressionList (children 1)", " Asterisk", *lines)).code == (
        "table_not_allowed"
    )


def test_a_with_name_that_is_no_table_is_allowed_as_a_table() -> None:
    lines = list(FROM_EVENTS)
    lines[-1] = "   TableIdentifier recent"
    check_explain_ast(select("ExpressionList (children 1)", " Asterisk", *lines), DATABASE)


def test_a_table_on_the_right_of_in_is_checked_like_one_in_from() -> None:
    error = refusal(
        select(
            "ExpressionList (children 1)",
            " Literal UInt64_1",
            " Function in (children 1)",
            "  ExpressionList (children 2)",
            "   Identifier site_id",
            "   Identifier system.tables",
        )
    )
    assert error.code == "table_not_allowed"


def test_a_settings_clause_is_refused() -> None:
    error = refusal(select("ExpressionList (children 1)", " Literal UInt64_1", "Set"))
    assert error.code == "not_allowed" and "SETTINGS" in error.detail


def test_apply_which_calls_a_function_the_tree_does_not_name_is_refused() -> None:
    error = refusal(
        select(
            "ExpressionList (children 1)",
            " Asterisk (children 1)",
            "  ColumnsTransformerList (children 1)",
            "   ColumnsApplyTransformer",
        )
    )
    assert "ColumnsApplyTransformer" in error.detail


def test_a_line_injected_by_an_alias_with_a_newline_is_refused() -> None:
    # SELECT 1 AS `a\n Function file`: the alias breaks the line; the tail is no name.
    explain = select("ExpressionList (children 1)", " Literal UInt64_1 (alias a", "Function file)")
    assert refusal(explain).code == "function_not_allowed"


def test_output_that_is_not_a_tree_is_refused() -> None:
    assert refusal("").code == "not_allowed"
    assert refusal("  \\'not a node\\'\n").code == "not_allowed"


def test_rows_are_cut_at_the_row_limit() -> None:
    rows, truncated = capped_rows([[(1,), (2,)], [(3,)]], AnalystLimits(max_rows=2))
    assert rows == [[1], [2]] and truncated


def test_rows_are_cut_at_the_byte_limit_and_reading_stops_there() -> None:
    read: list[int] = []

    def blocks() -> Iterator[list[tuple[str]]]:
        for index in range(1000):
            read.append(index)
            yield [("x" * 100,)] * 10

    rows, truncated = capped_rows(blocks(), AnalystLimits(max_result_bytes=1000))
    assert truncated and len(rows) == 9 and read == [0]


def test_a_result_within_the_limits_is_whole() -> None:
    assert capped_rows([[(1, "a")]], AnalystLimits()) == ([[1, "a"]], False)
