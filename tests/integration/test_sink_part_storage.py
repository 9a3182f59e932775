"""Packed parts (0006): an insert's parts are one file each, and nothing else changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from services.sink.queries import REPLAY_SQL
from services.sink.store import ClickHouseStore, run_migrations
from tests.integration.sink_support import envelopes, insert_envelopes, store_migrated_upto

pytestmark = pytest.mark.integration

SUMMARY_SQL = (
    "SELECT session_id, event_count, bytes, page_views, clicks, rage_clicks, inputs, "
    "console_errors, page_urls, first_url, viewport, start_time, end_time "
    "FROM session_summaries WHERE site_id = {site:String} ORDER BY session_id"
)


def storage_of_parts(client: Any) -> set[tuple[str, str]]:
    """(table, part_storage_type) of the active parts of events and sessions."""
    result = client.query(
        "SELECT DISTINCT table, part_storage_type FROM system.parts "
        "WHERE active AND database = currentDatabase() AND table IN ('events', 'sessions')"
    )
    return {(table, storage) for table, storage in result.result_rows}


@pytest.fixture
def store_before_packed_parts(store: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """A store migrated only up to 0005 (Full parts)."""
    with store_migrated_upto(store, 5) as old:
        yield old


@pytest.fixture
def fresh_store(store: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """A new store with every migration (its parts are the test's alone)."""
    with store_migrated_upto(store, None) as fresh:
        yield fresh


async def replays(store: ClickHouseStore, site: str, sessions: list[str]) -> list[bytes]:
    return [
        await store.raw_query(REPLAY_SQL, parameters={"site": site, "session": s}) for s in sessions
    ]


async def summaries(store: ClickHouseStore, site: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = (
        await store.query(SUMMARY_SQL, parameters={"site": site})
    ).result_rows
    return rows


async def test_an_insert_writes_packed_parts_into_events_and_sessions(
    fresh_store: ClickHouseStore,
) -> None:
    fresh = fresh_store
    await insert_envelopes(fresh, envelopes("packed", sessions=2, seed=61), uuid.uuid4().hex)

    assert storage_of_parts(fresh.client) == {("events", "Packed"), ("sessions", "Packed")}


async def test_the_packed_parts_migration_keeps_every_replay_and_summary_identical(
    store_before_packed_parts: ClickHouseStore,
) -> None:
    old = store_before_packed_parts
    batch = envelopes("packed-upgrade", sessions=4, seed=62)
    half = len(batch) // 2
    await insert_envelopes(old, batch[:half], uuid.uuid4().hex)
    sessions = sorted({e.session_id for e in batch})
    assert storage_of_parts(old.client) == {("events", "Full"), ("sessions", "Full")}

    assert run_migrations(old.client) == [6]
    await insert_envelopes(old, batch[half:], uuid.uuid4().hex)
    # Metadata only: the old parts stay as they are, the new ones are Packed.
    assert storage_of_parts(old.client) == {
        ("events", "Full"),
        ("events", "Packed"),
        ("sessions", "Full"),
        ("sessions", "Packed"),
    }
    before = (
        await replays(old, "packed-upgrade", sessions),
        await summaries(old, "packed-upgrade"),
    )

    old.client.command("OPTIMIZE TABLE events FINAL")  # Full and Packed parts merged
    old.client.command("OPTIMIZE TABLE sessions FINAL")

    after = (await replays(old, "packed-upgrade", sessions), await summaries(old, "packed-upgrade"))
    assert after == before
    assert all(replay for replay in after[0]) and len(after[1]) == len(sessions)


async def test_a_retried_insert_into_packed_parts_is_dropped_by_its_token(
    fresh_store: ClickHouseStore,
) -> None:
    fresh = fresh_store
    batch = envelopes("packed-retry", sessions=2, seed=63)
    token = uuid.uuid4().hex
    await insert_envelopes(fresh, batch, token)
    await insert_envelopes(fresh, batch, token)

    rows = await fresh.query("SELECT count() FROM events WHERE site_id = 'packed-retry'")
    assert rows.result_rows == [(sum(len(e.events) for e in batch),)]


async def test_erasing_a_session_stored_in_packed_parts_removes_only_it(
    fresh_store: ClickHouseStore,
) -> None:
    fresh = fresh_store
    batch = envelopes("packed-erase", sessions=2, seed=64)
    await insert_envelopes(fresh, batch, uuid.uuid4().hex)
    gone, kept = sorted({e.session_id for e in batch})
    kept_before = await replays(fresh, "packed-erase", [kept])

    await fresh.erase("packed-erase", session_id=gone)

    assert await replays(fresh, "packed-erase", [gone]) == [b""]
    assert await replays(fresh, "packed-erase", [kept]) == kept_before
    assert [row[0] for row in await summaries(fresh, "packed-erase")] == [kept]
