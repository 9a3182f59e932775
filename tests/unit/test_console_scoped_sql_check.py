"""The scoped-SQL check on the engine's AST (pure: AST lines as EXPLAIN AST prints them)."""

from __future__ import annotations

import pytest

from services.sink.scoped_sql import cte_names, parse_explain_ast, scope_problems, site_filters

TABLES = {"events", "sessions", "session_summaries", "audit_log", "schema_migrations"}


def problems(lines: list[str], ctes: set[str] | None = None) -> list[str]:
    return scope_problems(
        parse_explain_ast(lines), ctes=ctes or set(), database="default", tables_in_database=TABLES
    )


def test_plain_select_from_an_allowed_table_passes() -> None:
    lines = [
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        "  SelectQuery (children 2)",
        "   ExpressionList (children 1)",
        "    Function count (children 1)",
        "     ExpressionList",
        "   TablesInSelectQuery (children 1)",
        "    TablesInSelectQueryElement (children 1)",
        "     TableExpression (children 1)",
        "      TableIdentifier default.events (alias e)",
    ]
    assert problems(lines) == []


def test_table_function_is_refused() -> None:
    lines = ["    TableExpression (children 1)", "     Function merge (children 1)"]
    assert any("table function merge()" in p for p in problems(lines))


def test_other_table_and_other_database_are_refused() -> None:
    assert problems(["      TableIdentifier audit_log"]) != []
    assert problems(["      TableIdentifier other.events"]) != []


def test_a_cte_name_is_usable_unless_it_shadows_a_real_table() -> None:
    assert problems(["      TableIdentifier recent"], ctes={"recent"}) == []
    assert problems(["      TableIdentifier audit_log"], ctes={"audit_log"}) != []


def test_functions_outside_the_allowlist_are_refused() -> None:
    assert problems(["    Function file (children 1)"]) == [
        "function file() is not allowed in analyst SQL"
    ]
    assert problems(["    Function COUNT (children 1)"]) == []


def test_table_named_as_an_identifier_is_refused() -> None:
    assert problems(["      Identifier audit_log"]) != []
    assert problems(["      Identifier system.tables"]) != []


def test_cte_names_come_from_with_clauses() -> None:
    sql = "WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b"
    assert cte_names(sql) == {"a", "b"}


def test_site_filters_cover_both_row_tables() -> None:
    assert site_filters(["shop", "blog"]) == {
        "events": "site_id IN ('shop', 'blog')",
        "sessions": "site_id IN ('shop', 'blog')",
    }


@pytest.mark.parametrize("sites", [[], ["it's"], ["a b"]])
def test_site_filters_refuse_what_is_not_a_plain_site_id(sites: list[str]) -> None:
    with pytest.raises(ValueError):
        site_filters(sites)
