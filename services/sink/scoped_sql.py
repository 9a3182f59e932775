"""Analysts' SQL scoped to their sites, enforced by the engine (the console's SQL page).

``POST /v1/scoped-sql`` (admin token: the console's service credential) takes
``{"sql": "...", "sites": ["shop", ...]}`` and runs one read-only SELECT that
can see only those sites' rows:

* the engine filters rows: ClickHouse's ``additional_table_filters`` setting adds
  ``site_id IN (...)`` to every read of ``events`` and ``sessions`` — in
  subqueries, joins, CTEs and views — and ``readonly=1`` stops a query from
  changing that setting (the same on the embedded engine and on a server);
* the engine's own parser (``EXPLAIN AST``) gives the tables and functions the
  query uses, checked here against allowlists: only ``events``, ``sessions`` and
  ``session_summaries`` (a view over ``sessions``), no table functions (``merge()``
  would read a table around the filter), and only the functions of
  :data:`ALLOWED_FUNCTIONS` (no ``file()``, no introspection).

On a ClickHouse server, row policies per analyst user are the stronger form
(docs/console.md); this endpoint is what works on the embedded default too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from aiohttp import web

from services.sink.queries import (
    ANALYST_MAX_ROWS,
    ANALYST_SETTINGS,
    analyst_sql_is_select,
    analyst_wrapped_sql,
)
from services.sink.read_api import STORE_KEY, _first_line, authorize_admin, error, json_response

ALLOWED_TABLES = frozenset({"events", "sessions", "session_summaries"})
ROW_FILTERED_TABLES = ("events", "sessions")  # session_summaries reads sessions
SITE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_SQL_CHARS = 20_000
# Operators appear as functions in the AST (equals, and, plus, ...).
_ALLOWED_FUNCTION_NAMES = """
    and or not xor equals notEquals less greater lessOrEquals greaterOrEquals in notIn
    like notLike ilike notILike plus minus multiply divide intDiv modulo negate if multiIf
    isNull isNotNull coalesce ifNull nullIf assumeNotNull tuple tupleElement array
    arrayElement lambda has hasAny hasAll indexOf length empty notEmpty arrayJoin
    arrayMap arrayFilter arrayExists arrayCount arraySum arrayUniq arraySort arrayDistinct
    count countIf sum sumIf avg avgIf min minIf max maxIf any anyLast argMin argMax uniq
    uniqIf uniqExact uniqCombined quantile quantiles quantileExact median groupArray
    groupUniqArray topK sumMap minMap maxMap countDistinct stddevPop varPop
    toDate toDateTime toDateTime64 toStartOfMinute toStartOfFiveMinutes toStartOfHour
    toStartOfDay toStartOfWeek toStartOfMonth toMonday toYYYYMM toYYYYMMDD toHour
    toDayOfWeek toUnixTimestamp now today yesterday dateDiff dateAdd dateSub addDays
    addHours subtractDays subtractHours formatDateTime toIntervalDay toIntervalHour
    toIntervalMinute toString toUInt8 toUInt16 toUInt32 toUInt64 toInt32 toInt64
    toFloat64 toDecimal64 round floor ceil abs least greatest lower upper trim
    substring position positionCaseInsensitive concat replaceAll startsWith endsWith
    match extract splitByChar domain path protocol cutQueryString extractURLParameter
    JSONExtractString JSONExtractInt JSONExtractFloat JSONExtractBool JSONHas
    JSONLength visitParamExtractString
"""
ALLOWED_FUNCTIONS = frozenset(name.lower() for name in _ALLOWED_FUNCTION_NAMES.split())
_AST_LINE = re.compile(r"^(?P<indent> *)(?P<kind>\w+)(?: (?P<name>[^ ]+))?")
_CTE_NAME = re.compile(r"(?:\bWITH\s+|,\s*)([A-Za-z_][A-Za-z0-9_]*)\s+AS\s*\(", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AstNode:
    """One line of ``EXPLAIN AST``: its depth, node kind and name (if any)."""

    depth: int
    kind: str
    name: str


def parse_explain_ast(lines: Iterable[str]) -> list[AstNode]:
    """The nodes of ``EXPLAIN AST`` output, in order (depth = indentation)."""
    nodes = []
    for line in lines:
        match = _AST_LINE.match(line)
        if match:
            nodes.append(
                AstNode(len(match.group("indent")), match.group("kind"), match.group("name") or "")
            )
    return nodes


def cte_names(normalized_sql: str) -> set[str]:
    """Names the query defines with ``WITH name AS (...)``."""
    return set(_CTE_NAME.findall(normalized_sql))


def scope_problems(
    nodes: Sequence[AstNode], *, ctes: set[str], database: str, tables_in_database: set[str]
) -> list[str]:
    """Why this query may not run scoped (empty when it may); each message says what to use."""
    problems: list[str] = []
    forbidden_tables = tables_in_database - ALLOWED_TABLES
    usable = ALLOWED_TABLES | (ctes - tables_in_database)
    for index, node in enumerate(nodes):
        if node.kind == "TableExpression":
            child = nodes[index + 1] if index + 1 < len(nodes) else None
            if child is not None and child.depth == node.depth + 1 and child.kind == "Function":
                problems.append(
                    f"table function {child.name}() is not allowed; "
                    f"query {', '.join(sorted(ALLOWED_TABLES))}"
                )
        elif node.kind == "TableIdentifier":
            db, _, table = node.name.rpartition(".")
            if (db and db != database) or table not in usable:
                problems.append(
                    f"table {node.name} is not available; query {', '.join(sorted(ALLOWED_TABLES))}"
                )
        elif node.kind == "Identifier":
            db, _, name = node.name.rpartition(".")
            if db == "system" or name in forbidden_tables:
                problems.append(f"{node.name} is not available to analysts")
        elif node.kind == "Function" and node.name.lower() not in ALLOWED_FUNCTIONS:
            problems.append(f"function {node.name}() is not allowed in analyst SQL")
    return sorted(set(problems))


def site_filters(sites: Sequence[str]) -> dict[str, str]:
    """``additional_table_filters``: every row-carrying table limited to ``sites``."""
    if not sites or not all(SITE_ID.match(s) for s in sites):
        raise ValueError("sites must be 1 to 128 of A-Z a-z 0-9 _ . - each")
    listed = ", ".join(f"'{site}'" for site in sites)
    return {table: f"site_id IN ({listed})" for table in ROW_FILTERED_TABLES}


async def scoped_sql(request: web.Request) -> web.Response:
    """``POST /v1/scoped-sql`` (admin): one read-only SELECT over the given sites' rows only."""

    denied = authorize_admin(request)
    if denied is not None:
        return denied
    try:
        doc = orjson.loads(await request.read())
        sql, sites = doc["sql"], doc["sites"]
        if not isinstance(sql, str) or not isinstance(sites, list):
            raise TypeError
        filters = site_filters([str(s) for s in sites])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return error(400, "invalid_request", 'Send {"sql": "SELECT ...", "sites": ["site", ...]}.')
    if not sql.strip() or len(sql) > MAX_SQL_CHARS:
        return error(400, "invalid_sql", f"Send one SELECT of at most {MAX_SQL_CHARS} characters.")
    store = request.app[STORE_KEY]
    try:
        normalized = (
            await store.query("SELECT formatQuerySingleLine({q:String})", parameters={"q": sql})
        ).result_rows[0][0]
        if not analyst_sql_is_select(normalized):
            return error(400, "not_a_select", "Only one SELECT (or WITH … SELECT) is allowed.")
        ast = await store.query(f"EXPLAIN AST {normalized}")
        database = (await store.query("SELECT currentDatabase()")).result_rows[0][0]
        tables = await store.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
    except Exception as exc:
        return error(400, "invalid_sql", _first_line(exc))
    problems = scope_problems(
        parse_explain_ast(row[0] for row in ast.result_rows),
        ctes=cte_names(normalized),
        database=database,
        tables_in_database={row[0] for row in tables.result_rows},
    )
    if problems:
        return error(400, "not_allowed", "; ".join(problems))
    started = time.perf_counter()
    settings = {**ANALYST_SETTINGS, "additional_table_filters": filters}
    try:
        result = await store.query(analyst_wrapped_sql(normalized), settings=settings)
    except Exception as exc:
        return error(400, "query_failed", _first_line(exc))
    rows = [list(row) for row in result.result_rows]
    return json_response(
        {
            "columns": list(result.column_names),
            "rows": rows[:ANALYST_MAX_ROWS],
            "truncated": len(rows) > ANALYST_MAX_ROWS,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    )


def add_scoped_sql_routes(app: web.Application) -> None:
    """Mount ``POST /v1/scoped-sql``."""
    app.router.add_post("/v1/scoped-sql", scoped_sql)
