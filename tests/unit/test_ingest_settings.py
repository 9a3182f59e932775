"""Ingest settings from the environment: the event loop and the producer."""

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


def test_producer_defaults_are_lz4_at_its_own_level_and_a_bounded_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("INGEST_COMPRESSION", "INGEST_COMPRESSION_LEVEL", "INGEST_PRODUCER_BUFFER_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = IngestSettings.from_env()
    assert (settings.compression, settings.compression_level) == ("lz4", -1)
    assert settings.producer_buffer_bytes == 256 * 1024 * 1024


def test_the_linger_may_be_a_fraction_of_a_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_LINGER_MS", "0.5")
    assert IngestSettings.from_env().linger_ms == 0.5


def test_a_producer_buffer_smaller_than_one_message_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INGEST_PRODUCER_BUFFER_BYTES", "1024")
    with pytest.raises(SettingError, match="INGEST_PRODUCER_BUFFER_BYTES"):
        IngestSettings.from_env()
