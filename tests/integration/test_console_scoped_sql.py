"""Analysts' SQL scoped to their sites by the engine (sink ``POST /v1/scoped-sql``).

A stack of its own with two sites, each with stored sessions; every query is
scoped to the first site and must never see a row of the second, however it
is written.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from services.dev.demo import get, post_json
from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.dev.stack import LocalStack
from tests.conftest import _dump_logs, make_stack

pytestmark = pytest.mark.integration

MINE, THEIRS = "sql-mine", "sql-theirs"
ADMIN_TOKEN = "admin-test-token"


@pytest.fixture(scope="module")
def stack(
    kafka_broker: LocalKafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("scoped-sql")
    stack = make_stack(kafka_broker, root / "stack", "scoped-sql")
    stack.sites_file = root / "sites.json"
    sites = [{"site_id": s, "public_keys": [f"pk_{s}"]} for s in (MINE, THEIRS)]
    stack.sites_file.write_bytes(orjson.dumps({"sites": sites}))
    try:
        stack.start_services()
        rng = random.Random(7)
        for site_id, count in ((MINE, 2), (THEIRS, 1)):
            for _ in range(count):
                send_session(stack, site_id, rng)
        wait_stored(stack, {MINE: 2, THEIRS: 1})
        yield stack
    except Exception:
        _dump_logs(root / "stack")
        raise
    finally:
        stack.stop()


def send_session(stack: LocalStack, site_id: str, rng: random.Random) -> None:
    session = generate_session(rng, site_id=site_id, start_ms=int(time.time() * 1000))
    for seq, batch in enumerate(session.batches):
        status, _ = post_json(
            f"http://127.0.0.1:{stack.ingest_port}/v1/recordings?key=pk_{site_id}",
            {
                "session_id": session.session_id,
                "window_id": session.window_id,
                "visitor_id": session.visitor_id,
                "seq": seq,
                "events": batch,
            },
        )
        assert status == 202 or status == 200, status


def wait_stored(stack: LocalStack, expected: dict[str, int]) -> None:
    deadline = time.monotonic() + 90
    for site_id, count in expected.items():
        url = f"http://127.0.0.1:{stack.sink_port}/v1/sites/{site_id}/sessions"
        while time.monotonic() < deadline:
            status, body = get(url, ADMIN_TOKEN)
            if status == 200 and len(orjson.loads(body)["sessions"]) >= count:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"{site_id}: sessions not stored in time")


def scoped(stack: LocalStack, sql: str, sites: list[str] | None = None) -> tuple[int, Any]:
    status, body = post_json(
        f"http://127.0.0.1:{stack.sink_port}/v1/scoped-sql",
        {"sql": sql, "sites": sites or [MINE]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    return status, orjson.loads(body)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT DISTINCT site_id FROM events",
        "SELECT DISTINCT site_id FROM sessions",
        "SELECT DISTINCT site_id FROM session_summaries",
        "SELECT DISTINCT site_id FROM (SELECT * FROM events WHERE site_id != '')",
        "WITH e AS (SELECT site_id FROM events) SELECT DISTINCT site_id FROM e",
        "SELECT DISTINCT a.site_id FROM events AS a "
        "JOIN sessions AS b ON a.session_id = b.session_id",
        "SELECT DISTINCT site_id FROM events UNION DISTINCT SELECT DISTINCT site_id FROM sessions",
    ],
)
def test_every_way_of_reading_the_tables_sees_only_the_scoped_site(
    stack: LocalStack, sql: str
) -> None:
    status, doc = scoped(stack, sql)
    assert status == 200, doc
    assert doc["rows"] == [[MINE]]


def test_asking_for_the_other_site_by_name_finds_nothing(stack: LocalStack) -> None:
    status, doc = scoped(stack, f"SELECT count() FROM events WHERE site_id = '{THEIRS}'")
    assert status == 200 and doc["rows"] == [[0]]


def test_a_scoped_count_counts_only_the_site_sessions(stack: LocalStack) -> None:
    status, doc = scoped(stack, "SELECT uniqExact(session_id) FROM events")
    assert status == 200 and doc["rows"] == [[2]]


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT count() FROM merge(currentDatabase(), '^events$')", "merge"),
        ("SELECT file('/proc/self/environ')", "file"),
        ("SELECT * FROM audit_log", "audit_log"),
        ("SELECT name FROM system.tables", "system.tables"),
        ("SELECT count() FROM events WHERE session_id IN audit_log", "audit_log"),
        ("SELECT addressToLine(toUInt64(1))", "addressToLine"),
    ],
)
def test_what_could_reach_around_the_filter_is_refused_by_name(
    stack: LocalStack, sql: str, named: str
) -> None:
    status, doc = scoped(stack, sql)
    assert status == 400
    assert doc["error"] in {"not_allowed", "function_not_allowed", "table_not_allowed"}
    if "." not in named:  # a qualified name is not repeated back, only plain ones
        assert named in doc["detail"]


def test_settings_cannot_be_changed_from_the_query(stack: LocalStack) -> None:
    sql = "SELECT count() FROM events SETTINGS additional_table_filters = {}"
    assert scoped(stack, sql)[0] == 400


def test_scoped_sql_needs_the_admin_token(stack: LocalStack) -> None:
    status, _ = post_json(
        f"http://127.0.0.1:{stack.sink_port}/v1/scoped-sql",
        {"sql": "SELECT 1", "sites": [MINE]},
        headers={"Authorization": "Bearer rt_not_admin"},
    )
    assert status == 403
