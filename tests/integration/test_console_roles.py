"""Every site endpoint of the console checks the role, and refuses other sites' members.

The table below lists each route with the action it needs; a test checks that
the table covers every route the app has, so a new endpoint cannot skip it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from services.console.app import make_console, make_console_app, start_console, stop_console
from services.console.context import Console
from services.console.passwords import hash_password
from services.console.roles import Action, Role, role_allows
from services.console.settings import ConsoleSettings
from services.console.state import Account, Membership
from services.dev.kafka_broker import LocalKafkaBroker
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings

pytestmark = pytest.mark.integration

PASSWORD = "lantern quokka marmalade 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SITE = "roles-shop"
OTHER_SITE = "roles-other-shop"

# (method, path, what it needs: an Action on SITE, or "admin")
ENDPOINTS: list[tuple[str, str, Action | str]] = [
    ("GET", "/sites/{site}", Action.VIEW_SITE),
    ("GET", "/sites/{site}/settings", Action.EDIT_SETTINGS),
    ("POST", "/sites/{site}/settings", Action.EDIT_SETTINGS),
    ("GET", "/sites/{site}/members", Action.MANAGE_MEMBERS),
    ("POST", "/sites/{site}/members", Action.MANAGE_MEMBERS),
    ("POST", "/sites/{site}/members/remove", Action.MANAGE_MEMBERS),
    ("GET", "/sites/{site}/tokens", Action.MANAGE_TOKENS),
    ("POST", "/sites/{site}/tokens", Action.MANAGE_TOKENS),
    ("POST", "/sites/{site}/tokens/{token}/revoke", Action.MANAGE_TOKENS),
    ("GET", "/sites/{site}/sessions", Action.LIST_SESSIONS),
    ("GET", "/sites/{site}/sessions/{session}", Action.REPLAY),
    ("GET", "/sites/{site}/sessions/{session}/export", Action.EXPORT),
    ("GET", "/sites/{site}/replay/{session}", Action.REPLAY),
    ("POST", "/sites/{site}/erase", Action.ERASE),
    ("GET", "/sites/{site}/audit", Action.VIEW_AUDIT),
    ("GET", "/sites/{site}/sql", Action.RUN_SQL),
    ("POST", "/sites/{site}/sql", Action.RUN_SQL),
    ("GET", "/admin/audit", "admin"),
    ("GET", "/admin/sites", "admin"),
    ("POST", "/admin/sites", "admin"),
]
# Routes outside the table, and why.
UNCHECKED = {
    "/",
    "/login",
    "/logout",
    "/account/sign-out-everywhere",
    "/account/password",
    "/account/totp",
    "/static/console.css",
    "/viewer/static/{name}",
    # bearer replay token, tested in test_replay_events_refuse_a_token_of_another_session
    "/api/v1/sites/{site}/sessions/{session}/events",
}

ROLES_UNDER_TEST: list[Role | None] = ["owner", "viewer", "analyst", None]


@pytest.fixture(scope="module")
async def console(kafka_broker: LocalKafkaBroker) -> AsyncIterator[Console]:
    settings = ConsoleSettings(
        sink_url="http://127.0.0.1:9",
        secret_key="roles-test-secret",
        login_max_failures_per_address=1000,
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers),
    )
    registry = SiteRegistry([SiteSettings(site_id=SITE), SiteSettings(site_id=OTHER_SITE)])
    console = make_console(settings, registry)
    tasks = await start_console(console)
    roles: tuple[Role, ...] = ("owner", "viewer", "analyst")
    for role in roles:
        await console.store.put(
            Account(email=f"{role}@roles.test", password_hash=hash_password(PASSWORD))
        )
        await console.store.put(Membership(site_id=SITE, email=f"{role}@roles.test", role=role))
    # The "None" account owns another site: a member, just not of this one.
    await console.store.put(
        Account(email="stranger@roles.test", password_hash=hash_password(PASSWORD))
    )
    await console.store.put(
        Membership(site_id=OTHER_SITE, email="stranger@roles.test", role="owner")
    )
    await console.store.put(
        Account(email="admin@roles.test", password_hash=hash_password(PASSWORD), is_admin=True)
    )
    yield console
    await stop_console(console, tasks)


@pytest.fixture(scope="module")
async def server(console: Console) -> AsyncIterator[TestServer]:
    server = TestServer(make_console_app(console))
    await server.start_server()
    yield server
    await server.close()


async def logged_in(server: TestServer, email: str) -> tuple[ClientSession, str]:
    browser = ClientSession(base_url=str(server.make_url("/")), cookie_jar=CookieJar(unsafe=True))
    page = await (await browser.get("/login")).text()
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    response = await browser.post(
        "/login",
        data={"email": email, "password": PASSWORD, "csrf_token": token},
        allow_redirects=False,
    )
    assert response.status == 303, email
    page = await (await browser.get("/")).text()
    return browser, CSRF_RE.search(page).group(1)  # type: ignore[union-attr]


def email_of(role: Role | None) -> str:
    return f"{role}@roles.test" if role else "stranger@roles.test"


def test_the_table_covers_every_route(server: TestServer) -> None:
    app = server.app
    assert app is not None
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    in_table = {(method, path) for method, path, _ in ENDPOINTS}
    missing = {
        (method, path)
        for method, path in routes
        if (method, path) not in in_table
        and path not in UNCHECKED
        and path not in ("/metrics", "/healthz", "/readyz")
    }
    assert missing == set()


@pytest.mark.parametrize("role", ROLES_UNDER_TEST, ids=lambda r: r or "other-site-owner")
@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=lambda v: str(v))
async def test_endpoint_checks_the_role(
    server: TestServer, role: Role | None, method: str, path: str, needs: Action | str
) -> None:
    browser, csrf = await logged_in(server, email_of(role))
    try:
        url = path.format(site=SITE, token="no-such-token", session="s-1")
        data = {"csrf_token": csrf} if method == "POST" else None
        response = await browser.request(method, url, data=data, allow_redirects=False)
        allowed = role_allows(role, needs) if isinstance(needs, Action) else False
        if allowed:
            assert response.status != 403, (method, url, role)
        else:
            assert response.status == 403, (method, url, role)
    finally:
        await browser.close()


@pytest.mark.parametrize(("method", "path", "needs"), ENDPOINTS, ids=lambda v: str(v))
async def test_instance_admin_may_use_every_endpoint(
    server: TestServer, method: str, path: str, needs: Action | str
) -> None:
    browser, csrf = await logged_in(server, "admin@roles.test")
    try:
        url = path.format(site=SITE, token="no-such-token", session="s-1")
        data = {"csrf_token": csrf} if method == "POST" else None
        response = await browser.request(method, url, data=data, allow_redirects=False)
        assert response.status != 403, (method, url)
    finally:
        await browser.close()


async def test_an_unknown_site_gets_the_same_answer_as_a_foreign_one(server: TestServer) -> None:
    browser, _ = await logged_in(server, "owner@roles.test")
    try:
        unknown = await browser.get("/sites/no-such-site/settings", allow_redirects=False)
        foreign = await browser.get(f"/sites/{OTHER_SITE}/settings", allow_redirects=False)
        assert unknown.status == foreign.status == 403
    finally:
        await browser.close()


async def test_replay_events_refuse_a_token_of_another_session(server: TestServer) -> None:
    browser, _ = await logged_in(server, "viewer@roles.test")
    try:
        opened = await browser.get(f"/sites/{SITE}/sessions/s-1", allow_redirects=False)
        token = opened.headers["Location"].split("#token=", 1)[1]
        other_session = await browser.get(
            f"/api/v1/sites/{SITE}/sessions/s-2/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        other_site = await browser.get(
            f"/api/v1/sites/{OTHER_SITE}/sessions/s-1/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        forged = await browser.get(
            f"/api/v1/sites/{SITE}/sessions/s-1/events", headers={"Authorization": "Bearer x.y.z"}
        )
        assert other_session.status == other_site.status == forged.status == 403
        mine = await browser.get(
            f"/api/v1/sites/{SITE}/sessions/s-1/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert mine.status == 502  # past every check; no sink runs in this test
    finally:
        await browser.close()


async def test_replay_token_stops_working_at_logout(server: TestServer) -> None:
    browser, csrf = await logged_in(server, "viewer@roles.test")
    try:
        opened = await browser.get(f"/sites/{SITE}/sessions/s-1", allow_redirects=False)
        token = opened.headers["Location"].split("#token=", 1)[1]
        await browser.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
        after = await browser.get(
            f"/api/v1/sites/{SITE}/sessions/s-1/events",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert after.status == 403
    finally:
        await browser.close()
