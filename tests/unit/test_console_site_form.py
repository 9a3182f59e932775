"""The privacy-settings form: each field validated as typed, problems shown before saving."""

from __future__ import annotations

from services.console.site_form import settings_diff, settings_from_form
from services.shared.site_settings import SiteSettings

CURRENT = SiteSettings(site_id="shop", public_keys=("pk_shop",), read_token_sha256=("ab",))


def test_record_inputs_checkbox_turns_the_smartsupp_switch_on_and_off() -> None:
    on = settings_from_form(CURRENT, {"record_inputs": "on"}).settings
    assert on is not None and on.record_inputs
    off = settings_from_form(on, {}).settings
    assert off is not None and not off.record_inputs


def test_fields_not_on_the_form_keep_their_values() -> None:
    saved = settings_from_form(CURRENT, {"record_inputs": "on"}).settings
    assert saved is not None
    assert saved.public_keys == ("pk_shop",) and saved.read_token_sha256 == ("ab",)


def test_bad_selector_is_reported_by_field_and_nothing_is_saved() -> None:
    result = settings_from_form(CURRENT, {"mask_text_selectors": ".price\ndiv[[oops"})
    assert result.settings is None
    assert list(result.problems) == ["mask_text_selectors"]
    assert "div[[oops" in result.problems["mask_text_selectors"][0]


def test_sample_rate_outside_zero_to_one_is_refused() -> None:
    result = settings_from_form(CURRENT, {"sample_rate": "1.5"})
    assert "sample_rate" in result.problems


def test_retention_must_be_whole_days() -> None:
    assert "retention_days" in settings_from_form(CURRENT, {"retention_days": "7.5"}).problems


def test_origin_with_a_path_is_refused() -> None:
    result = settings_from_form(CURRENT, {"allowed_origins": "https://shop.example/checkout"})
    assert "allowed_origins" in result.problems


def test_unknown_detector_and_consent_mode_are_refused() -> None:
    result = settings_from_form(CURRENT, {"pii_detectors": ["email", "ssn"], "consent_mode": "x"})
    assert set(result.problems) == {"pii_detectors", "consent_mode"}


def test_list_fields_take_one_value_per_line() -> None:
    saved = settings_from_form(
        CURRENT, {"block_selectors": " .ad\n\n#chat \n", "scrub_query_params": "token\nref"}
    ).settings
    assert saved is not None
    assert saved.block_selectors == (".ad", "#chat")
    assert saved.scrub_query_params == ("token", "ref")


def test_diff_lists_only_changed_fields() -> None:
    after = settings_from_form(CURRENT, {"record_inputs": "on"}).settings
    assert after is not None
    assert settings_diff(CURRENT.to_dict(), after.to_dict()) == {"record_inputs": (False, True)}
