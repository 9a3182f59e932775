"""The sealed format of recordings.raw values, data keys and key-encryption keys (pure)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from services.shared.env import SettingError
from services.shared.envelope import EnvelopeError
from services.shared.keyring import (
    Keyring,
    RawEncryptionSettings,
    WrappedKey,
    keys_command,
    new_kek_file,
    with_local_raw_encryption,
)
from services.shared.raw_crypto import (
    BAD_CIPHERTEXT,
    KEK_MISSING,
    KEY_DESTROYED,
    NOT_ENCRYPTED,
    UNKNOWN_DATA_KEY,
    DataKey,
    KekError,
    KekSet,
    RawValueUnreadable,
    is_sealed,
    open_sealed,
    seal,
    sealed_key_id,
)

ENVELOPE = b'{"v":1,"site_id":"demo","events":[{"type":3,"data":{"text":"hunter2-secret"}}]}'
KEY = b"demo:session-1"
DAY_MS = 86_400_000


def kek_set(*names: str) -> KekSet:
    return KekSet({name: os.urandom(32) for name in names})


def reason_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(RawValueUnreadable) as caught:
        call()
    return caught.value.reason


@pytest.mark.parametrize("compress", [True, False])
def test_a_sealed_value_opens_to_the_same_bytes(compress: bool) -> None:
    key = DataKey.create(0)
    sealed = seal(key, KEY, ENVELOPE, compress=compress)
    assert open_sealed(key, KEY, sealed) == ENVELOPE


def test_a_sealed_value_shows_nothing_of_the_envelope() -> None:
    sealed = seal(DataKey.create(0), KEY, ENVELOPE)
    assert is_sealed(sealed) and not is_sealed(ENVELOPE)
    assert b"hunter2" not in sealed and b"site_id" not in sealed and b"demo" not in sealed


def test_the_same_value_seals_differently_each_time() -> None:
    key = DataKey.create(0)
    assert seal(key, KEY, ENVELOPE) != seal(key, KEY, ENVELOPE)


def test_a_sealed_value_names_its_data_key() -> None:
    key = DataKey.create(0)
    assert sealed_key_id(seal(key, KEY, ENVELOPE)) == key.key_id


def test_a_value_moved_to_another_session_key_does_not_open() -> None:
    key = DataKey.create(0)
    sealed = seal(key, KEY, ENVELOPE)
    assert reason_of(lambda: open_sealed(key, b"demo:session-2", sealed)) == BAD_CIPHERTEXT


def test_a_flipped_ciphertext_byte_does_not_open() -> None:
    key = DataKey.create(0)
    sealed = bytearray(seal(key, KEY, ENVELOPE))
    sealed[-1] ^= 1
    assert reason_of(lambda: open_sealed(key, KEY, bytes(sealed))) == BAD_CIPHERTEXT


def test_an_edited_header_does_not_open() -> None:
    key = DataKey.create(0)
    sealed = bytearray(seal(key, KEY, ENVELOPE, compress=True))
    sealed[4] = 0  # claims "not compressed"
    assert reason_of(lambda: open_sealed(key, KEY, bytes(sealed))) == BAD_CIPHERTEXT


def test_another_data_key_does_not_open_a_value() -> None:
    sealed = seal(DataKey.create(0), KEY, ENVELOPE)
    assert reason_of(lambda: open_sealed(DataKey.create(0), KEY, sealed)) == BAD_CIPHERTEXT


def test_an_envelope_in_clear_is_not_a_sealed_value() -> None:
    assert reason_of(lambda: sealed_key_id(ENVELOPE)) == NOT_ENCRYPTED


def test_an_unreadable_value_is_an_envelope_error_so_the_masker_dlqs_a_pointer() -> None:
    assert issubclass(RawValueUnreadable, EnvelopeError)
    assert str(RawValueUnreadable(KEY_DESTROYED)) == KEY_DESTROYED


def test_a_wrapped_data_key_unwraps_with_any_held_kek() -> None:
    keks = kek_set("kek-1", "kek-2")
    key = DataKey.create(123)
    kek_id, wrapped = keks.wrap(key)
    assert kek_id == "kek-2"  # the greatest name wraps
    unwrapped = keks.unwrap(key.key_id, kek_id, wrapped, 123)
    assert unwrapped.secret == key.secret
    sealed = seal(key, KEY, ENVELOPE)
    assert open_sealed(unwrapped, KEY, sealed) == ENVELOPE


def test_a_wrapped_key_made_to_look_younger_does_not_unwrap() -> None:
    keks = kek_set("kek-1")
    key = DataKey.create(123)
    kek_id, wrapped = keks.wrap(key)
    assert reason_of(lambda: keks.unwrap(key.key_id, kek_id, wrapped, 999)) == BAD_CIPHERTEXT


def test_a_wrapped_key_under_another_id_does_not_unwrap() -> None:
    keks = kek_set("kek-1")
    key = DataKey.create(123)
    kek_id, wrapped = keks.wrap(key)
    assert reason_of(lambda: keks.unwrap(os.urandom(16), kek_id, wrapped, 123)) == BAD_CIPHERTEXT


def test_a_key_wrapped_by_a_removed_kek_is_reported_as_kek_missing() -> None:
    key = DataKey.create(123)
    kek_id, wrapped = kek_set("kek-old").wrap(key)
    keks = kek_set("kek-new")
    assert reason_of(lambda: keks.unwrap(key.key_id, kek_id, wrapped, 123)) == KEK_MISSING


def test_new_kek_files_are_private_and_load_as_a_set(tmp_path: Path) -> None:
    first = new_kek_file(tmp_path / "keys")
    second = new_kek_file(tmp_path / "keys")
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    keks = KekSet.load_dir(tmp_path / "keys")
    assert set(keks.secrets) == {first.name, second.name}
    assert keks.current_id == second.name  # names sort by creation time


def test_kek_dir_skips_the_dot_entries_of_a_kubernetes_secret_volume(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "..2026_12_01").write_text("not a key")
    (tmp_path / "kek-1").write_bytes(base64.b64encode(os.urandom(32)))
    assert list(KekSet.load_dir(tmp_path).secrets) == ["kek-1"]


def test_a_missing_or_empty_kek_dir_says_how_to_make_a_kek(tmp_path: Path) -> None:
    for directory in (tmp_path / "absent", tmp_path):
        with pytest.raises(KekError, match="replaypipe keys new-kek"):
            KekSet.load_dir(directory)


def test_a_malformed_kek_file_is_named_without_echoing_its_content(tmp_path: Path) -> None:
    (tmp_path / "kek-1").write_text("short-secret-value")
    with pytest.raises(KekError) as caught:
        KekSet.load_dir(tmp_path)
    assert "kek-1" in str(caught.value) and "short-secret-value" not in str(caught.value)


def test_keyring_opens_a_published_key_and_reports_unknown_ones() -> None:
    keks = kek_set("kek-1")
    key = DataKey.create(1000)
    kek_id, wrapped = keks.wrap(key)
    record = WrappedKey(key.key_id, kek_id, wrapped, key.created_at_ms)
    ring = Keyring(keks, destroy_after_s=3600)
    ring.apply(key.hex_id.encode(), record.to_json(), now_ms=2000)
    assert ring.get(key.key_id, now_ms=2000).secret == key.secret
    assert reason_of(lambda: ring.get(os.urandom(16), now_ms=2000)) == UNKNOWN_DATA_KEY


def test_keyring_forgets_a_key_past_its_age_and_on_a_tombstone() -> None:
    keks = kek_set("kek-1")
    ring = Keyring(keks, destroy_after_s=86_400)
    old, young = DataKey.create(0), DataKey.create(DAY_MS)
    for key in (old, young):
        kek_id, wrapped = keks.wrap(key)
        record = WrappedKey(key.key_id, kek_id, wrapped, key.created_at_ms)
        ring.apply(key.hex_id.encode(), record.to_json(), now_ms=DAY_MS)
    now = DAY_MS + 1000
    assert reason_of(lambda: ring.get(old.key_id, now)) == KEY_DESTROYED
    assert ring.expire(now) == [old.key_id]
    assert reason_of(lambda: ring.get(old.key_id, now)) == KEY_DESTROYED
    ring.apply(young.hex_id.encode(), None, now)  # tombstone
    assert reason_of(lambda: ring.get(young.key_id, now)) == KEY_DESTROYED


def test_settings_refuse_a_destruction_age_shorter_than_the_rotation() -> None:
    with pytest.raises(SettingError, match="RAW_KEY_DESTROY_AFTER_S"):
        RawEncryptionSettings(mode="on", rotation_s=3600, destroy_after_s=60)
    with pytest.raises(SettingError, match="RAW_ENCRYPTION"):
        RawEncryptionSettings(mode="yes")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAW_ENCRYPTION", "required")
    monkeypatch.setenv("RAW_KEK_DIR", "/etc/replaypipe/kek")
    monkeypatch.setenv("RAW_KEY_ROTATION_S", "60")
    settings = RawEncryptionSettings.from_env()
    assert (settings.mode, settings.kek_dir, settings.rotation_s) == (
        "required",
        "/etc/replaypipe/kek",
        60.0,
    )
    assert settings.destroy_after_s == 8 * 86_400


def test_the_local_stack_makes_a_kek_once_and_turns_sealing_on(tmp_path: Path) -> None:
    env = with_local_raw_encryption({}, tmp_path)
    assert env["RAW_ENCRYPTION"] == "on" and env["RAW_KEK_DIR"] == str(tmp_path / "keys")
    first = sorted((tmp_path / "keys").iterdir())
    with_local_raw_encryption({}, tmp_path)
    assert sorted((tmp_path / "keys").iterdir()) == first and len(first) == 1


def test_the_local_stack_leaves_an_explicit_off_alone(tmp_path: Path) -> None:
    env = with_local_raw_encryption({"RAW_ENCRYPTION": "off"}, tmp_path)
    assert env["RAW_ENCRYPTION"] == "off" and not (tmp_path / "keys").exists()


def test_a_key_wrapped_by_a_kek_added_later_opens_once_the_keks_are_reloaded() -> None:
    new = kek_set("kek-2")
    key = DataKey.create(1000)
    kek_id, wrapped = new.wrap(key)
    ring = Keyring(kek_set("kek-1"), destroy_after_s=3600)
    ring.apply(key.hex_id.encode(), WrappedKey(key.key_id, kek_id, wrapped, 1000).to_json(), 2000)
    assert reason_of(lambda: ring.get(key.key_id, 2000)) == KEK_MISSING
    ring.replace_keks(KekSet({**ring.keks.secrets, **new.secrets}), 2000)
    assert ring.get(key.key_id, 2000).secret == key.secret


def test_keys_new_kek_writes_a_key_and_prints_only_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys_command(["new-kek", str(tmp_path)]) == 0
    (path,) = tmp_path.iterdir()
    out = capsys.readouterr().out
    assert path.name in out and path.read_text().strip() not in out
