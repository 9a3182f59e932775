"""Reads of the sink's read API with a site read token are in the audit log; exports too."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink.read_api import READ_AUDIT_KEY, make_read_app
from services.sink.read_audit import ReadAudit
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import ADMIN, envelopes, insert_envelopes

pytestmark = pytest.mark.integration

TOKEN = "rt_audited_viewer_token"
TOKEN_ID = "read-token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]


@dataclass
class Api:
    client: TestClient[Any, Any]
    app: web.Application
    store: ClickHouseStore
    site: str
    session: str

    async def get(self, path: str, token: str = TOKEN) -> tuple[int, bytes, Any]:
        async with self.client.get(
            f"/v1/sites/{self.site}{path}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.read(), response.headers

    async def audit_rows(self) -> list[tuple[Any, ...]]:
        """The site's audit rows, oldest first, after the recorded reads were inserted."""
        await self.app[READ_AUDIT_KEY].flush()
        result = await self.store.query(
            "SELECT actor, action, session_id, target, outcome, detail "
            "FROM audit_log FINAL WHERE site_id = {s:String} ORDER BY at",
            parameters={"s": self.site},
        )
        return [tuple(row) for row in result.result_rows]

    async def everything_stored(self) -> str:
        result = await self.store.query(
            "SELECT formatRowNoNewline('JSONEachRow', *) FROM audit_log WHERE site_id = {s:String}",
            parameters={"s": self.site},
        )
        return "\n".join(row[0] for row in result.result_rows)


@pytest.fixture
async def api(store: ClickHouseStore) -> AsyncIterator[Api]:
    """The read API over one stored session of a site of its own (so its own audit rows)."""
    site = f"audited-{uuid.uuid4().hex[:8]}"
    batch = envelopes(site, sessions=1, seed=21)
    await insert_envelopes(store, batch, uuid.uuid4().hex)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    sites = SiteRegistry([SiteSettings(site_id=site, read_token_sha256=(digest,))])
    app = make_read_app(store, sites, SinkSettings(admin_token=ADMIN))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield Api(client, app, store, site, batch[0].session_id)
    await client.close()


async def test_a_replay_fetched_with_a_site_token_is_audited_under_the_tokens_id(
    api: Api,
) -> None:
    status, _, _ = await api.get(f"/sessions/{api.session}/events")
    assert status == 200
    assert await api.audit_rows() == [
        (TOKEN_ID, "replay_opened", api.session, api.session, "ok", "read_api events")
    ]
    assert TOKEN not in await api.everything_stored()


async def test_a_session_list_and_a_summary_read_with_a_site_token_are_audited(
    api: Api,
) -> None:
    assert (await api.get("/sessions"))[0] == 200
    assert (await api.get(f"/sessions/{api.session}"))[0] == 200
    assert (await api.get("/sessions/no-such-session"))[0] == 404
    assert [(r[1], r[2], r[4]) for r in await api.audit_rows()] == [
        ("sessions_listed", "", "ok"),
        ("session_viewed", api.session, "ok"),
        ("session_viewed", "no-such-session", "not_found"),
    ]


async def test_reads_with_the_admin_token_are_left_to_the_console_to_audit(api: Api) -> None:
    assert (await api.get(f"/sessions/{api.session}/events", token=ADMIN))[0] == 200
    assert await api.audit_rows() == []


async def test_a_refused_token_reads_nothing_and_records_nothing(api: Api) -> None:
    assert (await api.get(f"/sessions/{api.session}/events", token="rt_wrong"))[0] == 403
    assert await api.audit_rows() == []


async def test_reads_are_refused_while_the_audit_log_cannot_take_them(api: Api) -> None:
    api.app[READ_AUDIT_KEY].max_pending = 0
    status, body, _ = await api.get(f"/sessions/{api.session}/events")
    assert status == 503 and orjson.loads(body)["error"] == "audit_unavailable"
    assert TOKEN_ID not in body.decode()


async def test_an_export_is_the_sessions_masked_events_as_an_ndjson_download(api: Api) -> None:
    status, body, headers = await api.get(f"/sessions/{api.session}/export")
    assert status == 200
    assert headers["Content-Type"] == "application/x-ndjson"
    assert headers["Content-Disposition"] == 'attachment; filename="session-events.ndjson"'
    _, replay, _ = await api.get(f"/sessions/{api.session}/events")
    assert body == replay and all(orjson.loads(line)["timestamp"] for line in body.splitlines())


async def test_an_export_is_audited_as_export(api: Api) -> None:
    assert (await api.get(f"/sessions/{api.session}/export"))[0] == 200
    assert await api.audit_rows() == [
        (TOKEN_ID, "export", api.session, api.session, "ok", "read_api export")
    ]


async def test_the_audit_buffer_keeps_rows_that_failed_to_insert_for_the_next_flush() -> None:
    class DownStore:
        async def insert_columns(self, *args: Any) -> None:
            raise ConnectionError("ClickHouse is down")

    audit = ReadAudit(DownStore(), max_pending=2)  # type: ignore[arg-type]
    assert audit.record(["row-1"]) and audit.record(["row-2"])
    assert not audit.record(["row-3"])
    await audit.flush()
    assert audit.pending == 2
