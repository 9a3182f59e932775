"""TOTP seeds at rest: `console.state` holds them sealed (AES-GCM), replicas hold them in clear."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pyotp
import pytest

from services.console.settings import ConsoleSettings
from services.console.state import (
    Account,
    ConsoleState,
    StateRecordError,
    TotpSealer,
    record_key,
    record_value,
)
from services.shared.env import SettingError

SEED = pyotp.random_base32()
EMAIL = "ann@example.test"


def sealer() -> TotpSealer:
    return TotpSealer(os.urandom(32))


def enrolled(email: str = EMAIL) -> Account:
    return Account(email=email, password_hash="$argon2id$…", totp_secret=SEED)


def test_the_account_record_holds_no_base32_totp_seed() -> None:
    record = record_value(enrolled(), sealer())
    assert SEED.encode() not in record
    assert b'"totp_secret":"aesgcm1:' in record


def test_a_sealed_seed_opens_into_the_account_a_replica_checks_codes_with() -> None:
    key = sealer()
    state = ConsoleState(totp_sealer=key)
    state.apply(record_key(enrolled()), record_value(enrolled(), key), 1)
    account = state.account(EMAIL)
    assert account is not None and account.totp_secret == SEED
    assert pyotp.TOTP(account.totp_secret).verify(pyotp.TOTP(SEED).now())


def test_a_seed_written_in_clear_before_is_still_read_and_sealed_at_the_next_write() -> None:
    key = sealer()
    state = ConsoleState(totp_sealer=key)
    state.apply(record_key(enrolled()), record_value(enrolled()), 1)  # an older record
    account = state.account(EMAIL)
    assert account is not None and account.totp_secret == SEED
    assert SEED.encode() not in record_value(account, key)


def test_sealing_twice_gives_different_records_of_the_same_seed() -> None:
    key = sealer()
    first, second = record_value(enrolled(), key), record_value(enrolled(), key)
    assert first != second  # a fresh nonce each time


def test_a_sealed_seed_copied_into_another_account_does_not_open() -> None:
    key = sealer()
    moved = record_value(enrolled(), key).replace(EMAIL.encode(), b"eve@example.test")
    state = ConsoleState(totp_sealer=key)
    with pytest.raises(StateRecordError, match="does not open"):
        state.apply("account:eve@example.test", moved, 1)


def test_a_seed_sealed_with_another_key_is_refused_naming_the_setting() -> None:
    state = ConsoleState(totp_sealer=sealer())
    with pytest.raises(StateRecordError, match="CONSOLE_TOTP_KEY_FILE"):
        state.apply(record_key(enrolled()), record_value(enrolled(), sealer()), 1)


def test_a_process_without_the_key_keeps_the_seed_sealed_and_writes_it_back_as_is() -> None:
    record = record_value(enrolled(), sealer())
    state = ConsoleState()  # e.g. `replaypipe users create`: checks no code
    state.apply(record_key(enrolled()), record, 1)
    account = state.account(EMAIL)
    assert account is not None and account.totp_secret.startswith("aesgcm1:")
    assert record_value(account) == record


def test_an_account_without_two_factor_is_stored_as_before() -> None:
    account = Account(email=EMAIL, password_hash="h")
    assert record_value(account, sealer()) == record_value(account)


def test_the_sealing_key_comes_from_its_file(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "totp-key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    settings = ConsoleSettings(totp_key_file=str(path), secret_key="also set")
    assert settings.totp_sealer() == TotpSealer(key)


def test_a_key_file_without_32_base64_bytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "totp-key"
    path.write_text("not-a-key")
    with pytest.raises(SettingError, match="CONSOLE_TOTP_KEY_FILE must hold base64 of 32"):
        ConsoleSettings(totp_key_file=str(path)).totp_sealer()


def test_without_a_key_file_the_key_is_derived_from_the_secret_key_and_is_not_it() -> None:
    derived = ConsoleSettings(secret_key="k" * 43).totp_sealer()
    assert derived is not None and derived == ConsoleSettings(secret_key="k" * 43).totp_sealer()
    assert derived != ConsoleSettings(secret_key="j" * 43).totp_sealer()
    assert derived.key != ("k" * 43).encode()[:32]


def test_without_any_console_key_seeds_are_not_sealed() -> None:
    assert ConsoleSettings().totp_sealer() is None
