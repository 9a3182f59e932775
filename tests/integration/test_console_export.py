"""Exporting one session from the console: the masked events as a file, audited as ``export``.

The console talks to the real sink read API (over the session's embedded store), so
what is downloaded is what the sink stored.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from services.console.app import make_console, make_console_app, start_console, stop_console
from services.console.context import Console
from services.console.settings import ConsoleSettings
from services.console.state import Membership
from services.console.state_feed import AUDIT_TOPIC
from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from services.sink.queries import REPLAY_SQL
from services.sink.read_api import make_read_app
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import ADMIN, envelopes, insert_envelopes
from tests.integration.test_console_http import add_account, client_for, login, read_topic

pytestmark = pytest.mark.integration


@dataclass
class Exporting:
    console: Console
    server: TestServer
    site_id: str
    session_id: str
    viewer: str


@pytest.fixture(scope="module")
async def exporting(
    store: ClickHouseStore, kafka_broker: LocalKafkaBroker
) -> AsyncIterator[Exporting]:
    """A console whose sink is the real read API over a store with one session of the site."""
    site_id = f"export-{uuid.uuid4().hex[:8]}"
    batch = envelopes(site_id, sessions=1, seed=31)
    await insert_envelopes(store, batch, uuid.uuid4().hex)
    sites = SiteRegistry([SiteSettings(site_id=site_id)])
    sink = TestServer(make_read_app(store, sites, SinkSettings(admin_token=ADMIN)))
    await sink.start_server()
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    settings = ConsoleSettings(
        sink_url=str(sink.make_url("")).rstrip("/"),
        sink_admin_token=ADMIN,
        secret_key="export-test-secret",
        login_max_failures_per_address=1000,
        kafka=kafka,
    )
    console = make_console(settings, SiteRegistry([SiteSettings(site_id=site_id)]))
    tasks = await start_console(console)
    viewer = f"viewer@{site_id}.test"
    await add_account(console, viewer)
    await console.store.put(Membership(site_id=site_id, email=viewer, role="viewer"))
    server = TestServer(make_console_app(console))
    await server.start_server()
    yield Exporting(console, server, site_id, batch[0].session_id, viewer)
    await server.close()
    await stop_console(console, tasks)
    await sink.close()


@pytest.fixture
async def viewer(exporting: Exporting) -> AsyncIterator[ClientSession]:
    browser = await client_for(exporting.server)
    assert (await login(browser, exporting.viewer)).status == 303
    yield browser
    await browser.close()


async def test_a_viewer_downloads_the_sessions_masked_events_as_stored(
    exporting: Exporting, viewer: ClientSession, store: ClickHouseStore
) -> None:
    response = await viewer.get(
        f"/sites/{exporting.site_id}/sessions/{exporting.session_id}/export"
    )
    assert response.status == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="session-events.ndjson"'
    )
    stored = await store.raw_query(
        REPLAY_SQL, parameters={"site": exporting.site_id, "session": exporting.session_id}
    )
    assert await response.read() == stored


async def test_an_export_is_audited_as_export_with_the_viewer_and_the_session(
    exporting: Exporting, viewer: ClientSession
) -> None:
    path = f"/sites/{exporting.site_id}/sessions/{exporting.session_id}/export"
    assert (await viewer.get(path)).status == 200
    events = await read_topic(exporting.console.settings.kafka, AUDIT_TOPIC)
    exports = [e for e in events if e["action"] == "export" and e["site_id"] == exporting.site_id]
    assert exports and exports[-1]["actor"] == exporting.viewer
    assert exports[-1]["target"] == exporting.session_id


async def test_exporting_a_session_that_is_not_stored_says_so(
    exporting: Exporting, viewer: ClientSession
) -> None:
    response = await viewer.get(f"/sites/{exporting.site_id}/sessions/no-such-session/export")
    assert response.status == 404
    assert "No stored events for this session." in await response.text()
