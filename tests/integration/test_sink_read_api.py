"""The sink's read API over sessions the writer stored from the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.dev.kafka_broker import LocalKafkaBroker
from services.sink.read_api import make_read_app
from services.sink.settings import SinkSettings
from services.sink.store import ClickHouseStore
from tests.integration.sink_support import (
    ADMIN,
    BLOG_TOKEN,
    SHOP_TOKEN,
    envelopes,
    expected_events,
    new_topic,
    publish_envelopes,
    registry,
    run_until,
    scalar,
    writer_for,
)

pytestmark = pytest.mark.integration


RAGE_SESSION = web.AppKey("rage_session", str)


@pytest.fixture(scope="module")
async def read_api(
    store: ClickHouseStore, kafka_broker: LocalKafkaBroker
) -> AsyncIterator[TestClient[Any, Any]]:
    """The read API over a store holding sessions of sites 'shop' and 'blog'."""
    topic = await new_topic(kafka_broker)
    shop = envelopes("shop", sessions=12, seed=10)
    blog = envelopes("blog", sessions=3, seed=11)
    # One shop session rage-clicks and logs a console error on /help.
    rage = shop[0]
    t = rage.events[-1]["timestamp"] + 10
    rage.events.extend(
        [
            {"type": 4, "timestamp": t, "data": {"href": "https://shop.example/help"}},
            *[
                {
                    "type": 3,
                    "timestamp": t + 100 * i,
                    "data": {"source": 2, "type": 2, "id": 1, "x": 50, "y": 50},
                }
                for i in range(1, 5)
            ],
            {
                "type": 6,
                "timestamp": t + 600,
                "data": {"plugin": "rrweb/console@1", "payload": {"level": "error"}},
            },
        ]
    )
    await publish_envelopes(kafka_broker, topic, shop + blog)
    total = expected_events(shop + blog)

    async def stored() -> bool:
        return bool(
            await scalar(
                store, "SELECT count() FROM events FINAL WHERE site_id IN ('shop', 'blog')"
            )
            == total
        )

    await run_until(writer_for(kafka_broker, store, topic), stored)
    settings = SinkSettings(admin_token=ADMIN)
    client: TestClient[Any, Any] = TestClient(
        TestServer(make_read_app(store, registry(), settings))
    )
    await client.start_server()
    client.app[RAGE_SESSION] = rage.session_id
    yield client
    await client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_session_list_is_sorted_and_paginated(read_api: TestClient[Any, Any]) -> None:
    seen: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = await read_api.get(
            "/v1/sites/shop/sessions",
            params={"limit": "5", "offset": str(offset)},
            headers=bearer(SHOP_TOKEN),
        )
        assert response.status == 200
        doc = await response.json()
        seen.extend(doc["sessions"])
        offset = doc["next_offset"]
    assert len(seen) == 12 and len({s["session_id"] for s in seen}) == 12
    starts = [s["start_time"] for s in seen]
    assert starts == sorted(starts, reverse=True)
    first = seen[0]
    assert first["event_count"] > 0 and first["duration_s"] > 0 and first["active_s"] > 0
    assert first["first_url"].startswith("https://shop.example/checkout")
    assert first["viewport"] == {"width": 1280, "height": 800} and first["consent"] == "granted"


async def test_session_list_filters_by_url_and_rage_clicks_and_errors(
    read_api: TestClient[Any, Any],
) -> None:
    rage_session = read_api.app[RAGE_SESSION]
    for params in (
        {"rage": "true"},
        {"errors": "1"},
        {"url": "/help"},
        {"url": "/help", "rage": "1"},
    ):
        response = await read_api.get(
            "/v1/sites/shop/sessions", params=params, headers=bearer(SHOP_TOKEN)
        )
        doc = await response.json()
        assert [s["session_id"] for s in doc["sessions"]] == [rage_session], params
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"min_duration": "100000"}, headers=bearer(SHOP_TOKEN)
    )
    assert (await response.json())["sessions"] == []


async def test_session_list_filters_by_visitor_and_time(read_api: TestClient[Any, Any]) -> None:
    all_sessions = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    one = all_sessions[3]
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"visitor": one["visitor_id"]}, headers=bearer(SHOP_TOKEN)
    )
    assert [s["session_id"] for s in (await response.json())["sessions"]] == [one["session_id"]]
    response = await read_api.get(
        "/v1/sites/shop/sessions",
        params={"from": one["start_time"], "sort": "start"},
        headers=bearer(SHOP_TOKEN),
    )
    assert (await response.json())["sessions"][0]["session_id"] == one["session_id"]


async def test_bad_list_parameter_is_a_400_naming_it(read_api: TestClient[Any, Any]) -> None:
    response = await read_api.get(
        "/v1/sites/shop/sessions", params={"limit": "5000"}, headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 400 and (await response.json())["error"] == "invalid_limit"


async def test_session_events_stream_in_replay_order(read_api: TestClient[Any, Any]) -> None:
    session = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"][0]
    response = await read_api.get(
        f"/v1/sites/shop/sessions/{session['session_id']}/events", headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 200 and response.headers["Content-Type"] == "application/x-ndjson"
    events = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert len(events) == session["event_count"]
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert events[0]["type"] == 4


async def test_read_token_sees_only_its_own_site(read_api: TestClient[Any, Any]) -> None:
    blog_sessions = (
        await (await read_api.get("/v1/sites/blog/sessions", headers=bearer(BLOG_TOKEN))).json()
    )["sessions"]
    assert len(blog_sessions) == 3
    blog_session = blog_sessions[0]["session_id"]
    for path in ("/v1/sites/blog/sessions", f"/v1/sites/blog/sessions/{blog_session}/events"):
        response = await read_api.get(path, headers=bearer(SHOP_TOKEN))
        assert response.status == 403, path
    # The shop token asking for a blog session under its own site finds nothing.
    response = await read_api.get(
        f"/v1/sites/shop/sessions/{blog_session}/events", headers=bearer(SHOP_TOKEN)
    )
    assert response.status == 404
    assert (await read_api.get("/v1/sites/shop/sessions")).status == 401


async def test_sql_endpoint_needs_the_admin_token_and_is_read_only(
    read_api: TestClient[Any, Any],
) -> None:
    query = "SELECT site_id, count() AS n FROM session_summaries GROUP BY site_id ORDER BY site_id"
    assert (await read_api.post("/v1/sql", data=query, headers=bearer(SHOP_TOKEN))).status == 403
    response = await read_api.post("/v1/sql", json={"sql": query}, headers=bearer(ADMIN))
    doc = await response.json()
    assert response.status == 200, doc
    assert doc["columns"] == ["site_id", "n"] and ["blog", 3] in doc["rows"]
    for forbidden in (
        "INSERT INTO events SELECT * FROM events",
        "DROP TABLE events",
        "SELECT 1; DROP TABLE events",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
    ):
        response = await read_api.post("/v1/sql", data=forbidden, headers=bearer(ADMIN))
        assert response.status == 400, forbidden
    response = await read_api.post(
        "/v1/sql", data="SELECT arrayJoin(range(20000)) AS number", headers=bearer(ADMIN)
    )
    doc = await response.json()
    assert doc["truncated"] is True and len(doc["rows"]) == 10_000


async def test_erasing_a_session_and_a_visitor_removes_them_from_every_query(
    read_api: TestClient[Any, Any], store: ClickHouseStore
) -> None:
    sessions = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    victim, visitor = sessions[-1], sessions[-2]
    assert (
        await read_api.delete(
            f"/v1/sites/shop/sessions/{victim['session_id']}", headers=bearer(SHOP_TOKEN)
        )
    ).status == 403
    response = await read_api.delete(
        f"/v1/sites/shop/sessions/{victim['session_id']}", headers=bearer(ADMIN)
    )
    assert (await response.json())["erased_sessions"] == [victim["session_id"]]
    response = await read_api.delete(
        f"/v1/sites/shop/visitors/{visitor['visitor_id']}", headers=bearer(ADMIN)
    )
    assert (await response.json())["erased_sessions"] == [visitor["session_id"]]

    gone = [victim["session_id"], visitor["session_id"]]
    for session_id in gone:
        response = await read_api.get(
            f"/v1/sites/shop/sessions/{session_id}/events", headers=bearer(SHOP_TOKEN)
        )
        assert response.status == 404
        for table in ("events", "events FINAL", "sessions", "session_summaries"):
            assert (
                await scalar(
                    store,
                    f"SELECT count() FROM {table} WHERE session_id = {{s:String}}",
                    s=session_id,
                )
                == 0
            )
    listed = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    assert len(listed) == 10 and not set(gone) & {s["session_id"] for s in listed}


async def test_events_carry_the_sites_retention_for_the_ttl(
    read_api: TestClient[Any, Any], store: ClickHouseStore
) -> None:
    ttl = await scalar(store, "SELECT engine_full FROM system.tables WHERE name = 'events'")
    assert "TTL toDateTime(ts) + toIntervalDay(retention_days)" in ttl
    assert (
        await scalar(store, "SELECT DISTINCT retention_days FROM events WHERE site_id = 'shop'")
        == 60
    )


async def test_a_start_time_clickhouse_cannot_store_is_a_400_naming_the_parameter(
    read_api: TestClient[Any, Any],
) -> None:
    response = await read_api.get(
        "/v1/sites/shop/sessions",
        params={"from": "0001-01-01T00:00:00Z"},
        headers=bearer(SHOP_TOKEN),
    )
    doc = await response.json()
    assert response.status == 400 and doc["error"] == "invalid_from"
    assert "0001" not in doc["detail"]


async def test_one_session_is_served_by_its_id_with_the_fields_of_the_list(
    read_api: TestClient[Any, Any],
) -> None:
    listed = (
        await (await read_api.get("/v1/sites/shop/sessions", headers=bearer(SHOP_TOKEN))).json()
    )["sessions"]
    for session in (listed[0], listed[-1]):
        response = await read_api.get(
            f"/v1/sites/shop/sessions/{session['session_id']}", headers=bearer(SHOP_TOKEN)
        )
        assert response.status == 200 and await response.json() == session


async def test_a_session_of_another_site_or_unknown_is_not_found_without_echoing_it(
    read_api: TestClient[Any, Any],
) -> None:
    blog = (
        await (await read_api.get("/v1/sites/blog/sessions", headers=bearer(BLOG_TOKEN))).json()
    )["sessions"][0]["session_id"]
    for session_id in (blog, "no-such-session-<b>"):
        response = await read_api.get(
            f"/v1/sites/shop/sessions/{session_id}", headers=bearer(SHOP_TOKEN)
        )
        body = await response.text()
        assert response.status == 404 and "session_not_found" in body
        assert session_id not in body
    response = await read_api.get(f"/v1/sites/blog/sessions/{blog}", headers=bearer(SHOP_TOKEN))
    assert response.status == 403
