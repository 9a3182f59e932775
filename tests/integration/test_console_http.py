"""The console over HTTP on a real broker: login, sessions, CSRF, throttling, roles, settings.

The console app runs in this process (aiohttp's test server) against the test
run's Kafka broker; its state is the real ``console.state`` topic and settings
go to the real ``sites.config``. No sink runs here: endpoints that would call
it answer 502 once the role check has passed, which is all a role test needs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer

from services.console.app import (
    make_console,
    make_console_app,
    start_console,
    stop_console,
    sweep_ended_sessions,
)
from services.console.context import Console
from services.console.passwords import hash_password
from services.console.roles import Role
from services.console.settings import ConsoleSettings
from services.console.state import Account, Membership, sha256_hex
from services.console.state_feed import AUDIT_TOPIC
from services.dev.kafka_broker import LocalKafkaBroker
from services.shared import topics
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings

pytestmark = pytest.mark.integration

PASSWORD = "lantern quokka marmalade 42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
IDLE_S = 3.0


@pytest.fixture(scope="module")
def broker_settings(kafka_broker: LocalKafkaBroker) -> Iterator[KafkaSettings]:
    yield KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)


@dataclass
class Site:
    """A site of one test, with an owner, a viewer and an analyst."""

    site_id: str
    owner: str
    viewer: str
    analyst: str


@pytest.fixture(scope="module")
async def console(broker_settings: KafkaSettings) -> AsyncIterator[Console]:
    settings = ConsoleSettings(
        sink_url="http://127.0.0.1:9",  # nothing listens: sink calls answer 502
        secret_key="test-secret-key-for-csrf-signing",
        session_idle_s=IDLE_S,
        login_max_failures_per_account=3,
        login_max_failures_per_address=50,
        password_min_length=12,
        kafka=broker_settings,
    )
    console = make_console(settings, SiteRegistry())
    tasks = await start_console(console)
    yield console
    await stop_console(console, tasks)


@pytest.fixture(scope="module")
async def server(console: Console) -> AsyncIterator[TestServer]:
    server = TestServer(make_console_app(console))
    await server.start_server()
    yield server
    await server.close()


async def add_site(console: Console) -> Site:
    """A new site (in the console's registry) with one account per role."""
    site_id = f"shop-{uuid.uuid4().hex[:8]}"
    console.registry.replace_all(
        [*console.registry.all(), SiteSettings(site_id=site_id, public_keys=(f"pk_{site_id}",))]
    )
    site = Site(
        site_id, f"owner@{site_id}.test", f"viewer@{site_id}.test", f"analyst@{site_id}.test"
    )
    roles: list[tuple[str, Role]] = [
        (site.owner, "owner"),
        (site.viewer, "viewer"),
        (site.analyst, "analyst"),
    ]
    for email, role in roles:
        await add_account(console, email)
        await console.store.put(Membership(site_id=site_id, email=email, role=role))
    return site


async def add_account(console: Console, email: str, **fields: object) -> Account:
    account = Account(email=email, password_hash=hash_password(PASSWORD), **fields)  # type: ignore[arg-type]
    await console.store.put(account)
    return account


async def client_for(server: TestServer) -> ClientSession:
    """A browser of its own: its own cookies (IP-address hosts allowed, as for 127.0.0.1)."""
    return ClientSession(base_url=str(server.make_url("/")), cookie_jar=CookieJar(unsafe=True))


async def csrf_of(client: ClientSession, path: str) -> str:
    response = await client.get(path, allow_redirects=False)
    match = CSRF_RE.search(await response.text())
    assert match, f"no CSRF token on {path} ({response.status})"
    return match.group(1)


async def login(
    client: ClientSession, email: str, password: str = PASSWORD, code: str = ""
) -> ClientResponse:
    token = await csrf_of(client, "/login")
    return await client.post(
        "/login",
        data={"email": email, "password": password, "code": code, "csrf_token": token},
        allow_redirects=False,
    )


@pytest.fixture
async def site(console: Console) -> Site:
    return await add_site(console)


@pytest.fixture
async def browser(server: TestServer) -> AsyncIterator[ClientSession]:
    client = await client_for(server)
    yield client
    await client.close()


# --- accounts and login -----------------------------------------------------------


async def test_login_sets_an_httponly_samesite_session_cookie(
    browser: ClientSession, site: Site
) -> None:
    response = await login(browser, site.owner)
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = next(c for c in response.cookies.values() if c.key == "rp_session")
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # plain HTTP here; Secure is set when served over TLS
    page = await browser.get("/")
    assert site.site_id in await page.text()


async def test_wrong_password_gets_one_message_for_every_cause(
    browser: ClientSession, site: Site
) -> None:
    wrong = await login(browser, site.owner, "not the password at all")
    unknown = await login(browser, f"nobody@{site.site_id}.test")
    assert wrong.status == unknown.status == 401
    for response in (wrong, unknown):
        assert "The email, password or code is not right." in await response.text()


async def test_a_failed_login_for_no_account_does_not_record_what_was_typed(
    broker_settings: KafkaSettings, browser: ClientSession
) -> None:
    typed = f"Hunter2-typed-into-email-{uuid.uuid4().hex[:6]}"
    await login(browser, typed)
    events = await read_topic(broker_settings, AUDIT_TOPIC)
    failed = [e for e in events if e["action"] == "login_failed"]
    assert failed and failed[-1]["actor"] == "(unknown account)"
    assert not any(typed.lower() in orjson.dumps(e).decode() for e in events)


async def test_login_is_throttled_per_account_with_a_clear_message(
    browser: ClientSession, site: Site
) -> None:
    for _ in range(3):
        assert (await login(browser, site.viewer, "wrong password here")).status == 401
    refused = await login(browser, site.viewer)  # the right password, too late
    assert refused.status == 429
    assert "Too many failed logins" in await refused.text()
    assert "Try again in 15 minutes" in await refused.text()


async def test_state_change_without_csrf_token_is_refused(
    browser: ClientSession, site: Site
) -> None:
    await login(browser, site.owner)
    response = await browser.post(
        f"/sites/{site.site_id}/tokens", data={"name": "ci"}, allow_redirects=False
    )
    assert response.status == 403
    assert "did not come from the console" in await response.text()


async def test_csrf_token_of_another_session_is_refused(
    server: TestServer, browser: ClientSession, site: Site
) -> None:
    other = await client_for(server)
    try:
        await login(other, site.viewer)
        foreign_token = await csrf_of(other, "/")
    finally:
        await other.close()
    await login(browser, site.owner)
    response = await browser.post(
        f"/sites/{site.site_id}/tokens",
        data={"name": "ci", "csrf_token": foreign_token},
        allow_redirects=False,
    )
    assert response.status == 403


async def test_login_form_without_csrf_token_is_refused(browser: ClientSession, site: Site) -> None:
    response = await browser.post(
        "/login", data={"email": site.owner, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403


async def test_idle_session_expires(browser: ClientSession, site: Site) -> None:
    await login(browser, site.viewer)
    assert (await browser.get("/", allow_redirects=False)).status == 200
    await asyncio.sleep(IDLE_S + 0.5)
    expired = await browser.get("/", allow_redirects=False)
    assert expired.status == 303 and expired.headers["Location"] == "/login"


async def test_the_sweep_removes_the_record_of_an_expired_session(
    console: Console, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.viewer)
    (cookie,) = [c.value for c in browser.cookie_jar if c.key == "rp_session"]
    await asyncio.sleep(IDLE_S + 0.5)
    await sweep_ended_sessions(console)
    assert sha256_hex(cookie) not in console.store.state.sessions


async def test_activity_keeps_a_session_alive_past_the_idle_timeout(
    browser: ClientSession, site: Site
) -> None:
    await login(browser, site.viewer)
    for _ in range(4):
        await asyncio.sleep(IDLE_S / 2)
        assert (await browser.get("/", allow_redirects=False)).status == 200


async def test_logout_ends_the_session(
    server: TestServer, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.viewer)
    cookie = browser.cookie_jar.filter_cookies(server.make_url("/"))["rp_session"].value
    token = await csrf_of(browser, "/")
    assert (
        await browser.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    ).status == 303
    browser.cookie_jar.update_cookies(
        {"rp_session": cookie}, server.make_url("/")
    )  # a copied cookie
    assert (await browser.get("/", allow_redirects=False)).status == 303


async def test_sign_out_everywhere_ends_other_browsers(
    server: TestServer, browser: ClientSession, site: Site
) -> None:
    other = await client_for(server)
    try:
        await login(other, site.owner)
        await login(browser, site.owner)
        token = await csrf_of(browser, "/")
        await browser.post(
            "/account/sign-out-everywhere", data={"csrf_token": token}, allow_redirects=False
        )
        assert (await other.get("/", allow_redirects=False)).status == 303
        assert (await browser.get("/", allow_redirects=False)).status == 303
    finally:
        await other.close()


async def test_password_change_keeps_this_browser_and_ends_the_others(
    server: TestServer, browser: ClientSession, site: Site
) -> None:
    other = await client_for(server)
    try:
        await login(other, site.analyst)
        await login(browser, site.analyst)
        token = await csrf_of(browser, "/account/password")
        new = "a brand new passphrase 2026"
        changed = await browser.post(
            "/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": new,
                "confirm_password": new,
                "csrf_token": token,
            },
            allow_redirects=False,
        )
        assert changed.status == 303
        assert (await browser.get("/", allow_redirects=False)).status == 200
        assert (await other.get("/", allow_redirects=False)).status == 303
    finally:
        await other.close()


async def test_common_password_is_refused_on_change(browser: ClientSession, site: Site) -> None:
    await login(browser, site.viewer)
    token = await csrf_of(browser, "/account/password")
    response = await browser.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "password1234",
            "confirm_password": "password1234",
            "csrf_token": token,
        },
    )
    assert response.status == 400
    assert "common or breached" in await response.text()


async def test_one_time_password_must_be_changed_first(
    console: Console, browser: ClientSession
) -> None:
    email = f"new-{uuid.uuid4().hex[:6]}@example.test"
    await add_account(console, email, must_change_password=True)
    await login(browser, email)
    response = await browser.get("/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/account/password"


async def test_owner_without_totp_is_sent_to_enrol_when_the_deployment_requires_it(
    console: Console, browser: ClientSession, site: Site
) -> None:
    original = console.settings
    console.settings = replace(original, require_totp_for_owners=True)
    try:
        await login(browser, site.owner)
        response = await browser.get(f"/sites/{site.site_id}", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/account/totp"
        viewer = await browser.get("/account/totp")
        assert viewer.status == 200
    finally:
        console.settings = original


async def test_totp_account_needs_the_current_code(
    console: Console, browser: ClientSession
) -> None:
    import pyotp

    secret = pyotp.random_base32()
    email = f"totp-{uuid.uuid4().hex[:6]}@example.test"
    await add_account(console, email, totp_secret=secret)
    assert (await login(browser, email, code="000000")).status == 401
    assert (await login(browser, email, code=pyotp.TOTP(secret).now())).status == 303


# --- settings -------------------------------------------------------------------


async def test_saving_settings_publishes_them_and_records_the_history(
    console: Console, broker_settings: KafkaSettings, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.owner)
    token = await csrf_of(browser, f"/sites/{site.site_id}/settings")
    saved = await browser.post(
        f"/sites/{site.site_id}/settings",
        data={
            "csrf_token": token,
            "record_inputs": "on",
            "consent_mode": "none",
            "ip_mode": "drop",
            "sample_rate": "0.5",
            "retention_days": "14",
            "pii_detectors": "email",
        },
        allow_redirects=False,
    )
    assert saved.status == 303
    published = await read_site_config(broker_settings, site.site_id)
    assert published["record_inputs"] is True and published["retention_days"] == 14
    page = await (await browser.get(saved.headers["Location"])).text()
    assert "Saved." in page
    history = page[page.index('id="history"') :]
    assert site.owner in history and "record_inputs" in history


async def test_settings_with_a_bad_selector_are_not_saved_and_the_problem_is_shown(
    console: Console, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.owner)
    token = await csrf_of(browser, f"/sites/{site.site_id}/settings")
    response = await browser.post(
        f"/sites/{site.site_id}/settings",
        data={"csrf_token": token, "record_inputs": "on", "block_selectors": "div[[broken"},
    )
    assert response.status == 400
    body = await response.text()
    assert "Nothing was saved" in body and "div[[broken" in body
    current = console.registry.get(site.site_id)
    assert current is not None and not current.record_inputs


async def read_topic(kafka: KafkaSettings, topic: str) -> list[dict[str, Any]]:
    """Every JSON value on ``topic`` up to now."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1500)
            if not batches:
                return found
            found += [orjson.loads(r.value) for rs in batches.values() for r in rs if r.value]
    finally:
        await consumer.stop()


async def read_site_config(kafka: KafkaSettings, site_id: str) -> dict[str, object]:
    consumer = AIOKafkaConsumer(
        topics.SITES_CONFIG,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, object] = {}
    try:
        end = asyncio.get_running_loop().time() + 15
        while not found and asyncio.get_running_loop().time() < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == site_id.encode() and record.value:
                        found = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return found


# --- tokens -----------------------------------------------------------------------


async def test_token_is_shown_once_stored_hashed_and_accepted_until_revoked(
    console: Console, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.owner)
    token = await csrf_of(browser, f"/sites/{site.site_id}/tokens")
    created = await browser.post(
        f"/sites/{site.site_id}/tokens", data={"name": "dashboards", "csrf_token": token}
    )
    match = re.search(r'id="new-token">(rt_[^<]+)<', await created.text())
    assert match
    read_token = match.group(1)
    current = console.registry.get(site.site_id)
    assert current is not None and current.accepts_read_token(read_token)
    listing = await (await browser.get(f"/sites/{site.site_id}/tokens")).text()
    assert "dashboards" in listing and read_token not in listing
    (record,) = console.store.state.tokens_of(site.site_id)
    token = await csrf_of(browser, f"/sites/{site.site_id}/tokens")
    await browser.post(
        f"/sites/{site.site_id}/tokens/{record.token_id}/revoke", data={"csrf_token": token}
    )
    current = console.registry.get(site.site_id)
    assert current is not None and not current.accepts_read_token(read_token)


# --- two-factor enrolment, members, sites, erasure confirmation ---------------------


async def test_totp_enrolment_needs_a_valid_code_and_then_login_needs_one(
    console: Console, server: TestServer, browser: ClientSession, site: Site
) -> None:
    import pyotp

    await login(browser, site.analyst)
    page = await (await browser.get("/account/totp")).text()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    wrong = await browser.post(
        "/account/totp", data={"secret": secret, "code": "000000", "csrf_token": token}
    )
    assert wrong.status == 400
    right = await browser.post(
        "/account/totp",
        data={"secret": secret, "code": pyotp.TOTP(secret).now(), "csrf_token": token},
        allow_redirects=False,
    )
    assert right.status == 303
    other = await client_for(server)
    try:
        assert (await login(other, site.analyst)).status == 401
        assert (await login(other, site.analyst, code=pyotp.TOTP(secret).now())).status == 303
    finally:
        await other.close()


async def test_the_enrolled_totp_seed_is_sealed_in_console_state(
    console: Console, browser: ClientSession, site: Site
) -> None:
    import pyotp

    await login(browser, site.owner)
    page = await (await browser.get("/account/totp")).text()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)  # type: ignore[union-attr]
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    enrolled = await browser.post(
        "/account/totp",
        data={"secret": secret, "code": pyotp.TOTP(secret).now(), "csrf_token": token},
        allow_redirects=False,
    )
    assert enrolled.status == 303
    records = [
        r
        for r in await read_topic(console.settings.kafka, "console.state")
        if r.get("email") == site.owner and "password_hash" in r
    ]
    assert records[-1]["totp_secret"].startswith("aesgcm1:")
    assert not [r for r in records if secret in orjson.dumps(r).decode()]


async def test_owner_adds_a_member_whose_one_time_password_is_shown_once(
    console: Console, server: TestServer, browser: ClientSession, site: Site
) -> None:
    await login(browser, site.owner)
    token = await csrf_of(browser, f"/sites/{site.site_id}/members")
    email = f"new-viewer@{site.site_id}.test"
    added = await browser.post(
        f"/sites/{site.site_id}/members",
        data={"email": email, "role": "viewer", "csrf_token": token},
    )
    one_time = re.search(r'id="one-time-password">([^<]+)<', await added.text())
    assert one_time
    assert console.store.state.role(email, site.site_id) == "viewer"
    listing = await (await browser.get(f"/sites/{site.site_id}/members")).text()
    assert email in listing and one_time.group(1) not in listing
    newcomer = await client_for(server)
    try:
        await login(newcomer, email, one_time.group(1))
        first = await newcomer.get("/", allow_redirects=False)
        assert first.headers["Location"] == "/account/password"
    finally:
        await newcomer.close()


async def test_admin_creates_a_site_with_a_site_key_and_its_first_owner(
    console: Console, browser: ClientSession
) -> None:
    admin = f"admin-{uuid.uuid4().hex[:6]}@example.test"
    await add_account(console, admin, is_admin=True)
    await login(browser, admin)
    token = await csrf_of(browser, "/admin/sites")
    site_id = f"new-{uuid.uuid4().hex[:6]}"
    owner = f"owner@{site_id}.test"
    created = await browser.post(
        "/admin/sites", data={"site_id": site_id, "owner": owner, "csrf_token": token}
    )
    assert "one-time-password" in await created.text()
    site = console.registry.get(site_id)
    assert site is not None and site.public_keys[0].startswith("pk_")
    assert console.store.state.role(owner, site_id) == "owner"


async def test_erasure_needs_the_id_typed_twice(browser: ClientSession, site: Site) -> None:
    await login(browser, site.owner)
    token = await csrf_of(browser, "/")
    response = await browser.post(
        f"/sites/{site.site_id}/erase",
        data={"kind": "session", "id": "s-1", "confirm": "s-2", "csrf_token": token},
    )
    assert response.status == 400
    assert "Type the session or visitor id again" in await response.text()
