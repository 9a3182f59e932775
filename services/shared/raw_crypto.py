"""Sealing ``recordings.raw`` values: the value format, data keys and key-encryption keys.

Pure functions over bytes (no Kafka, no clock); the key lifecycle on Kafka is in
:mod:`services.shared.keyring`. The primitives are the ``cryptography`` package's
AES-256-GCM; nothing here is hand-rolled beyond laying out bytes.

A sealed value is::

    MAGIC (4) | flags (1) | data key id (16) | nonce (12) | AES-256-GCM ciphertext + tag

with the associated data ``MAGIC | flags | key id | Kafka message key``: a value
moved to another session's key, or its header edited, does not open. ``flags``
bit 0 says the plaintext was lz4-compressed before sealing (ciphertext does not
compress, so compression has to happen first). An envelope in clear starts with
``{``, so a sealed value is never mistaken for one. docs/security.md has the why.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.shared.envelope import EnvelopeError

MAGIC = b"RPS1"
FLAG_LZ4 = 0x01
KEY_ID_BYTES = 16
NONCE_BYTES = 12
SECRET_BYTES = 32  # AES-256
HEADER_BYTES = len(MAGIC) + 1 + KEY_ID_BYTES
TAG_BYTES = 16
# A sealed value claiming a larger plaintext is refused before decompressing
# (the claim is only authenticated once decrypted, and lz4 states it up front).
MAX_PLAINTEXT_BYTES = 64 * 1024 * 1024

# Why the masker could not read a raw value: the DLQ reason and the metric label.
NOT_ENCRYPTED = "not_encrypted"
UNKNOWN_FORMAT = "unknown_format"
UNKNOWN_DATA_KEY = "unknown_data_key"
KEY_DESTROYED = "key_destroyed"
KEK_MISSING = "kek_missing"
BAD_CIPHERTEXT = "bad_ciphertext"

_DEK_AAD = b"replaypipe data key v1"


class RawValueUnreadable(EnvelopeError):
    """A ``recordings.raw`` value the masker cannot open; ``reason`` is one of the codes above.

    An :class:`EnvelopeError`, so the masker treats it like any unreadable
    message: a pointer to it goes to the DLQ, never the value.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KekError(ValueError):
    """The key-encryption keys cannot be loaded (which file, and what to do)."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """One data key (DEK): a random AES-256 key with a random 16-byte id."""

    key_id: bytes
    secret: bytes = field(repr=False)
    created_at_ms: int
    aead: AESGCM = field(repr=False, compare=False)

    @classmethod
    def create(cls, created_at_ms: int) -> DataKey:
        """A new random data key."""
        return cls.of(os.urandom(KEY_ID_BYTES), AESGCM.generate_key(256), created_at_ms)

    @classmethod
    def of(cls, key_id: bytes, secret: bytes, created_at_ms: int) -> DataKey:
        """A data key from its parts (e.g. just unwrapped)."""
        return cls(key_id, secret, created_at_ms, AESGCM(secret))

    @property
    def hex_id(self) -> str:
        """The id as written on the keys topic and in logs (not secret)."""
        return self.key_id.hex()


def seal(key: DataKey, message_key: bytes, value: bytes, *, compress: bool = False) -> bytes:
    """Seal one raw value for ``message_key`` (the Kafka key ``site:session``)."""
    flags = FLAG_LZ4 if compress else 0
    header = MAGIC + bytes((flags,)) + key.key_id
    plaintext = bytes(cramjam.lz4.compress_block(value)) if compress else value
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + key.aead.encrypt(nonce, plaintext, header + message_key)


def is_sealed(value: bytes) -> bool:
    """Whether ``value`` is in the sealed format (an envelope in clear is JSON)."""
    return value.startswith(MAGIC)


def sealed_key_id(value: bytes) -> bytes:
    """The data key id a sealed value names; raises :class:`RawValueUnreadable`."""
    if not is_sealed(value):
        raise RawValueUnreadable(NOT_ENCRYPTED)
    if len(value) < HEADER_BYTES + NONCE_BYTES + TAG_BYTES:
        raise RawValueUnreadable(BAD_CIPHERTEXT)
    return value[len(MAGIC) + 1 : HEADER_BYTES]


def open_sealed(key: DataKey, message_key: bytes, value: bytes) -> bytes:
    """The plaintext of a sealed value; raises :class:`RawValueUnreadable` (``bad_ciphertext``)."""
    if sealed_key_id(value) != key.key_id:
        raise RawValueUnreadable(BAD_CIPHERTEXT)
    header = value[:HEADER_BYTES]
    flags = header[len(MAGIC)]
    if flags & ~FLAG_LZ4:
        raise RawValueUnreadable(UNKNOWN_FORMAT)
    nonce = value[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    try:
        plaintext = key.aead.decrypt(
            nonce, value[HEADER_BYTES + NONCE_BYTES :], header + message_key
        )
    except InvalidTag:
        raise RawValueUnreadable(BAD_CIPHERTEXT) from None
    if not flags & FLAG_LZ4:
        return plaintext
    if len(plaintext) < 4 or int.from_bytes(plaintext[:4], "little") > MAX_PLAINTEXT_BYTES:
        raise RawValueUnreadable(BAD_CIPHERTEXT)
    try:
        return bytes(cramjam.lz4.decompress_block(plaintext))
    except cramjam.DecompressionError:
        raise RawValueUnreadable(BAD_CIPHERTEXT) from None


# --- key-encryption keys ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KekSet:
    """The key-encryption keys (KEKs) a process holds: id -> 32-byte secret.

    The greatest id wraps new data keys; every one unwraps. Name KEKs so they
    sort by age (``replaypipe keys new-kek`` writes ``kek-<UTC time>``).
    """

    secrets: dict[str, bytes] = field(repr=False)

    @property
    def current_id(self) -> str:
        """The id of the KEK that wraps new data keys."""
        return max(self.secrets)

    @classmethod
    def load_dir(cls, directory: str | Path) -> KekSet:
        """Every KEK file in ``directory`` (id = file name; dot files are skipped).

        A file holds the 32-byte key base64-encoded (as ``replaypipe keys new-kek``
        writes it, and as a Kubernetes Secret key mounted as a file holds it).
        """
        path = Path(directory)
        if not path.is_dir():
            raise KekError(
                f"RAW_KEK_DIR {path} is not a directory; create a key-encryption key with "
                f"`replaypipe keys new-kek {path}` (docs/security.md)"
            )
        secrets: dict[str, bytes] = {}
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue  # Kubernetes Secret volumes hold ..data links next to the keys
            secrets[entry.name] = _kek_secret(entry)
        if not secrets:
            raise KekError(
                f"RAW_KEK_DIR {path} holds no key-encryption key; create one with "
                f"`replaypipe keys new-kek {path}` (docs/security.md)"
            )
        return cls(secrets)

    def wrap(self, key: DataKey) -> tuple[str, bytes]:
        """Wrap a data key with the current KEK: ``(kek id, nonce | ciphertext)``."""
        kek_id = self.current_id
        nonce = os.urandom(NONCE_BYTES)
        aad = _wrap_aad(key.key_id, kek_id, key.created_at_ms)
        return kek_id, nonce + AESGCM(self.secrets[kek_id]).encrypt(nonce, key.secret, aad)

    def unwrap(self, key_id: bytes, kek_id: str, wrapped: bytes, created_at_ms: int) -> DataKey:
        """The data key of a wrapped record; raises :class:`RawValueUnreadable`.

        ``kek_missing`` when this process does not hold that KEK (removed too early),
        ``bad_ciphertext`` when the record does not open (edited id, age or key).
        """
        secret = self.secrets.get(kek_id)
        if secret is None:
            raise RawValueUnreadable(KEK_MISSING)
        aad = _wrap_aad(key_id, kek_id, created_at_ms)
        try:
            dek = AESGCM(secret).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise RawValueUnreadable(BAD_CIPHERTEXT) from None
        return DataKey.of(key_id, dek, created_at_ms)


def new_kek_secret_text() -> bytes:
    """A new random KEK in the file format (base64 of 32 random bytes, newline)."""
    return base64.b64encode(AESGCM.generate_key(256)) + b"\n"


def _kek_secret(path: Path) -> bytes:
    try:
        secret = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != SECRET_BYTES:
        # Never echo the file's content: it is (or is meant to be) a secret.
        raise KekError(
            f"key-encryption key file {path} must hold {SECRET_BYTES} random bytes, "
            "base64-encoded (`replaypipe keys new-kek` writes one)"
        )
    return secret


def _wrap_aad(key_id: bytes, kek_id: str, created_at_ms: int) -> bytes:
    # The id and the creation time are bound to the wrapped key: a record copied
    # under another id, or made to look younger (to outlive its destruction), fails.
    return b"|".join((_DEK_AAD, key_id, kek_id.encode(), str(created_at_ms).encode()))
