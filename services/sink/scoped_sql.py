"""Analysts' SQL scoped to their sites, enforced by the engine (the console's SQL page).

``POST /v1/scoped-sql`` (admin token: the console's service credential) takes
``{"sql": "...", "sites": ["shop", ...]}`` and runs one read-only SELECT that
can see only those sites' rows:

* the query passes exactly the checks and limits of ``POST /v1/sql``
  (:mod:`services.sink.analyst_sql`: ClickHouse's own parse, a function
  allowlist, only ``events``, ``sessions`` and ``session_summaries``, no table
  functions — ``merge()`` would read a table around the filter);
* the engine filters rows: ClickHouse's ``additional_table_filters`` setting adds
  ``site_id IN (...)`` to every read of ``events`` and ``sessions`` — in
  subqueries, joins, CTEs and views — and ``readonly=1`` stops a query from
  changing that setting (the same on the embedded engine and on a server).

On a ClickHouse server, row policies per analyst user are the stronger form
(docs/console.md); this endpoint is what works on the embedded default too.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import orjson
from aiohttp import web

from services.sink.read_api import (
    MAX_SQL_CHARS,
    analyst_limits,
    authorize_admin,
    error,
    run_analyst_sql,
)

ROW_FILTERED_TABLES = ("events", "sessions")  # session_summaries reads sessions
SITE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


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
    limits = dataclasses.replace(analyst_limits(request), row_filters=filters)
    return await run_analyst_sql(request, sql, limits)


def add_scoped_sql_routes(app: web.Application) -> None:
    """Mount ``POST /v1/scoped-sql``."""
    app.router.add_post("/v1/scoped-sql", scoped_sql)
