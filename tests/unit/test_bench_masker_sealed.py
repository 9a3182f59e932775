"""The masker benchmark's in-process opening of sealed raw values (bench/masker_sealed.py)."""

from __future__ import annotations

import os

import pytest

from bench.masker_sealed import sealed_opener
from services.shared.keyring import Keyring, WrappedKey
from services.shared.raw_crypto import (
    BAD_CIPHERTEXT,
    UNKNOWN_DATA_KEY,
    DataKey,
    KekSet,
    RawValueUnreadable,
    seal,
)

ENVELOPE = b'{"v":1,"site_id":"demo","events":[]}'
KEY = b"demo:session-1"


def keyring_with(key: DataKey) -> Keyring:
    keks = KekSet({"kek-1": os.urandom(32)})
    kek_id, wrapped = keks.wrap(key)
    ring = Keyring(keks, destroy_after_s=3600)
    record = WrappedKey(key.key_id, kek_id, wrapped, key.created_at_ms)
    ring.apply(key.hex_id.encode(), record.to_json(), now_ms=key.created_at_ms)
    return ring


@pytest.mark.parametrize("compress", [False, True])
def test_a_value_sealed_with_a_published_key_opens_to_the_envelope(compress: bool) -> None:
    key = DataKey.create(1000)
    open_value = sealed_opener(keyring_with(key), at_ms=2000)
    assert open_value(KEY, seal(key, KEY, ENVELOPE, compress=compress)) == ENVELOPE


def test_a_value_sealed_with_an_unpublished_key_is_unreadable_as_in_the_masker() -> None:
    open_value = sealed_opener(keyring_with(DataKey.create(1000)), at_ms=2000)
    with pytest.raises(RawValueUnreadable) as caught:
        open_value(KEY, seal(DataKey.create(1000), KEY, ENVELOPE))
    assert caught.value.reason == UNKNOWN_DATA_KEY


def test_a_value_opened_under_another_session_key_is_unreadable() -> None:
    key = DataKey.create(1000)
    open_value = sealed_opener(keyring_with(key), at_ms=2000)
    with pytest.raises(RawValueUnreadable) as caught:
        open_value(b"demo:session-2", seal(key, KEY, ENVELOPE))
    assert caught.value.reason == BAD_CIPHERTEXT
