"""Ingest settings from the environment: the event loop and the producer linger."""

from __future__ import annotations

import pytest

from services.ingest.settings import IngestSettings
from services.shared.env import SettingError


def test_defaults_are_uvloop_and_a_one_millisecond_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_EVENT_LOOP", raising=False)
    monkeypatch.delenv("INGEST_LINGER_MS", raising=False)
    settings = IngestSettings.from_env()
    assert (settings.event_loop, settings.linger_ms) == ("uvloop", 1)


def test_the_standard_loop_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_EVENT_LOOP", "asyncio")
    assert IngestSettings.from_env().event_loop == "asyncio"


def test_an_unknown_event_loop_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_EVENT_LOOP", "trio")
    with pytest.raises(SettingError, match="INGEST_EVENT_LOOP must be uvloop or asyncio"):
        IngestSettings.from_env()
