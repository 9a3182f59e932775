"""The event codecs migration (0005): on a fresh store and on a store that holds events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from services.sink.queries import REPLAY_SQL
from services.sink.store import ClickHouseStore, run_migrations
from tests.integration.sink_support import envelopes, insert_envelopes, store_migrated_upto

pytestmark = pytest.mark.integration

CHOSEN_CODECS = {
    "session_id": "CODEC(ZSTD(3))",
    "window_id": "CODEC(ZSTD(3))",
    "visitor_id": "CODEC(ZSTD(3))",
    "seq": "CODEC(Delta(4), ZSTD(1))",
    "idx": "CODEC(ZSTD(1))",
    "ts": "CODEC(DoubleDelta, ZSTD(1))",
    "received_at": "CODEC(Delta(8), ZSTD(1))",
    "type": "CODEC(ZSTD(1))",
    "source": "CODEC(ZSTD(1))",
    "data": "CODEC(ZSTD(3))",
    "size": "CODEC(ZSTD(1))",
    "retention_days": "CODEC(ZSTD(1))",
}


def codecs(client: Any) -> dict[str, str]:
    result = client.query(
        "SELECT name, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'events'"
    )
    return {name: codec for name, codec in result.result_rows if name in CHOSEN_CODECS}


@pytest.fixture
def store_before_codecs(store: ClickHouseStore) -> Iterator[ClickHouseStore]:
    """A store migrated only up to 0004."""
    with store_migrated_upto(store, 4) as old:
        yield old


async def replay(store: ClickHouseStore, site: str, session: str) -> bytes:
    return await store.raw_query(REPLAY_SQL, parameters={"site": site, "session": session})


def test_a_fresh_store_has_the_chosen_event_codecs(store: ClickHouseStore) -> None:
    assert codecs(store.client) == CHOSEN_CODECS


async def test_the_codecs_migration_on_a_store_with_events_keeps_every_replay_identical(
    store_before_codecs: ClickHouseStore,
) -> None:
    old = store_before_codecs
    batch = envelopes("codecs", sessions=3, seed=16)
    await insert_envelopes(old, batch, uuid.uuid4().hex)
    sessions = sorted({e.session_id for e in batch})
    before = [await replay(old, "codecs", s) for s in sessions]

    assert run_migrations(old.client, upto=5) == [5]

    assert codecs(old.client) == CHOSEN_CODECS
    # Metadata only: nothing rewrites the stored parts until they merge.
    assert old.client.query(
        "SELECT count() FROM system.mutations WHERE database = currentDatabase()"
    ).result_rows == [(0,)]
    assert [await replay(old, "codecs", s) for s in sessions] == before
    old.client.command("OPTIMIZE TABLE events FINAL")  # old parts rewritten with the codecs
    assert [await replay(old, "codecs", s) for s in sessions] == before


async def test_events_stored_across_the_codecs_migration_replay_in_order(
    store_before_codecs: ClickHouseStore,
) -> None:
    old = store_before_codecs
    batch = envelopes("codecs-across", sessions=2, seed=17)
    half = len(batch) // 2
    await insert_envelopes(old, batch[:half], uuid.uuid4().hex)
    run_migrations(old.client)
    await insert_envelopes(old, batch[half:], uuid.uuid4().hex)
    old.client.command("OPTIMIZE TABLE events FINAL")  # parts of both codecs merged into one

    for session in {e.session_id for e in batch}:
        sent = [event for e in batch if e.session_id == session for event in e.events]
        stored = [
            orjson.loads(line)
            for line in (await replay(old, "codecs-across", session)).splitlines()
        ]
        assert stored == sorted(sent, key=lambda event: event["timestamp"])
