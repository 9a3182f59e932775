"""Analyst SQL (``POST /v1/sql``) on the real embedded engine: every bypass we could
think of is refused before anything runs, the project's queries still work, and
results are capped in rows and bytes."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.sink.read_api import make_read_app
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import (
    ADMIN,
    envelopes,
    expected_events,
    insert_envelopes,
    registry,
)

pytestmark = pytest.mark.integration

RESULT_BYTES = 1024 * 1024
# A secret in this process's environment, as SINK_ADMIN_TOKEN is in the sink's.
SECRET = "analyst-must-not-read-this"


@pytest.fixture(scope="module")
async def sql_api(store: ClickHouseStore) -> AsyncIterator[TestClient[Any, Any]]:
    """The read API with the admin token, a 1 MiB result cap and a secret in the env."""
    os.environ["REPLAYPIPE_TEST_SECRET"] = SECRET
    settings = SinkSettings(admin_token=ADMIN, sql_max_result_bytes=RESULT_BYTES)
    client: TestClient[Any, Any] = TestClient(
        TestServer(make_read_app(store, registry(), settings))
    )
    await client.start_server()
    yield client
    await client.close()
    del os.environ["REPLAYPIPE_TEST_SECRET"]


async def run_sql(api: TestClient[Any, Any], sql: str) -> tuple[int, str]:
    response = await api.post("/v1/sql", data=sql, headers={"Authorization": f"Bearer {ADMIN}"})
    return response.status, await response.text()


BYPASSES = [
    # the scalar file() and the ways to spell or hide it
    "SELECT file('/etc/passwd')",
    "select FILE('/etc/passwd')",
    "SELECT `file`('/etc/passwd')",
    "SELECT extract(file('/proc/self/environ'), 'REPLAYPIPE_TEST_SECRET=([^\\x00]*)')",
    "SELECT f FROM (SELECT file('/etc/passwd') AS f)",
    "SELECT * FROM (SELECT * FROM (SELECT file('/etc/passwd')))",
    "WITH file('/etc/passwd') AS f SELECT f",
    "WITH t AS (SELECT file('/etc/passwd') AS f) SELECT * FROM t",
    "SELECT 1 UNION ALL SELECT length(file('/etc/passwd'))",
    "SELECT arrayMap(x -> file(x), ['/etc/passwd'])",
    "SELECT /* comment */ file(/* ) */ '/etc/passwd') -- trailing",
    "SELECT * APPLY(file) FROM (SELECT '/etc/passwd' AS p)",
    "SELECT COLUMNS('p') APPLY(x -> file(x)) FROM (SELECT '/etc/passwd' AS p)",
    "SELECT 1 AS `a\n Function file`, file('/etc/passwd')",
    # table functions: files, network, processes, other tables
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM input('line String')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/key', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM executable('id', 'LineAsString', 'line String')",
    "SELECT * FROM view(SELECT file('/etc/passwd'))",
    "SELECT * FROM merge('system', '.*')",
    "SELECT * FROM numbers(10)",
    "EXPLAIN SELECT 1",
    # dictionaries, settings, the process, the host
    "SELECT dictGet('d', 'a', toUInt64(1))",
    "SELECT joinGet('j', 'a', 1)",
    "SELECT getSetting('readonly')",
    "SELECT addressToLine(toUInt64(0))",
    "SELECT demangle('x')",
    "SELECT hostName()",
    "SELECT sleepEachRow(3) FROM events",
    "SELECT arrayReduce('groupArray', [file('/etc/passwd')])",
    "SELECT arrayReduce('aggThrow', [1])",
    # system tables and tables outside the project's
    "SELECT * FROM system.settings",
    "SELECT * FROM `system`.`one`",
    "SELECT * FROM INFORMATION_SCHEMA.TABLES",
    "SELECT 1 FROM events WHERE site_id IN system.one",
    "SELECT * FROM schema_migrations",
    "WITH schema_migrations AS (SELECT 1) SELECT * FROM schema_migrations",
    "SELECT * FROM (WITH q AS (SELECT 1) SELECT * FROM q), incoming_batches",
    # settings and output clauses, statements that are not one SELECT
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS allow_introspection_functions = 1",
    "SELECT 1 FORMAT JSON",
    "SELECT 1 INTO OUTFILE '/tmp/replaypipe-analyst-outfile'",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE events",
    "INSERT INTO events SELECT * FROM events",
    "DROP TABLE events",
    "SET readonly = 0",
    "SHOW TABLES",
    "SELECT {p:String}",
]


@pytest.mark.parametrize("sql", BYPASSES)
async def test_a_query_reaching_files_env_network_settings_or_other_tables_is_refused(
    sql_api: TestClient[Any, Any], sql: str
) -> None:
    status, body = await run_sql(sql_api, sql)
    assert status == 400, body
    assert "root:" not in body and SECRET not in body and "passwd" not in body


async def test_no_outfile_was_written(sql_api: TestClient[Any, Any]) -> None:
    await run_sql(sql_api, "SELECT 1 INTO OUTFILE '/tmp/replaypipe-analyst-outfile'")
    assert not await asyncio.to_thread(os.path.exists, "/tmp/replaypipe-analyst-outfile")


async def test_the_refusal_names_the_function_and_what_is_allowed(
    sql_api: TestClient[Any, Any],
) -> None:
    status, body = await run_sql(sql_api, "SELECT file('/etc/passwd')")
    assert status == 400 and "function_not_allowed" in body and "'file'" in body
    status, body = await run_sql(sql_api, "SELECT * FROM system.settings")
    assert "table_not_allowed" in body and "session_summaries" in body


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT site_id, count() AS n FROM session_summaries GROUP BY site_id ORDER BY n DESC",
        "WITH recent AS (SELECT * FROM events WHERE ts > now() - INTERVAL 1 DAY) "
        "SELECT count() FROM recent",
        "SELECT e.session_id, s.visitor_id FROM events AS e "
        "INNER JOIN sessions AS s ON e.session_id = s.session_id LIMIT 5",
        "SELECT session_id, row_number() OVER (PARTITION BY site_id ORDER BY start_time) "
        "FROM session_summaries",
        "SELECT countIf(rage_clicks > 0), uniqExact(visitor_id), quantiles(0.5, 0.9)(duration_s) "
        "FROM session_summaries",
        "SELECT arrayFilter(u -> position(u, '/checkout') > 0, page_urls) FROM session_summaries",
        "SELECT JSONExtractString(data, 'data', 'href') FROM events FINAL WHERE type = 4",
        "SELECT * EXCEPT (data) FROM events WHERE site_id IN (SELECT site_id FROM sessions)",
        "select COUNT(*) from events -- a comment",
        "SELECT toStartOfHour(ts) AS hour, count() FROM events GROUP BY hour ORDER BY hour",
    ],
)
async def test_analyst_queries_over_the_project_tables_run(
    sql_api: TestClient[Any, Any], sql: str
) -> None:
    status, body = await run_sql(sql_api, sql)
    assert status == 200, body


async def test_a_result_larger_than_the_byte_cap_is_cut_there(
    sql_api: TestClient[Any, Any], store: ClickHouseStore
) -> None:
    batch = envelopes("sql-bytes", sessions=2, seed=31)
    await insert_envelopes(store, batch, uuid.uuid4().hex)
    rows = expected_events(batch)
    assert rows * 10_000 > 2 * RESULT_BYTES  # the whole result would be well over the cap
    status, body = await run_sql(
        sql_api, "SELECT repeat('x', 10000) AS big FROM events WHERE site_id = 'sql-bytes'"
    )
    assert status == 200
    doc = orjson.loads(body)
    assert doc["truncated"] is True and 0 < len(doc["rows"]) < rows
    assert len(body) <= RESULT_BYTES + 4096


async def test_a_result_too_big_for_the_memory_limit_is_refused_naming_the_setting(
    sql_api: TestClient[Any, Any],
) -> None:
    # One block of ~1 GB (arrayJoin makes one block): over SINK_SQL_MAX_MEMORY_BYTES.
    status, body = await run_sql(
        sql_api, "SELECT repeat('x', 100000) AS big FROM (SELECT arrayJoin(range(10000)))"
    )
    assert status == 400 and "MEMORY_LIMIT_EXCEEDED" in body
    assert "SINK_SQL_MAX_MEMORY_BYTES" in body


async def test_a_long_result_is_cut_at_the_row_cap(sql_api: TestClient[Any, Any]) -> None:
    response = await sql_api.post(
        "/v1/sql",
        data="SELECT arrayJoin(range(20000)) AS n",
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    doc = await response.json()
    assert doc["truncated"] is True and len(doc["rows"]) == 10_000


async def test_an_engine_error_names_the_error_without_echoing_the_query(
    sql_api: TestClient[Any, Any],
) -> None:
    status, body = await run_sql(sql_api, "SELECT no_such_column_secret_word FROM events")
    assert status == 400 and "query_failed" in body and "UNKNOWN_IDENTIFIER" in body
    assert "secret_word" not in body
