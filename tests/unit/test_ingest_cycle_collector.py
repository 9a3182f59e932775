"""The gateway pauses Python's cycle collector only around a synchronous step."""

from __future__ import annotations

import gc

import pytest

from services.ingest.app import CycleCollectorPaused
from services.ingest.batch import Rejection


def test_collector_is_back_on_after_the_step_even_when_it_rejects() -> None:
    assert gc.isenabled()
    with pytest.raises(Rejection), CycleCollectorPaused():
        assert not gc.isenabled()
        raise Rejection(400, "invalid_json", "Body is not valid JSON.")
    assert gc.isenabled()


def test_collector_stays_off_if_it_was_off_before() -> None:
    gc.disable()
    try:
        with CycleCollectorPaused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
