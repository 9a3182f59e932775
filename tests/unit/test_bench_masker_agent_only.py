"""The masker benchmark's stand-in for ``mask_message`` (bench/masker_agent_only.py)."""

from __future__ import annotations

import inspect

from bench.masker_agent_only import stand_in
from services.masker import app
from services.masker.message import mask_message
from services.shared.site_settings import SiteRegistry


def test_the_stand_in_publishes_the_raw_value_and_stores_no_state_for_zero() -> None:
    batch = stand_in(0)(b'{"v":1}', None, SiteRegistry([]), partition=0, offset=7)
    assert batch.value == b'{"v":1}'
    assert batch.state is None
    assert batch.counts == {} and batch.dropped == 0


def test_the_stand_in_stores_a_state_of_the_size_asked_for_every_batch() -> None:
    mask = stand_in(381)
    for offset in range(3):
        batch = mask(b"{}", b"old", SiteRegistry([]), partition=0, offset=offset)
        assert batch.state is not None and len(batch.state) == 381


def test_the_stand_in_replaces_what_the_agent_calls() -> None:
    # the agent calls the module-level name with mask_message's parameters
    assert app.mask_message is mask_message
    names = set(inspect.signature(mask_message).parameters)
    assert {"raw_value", "state_value", "registry", "partition", "offset"} <= names
