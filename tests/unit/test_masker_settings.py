"""The masker's environment settings reach the masking rules."""

from __future__ import annotations

import pytest

from services.masker.message import mask_message
from services.masker.settings import MaskerSettings
from services.shared.envelope import BatchEnvelope
from services.shared.site_settings import SiteRegistry, SiteSettings


def _envelope_with_field(name: str, typed: str) -> bytes:
    field = {
        "type": 2,
        "id": 5,
        "tagName": "input",
        "attributes": {"type": "text", "name": name},
        "childNodes": [],
    }
    body = {"type": 2, "id": 3, "tagName": "body", "attributes": {}, "childNodes": [field]}
    snapshot = {
        "type": 2,
        "timestamp": 1,
        "data": {
            "node": {
                "type": 0,
                "id": 1,
                "childNodes": [
                    {"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [body]}
                ],
            },
            "initialOffset": {"left": 0, "top": 0},
        },
    }
    typing = {
        "type": 3,
        "timestamp": 2,
        "data": {"source": 5, "id": 5, "text": typed, "isChecked": False},
    }
    return BatchEnvelope(
        site_id="s",
        session_id="x",
        window_id="w",
        visitor_id="v",
        seq=0,
        received_at_ms=1,
        events=[snapshot, typing],
    ).to_json()


def test_sensitive_names_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKER_SENSITIVE_NAMES", "loyaltyno, membership")
    assert MaskerSettings.from_env().sensitive_names == ("loyaltyno", "membership")


def test_a_configured_sensitive_name_masks_the_field_even_when_inputs_are_recorded() -> None:
    registry = SiteRegistry([SiteSettings(site_id="s", record_inputs=True)])
    raw = _envelope_with_field("loyaltyno", "LOYAL123456")

    default = mask_message(raw, None, registry, partition=0, offset=0)
    configured = mask_message(
        raw, None, registry, partition=0, offset=0, sensitive_names=("loyaltyno",)
    )

    assert default.value is not None and configured.value is not None
    assert b"LOYAL123456" in default.value
    assert b"LOYAL123456" not in configured.value


def test_dlq_record_for_an_unreadable_raw_message_points_at_it_without_its_content() -> None:
    import orjson

    from services.masker.message import dlq_pointer

    value = dlq_pointer("recordings.raw", 2, 41, "value is not JSON")

    assert orjson.loads(value) == {
        "stage": "masker",
        "topic": "recordings.raw",
        "partition": 2,
        "offset": 41,
        "reason": "value is not JSON",
    }


def test_the_envelope_page_url_is_scrubbed_like_a_meta_href() -> None:
    from services.shared.envelope import BatchEnvelope

    registry = SiteRegistry([SiteSettings(site_id="s")])
    raw = BatchEnvelope(
        site_id="s",
        session_id="x",
        window_id="w",
        visitor_id="v",
        seq=0,
        received_at_ms=1,
        events=[{"type": 3, "timestamp": 1, "data": {"source": 1, "positions": []}}],
        page_url="https://shop.example/reset?token=T0KEN-S3CRET&to=jane.doe@mail.example",
    ).to_json()

    masked = mask_message(raw, None, registry, partition=0, offset=0)

    assert masked.value is not None
    assert b"T0KEN-S3CRET" not in masked.value
    assert b"jane.doe@mail.example" not in masked.value
    assert b"https://shop.example/reset?token=" in masked.value


def test_standby_replicas_default_and_reach_the_faust_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.masker.app import faust_app

    monkeypatch.setenv("MASKER_STANDBY_REPLICAS", "1")
    assert faust_app(MaskerSettings.from_env()).conf.table_standby_replicas == 1
    monkeypatch.delenv("MASKER_STANDBY_REPLICAS")
    assert MaskerSettings.from_env().standby_replicas == MaskerSettings().standby_replicas


def test_a_negative_standby_count_is_refused_naming_the_variable() -> None:
    from services.shared.env import SettingError

    with pytest.raises(SettingError, match="MASKER_STANDBY_REPLICAS"):
        MaskerSettings(standby_replicas=-1)


async def test_the_worker_consumer_waits_for_the_configured_fetch_size_or_time() -> None:
    from services.masker.app import faust_app

    app = faust_app(MaskerSettings(fetch_min_bytes=65_536, fetch_max_wait_ms=80))
    thread = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    # What AIOKafkaConsumer.start() hands to its Fetcher.
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (65_536, 80)


def test_fetch_settings_out_of_range_are_refused_naming_the_variable() -> None:
    from services.shared.env import SettingError

    with pytest.raises(SettingError, match="MASKER_FETCH_MIN_BYTES"):
        MaskerSettings(fetch_min_bytes=0)
    with pytest.raises(SettingError, match="MASKER_FETCH_MAX_WAIT_MS"):
        MaskerSettings(fetch_max_wait_ms=-1)
