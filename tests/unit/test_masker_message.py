"""Specifications of one raw message to one masked value (``mask_message``), no broker."""

from __future__ import annotations

import orjson

from services.masker.message import mask_message
from services.shared.site_settings import SiteRegistry, SiteSettings
from tests.unit.masker_pages import (
    CITY_INPUT_ID,
    HEADING_TEXT_ID,
    small_page,
    typed_values,
    typing_batch,
)


def test_replayed_batch_older_than_the_stored_state_is_masked_from_empty_state() -> None:
    registry = SiteRegistry([SiteSettings(site_id="replay", record_inputs=True)])
    snapshot = mask_message(
        small_page("replay", "s1").to_json(), None, registry, partition=0, offset=10
    )
    typing = typing_batch("replay", "s1", 1, "Prague", "pw").to_json()

    fresh = mask_message(typing, snapshot.state, registry, partition=0, offset=11)
    # Offset 9 is before the batch that built the stored state: a replay after a crash.
    replayed = mask_message(typing, snapshot.state, registry, partition=0, offset=9)

    assert fresh.value is not None and replayed.value is not None
    assert typed_values(orjson.loads(fresh.value))[HEADING_TEXT_ID] == "Welcome"
    assert typed_values(orjson.loads(replayed.value))[HEADING_TEXT_ID] == "*******"
    assert typed_values(orjson.loads(replayed.value))[CITY_INPUT_ID] == "******"
    assert replayed.state is None  # the stored (newer) state is kept


def test_an_unreadable_stored_state_counts_as_none_and_the_batch_is_masked_conservatively() -> None:
    registry = SiteRegistry([SiteSettings(site_id="corrupt", record_inputs=True)])
    typing = typing_batch("corrupt", "s1", 1, "Prague", "pw").to_json()

    masked = mask_message(typing, b"\x00not json{", registry, partition=0, offset=3)

    assert masked.value is not None
    assert typed_values(orjson.loads(masked.value))[CITY_INPUT_ID] == "******"
    assert masked.state is not None  # a fresh state replaces the unreadable one
