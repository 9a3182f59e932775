"""The console's state: accounts, site memberships, login sessions, API tokens, settings history.

It lives on the compacted Kafka topic ``console.state`` (one record per entity,
keyed ``<kind>:<id>``, a tombstone deletes), and every console replica follows
the topic into a :class:`ConsoleState`. This module is the pure part: record
keys and values, and how a record changes the in-memory state. Nothing here
talks to Kafka.

Secrets are never stored in clear: passwords as argon2id hashes, login session
ids and API tokens as SHA-256 of a 256-bit random value. A TOTP seed, which
the server must know to check a code, is sealed with AES-GCM by a
:class:`TotpSealer` when the console has a key (``CONSOLE_TOTP_KEY_FILE``, or
one derived from ``CONSOLE_SECRET_KEY``): the record holds the sealed seed, the
memory of a replica the clear one. Seeds written in clear before (no key then)
are still read, and sealed the next time their account is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.console.roles import ROLES, Role

ACCOUNT = "account"
MEMBER = "member"
SESSION = "session"
TOKEN = "token"
HISTORY = "history"


class StateRecordError(ValueError):
    """A ``console.state`` record this version cannot use; the message names the key."""


def sha256_hex(secret: str) -> str:
    """The stored form of a login session id or an API token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding blanks."""
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class Account:
    """A person who can log in."""

    email: str
    password_hash: str
    is_admin: bool = False
    totp_secret: str = ""
    # Only sessions of the current epoch are valid: "sign out everywhere" and a
    # password change move it on, ending every older session on every replica.
    session_epoch: int = 0
    must_change_password: bool = False
    created_ms: int = 0


@dataclass(frozen=True, slots=True)
class Membership:
    """One account's role on one site."""

    site_id: str
    email: str
    role: Role
    granted_by: str = ""
    granted_ms: int = 0


@dataclass(frozen=True, slots=True)
class LoginSession:
    """A logged-in browser, known by the SHA-256 of its cookie value."""

    id_sha256: str
    email: str
    created_ms: int
    last_seen_ms: int
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A read API token of a site (its SHA-256 is also in the site's ``read_token_sha256``)."""

    token_id: str
    site_id: str
    name: str
    sha256: str
    created_by: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """One saved change of a site's settings: who, when, before and after."""

    change_id: str
    site_id: str
    who: str
    at_ms: int
    before: Mapping[str, Any] | None
    after: Mapping[str, Any]


Entity = Account | Membership | LoginSession | ApiToken | SettingsChange


def record_key(entity: Entity) -> str:
    """The ``console.state`` key of an entity: ``<kind>:<id>``."""
    if isinstance(entity, Account):
        return f"{ACCOUNT}:{entity.email}"
    if isinstance(entity, Membership):
        return f"{MEMBER}:{entity.site_id}:{entity.email}"
    if isinstance(entity, LoginSession):
        return f"{SESSION}:{entity.id_sha256}"
    if isinstance(entity, ApiToken):
        return f"{TOKEN}:{entity.site_id}:{entity.token_id}"
    return f"{HISTORY}:{entity.site_id}:{entity.at_ms:015d}:{entity.change_id}"


SEALED_TOTP_PREFIX = "aesgcm1:"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class TotpSealer:
    """Seals and opens TOTP seeds with AES-256-GCM, bound to their account's email.

    The email is the associated data: a sealed seed copied into another
    account's record does not open there.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("the TOTP sealing key must be 32 bytes")

    def seal(self, email: str, seed: str) -> str:
        """``aesgcm1:<base64url(nonce + ciphertext)>`` of ``seed``."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, seed.encode(), _associated_data(email))
        return SEALED_TOTP_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, email: str, stored: str) -> str:
        """The seed of a stored value; raises ``ValueError`` when it does not open."""
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix(SEALED_TOTP_PREFIX))
            seed = AESGCM(self.key).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _associated_data(email)
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise ValueError(
                "sealed TOTP secret does not open with this CONSOLE_TOTP_KEY_FILE"
                " (or CONSOLE_SECRET_KEY): use the key it was sealed with"
            ) from None
        return seed.decode()


def is_sealed_totp(stored: str) -> bool:
    """Whether a stored TOTP value is sealed (else it is a seed in clear, or empty)."""
    return stored.startswith(SEALED_TOTP_PREFIX)


def _associated_data(email: str) -> bytes:
    return b"replaypipe-console-totp:" + email.encode()


def record_value(entity: Entity, totp_sealer: TotpSealer | None = None) -> bytes:
    """The JSON value of an entity's record (an account's TOTP seed sealed, given a sealer)."""
    doc = asdict(entity)
    seed = doc.get("totp_secret")
    if (
        totp_sealer is not None
        and isinstance(entity, Account)
        and seed
        and not is_sealed_totp(seed)
    ):
        doc["totp_secret"] = totp_sealer.seal(entity.email, seed)
    return orjson.dumps(doc)


@dataclass
class ConsoleState:
    """Everything the console knows, rebuilt from ``console.state`` by :meth:`apply`."""

    accounts: dict[str, Account] = field(default_factory=dict)
    members: dict[tuple[str, str], Membership] = field(default_factory=dict)
    sessions: dict[str, LoginSession] = field(default_factory=dict)
    tokens: dict[tuple[str, str], ApiToken] = field(default_factory=dict)
    history: dict[str, SettingsChange] = field(default_factory=dict)
    # Opens the sealed TOTP seeds of account records; without one they stay sealed
    # in memory too (a CLI process that never checks a code needs no key).
    totp_sealer: TotpSealer | None = None
    # The offset each key was last applied from: a replica applies its own write
    # at once, and must not go back when the follower later meets an older record.
    _offsets: dict[str, int] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None, offset: int | None = None) -> None:
        """Apply one record (``value`` None is a tombstone). Older offsets than seen are skipped."""
        if offset is not None:
            if offset < self._offsets.get(key, -1):
                return
            self._offsets[key] = offset
        kind, _, rest = key.partition(":")
        doc = None if value is None else orjson.loads(value)
        if doc is not None and not isinstance(doc, dict):
            raise StateRecordError(f"console.state {kind} record is not a JSON object")
        try:
            self._apply(kind, rest, doc)
        except (TypeError, KeyError, ValueError) as exc:
            raise StateRecordError(f"console.state {kind} record: {exc}") from None

    def _apply(self, kind: str, rest: str, doc: dict[str, Any] | None) -> None:
        if kind == ACCOUNT:
            _put(self.accounts, rest, None if doc is None else self._account(doc))
        elif kind == MEMBER:
            site_id, _, email = rest.partition(":")
            member = None if doc is None else Membership(**doc)
            if member is not None and member.role not in ROLES:
                raise ValueError(f"unknown role {member.role!r}")
            _put(self.members, (site_id, email), member)
        elif kind == SESSION:
            _put(self.sessions, rest, None if doc is None else LoginSession(**doc))
        elif kind == TOKEN:
            site_id, _, token_id = rest.partition(":")
            _put(self.tokens, (site_id, token_id), None if doc is None else ApiToken(**doc))
        elif kind == HISTORY:
            _put(self.history, rest, None if doc is None else SettingsChange(**doc))
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def _account(self, doc: dict[str, Any]) -> Account:
        account = Account(**doc)
        if self.totp_sealer is not None and is_sealed_totp(account.totp_secret):
            seed = self.totp_sealer.open(account.email, account.totp_secret)
            account = replace(account, totp_secret=seed)
        return account

    # --- questions the handlers ask -------------------------------------------

    def account(self, email: str) -> Account | None:
        """The account of ``email`` (any case), or None."""
        return self.accounts.get(normalize_email(email))

    def has_admin(self) -> bool:
        """True once any instance admin exists."""
        return any(a.is_admin for a in self.accounts.values())

    def role(self, email: str, site_id: str) -> Role | None:
        """The role of ``email`` on ``site_id``, or None if not a member."""
        member = self.members.get((site_id, email))
        return None if member is None else member.role

    def sites_of(self, email: str) -> dict[str, Role]:
        """Every site ``email`` is a member of, with the role."""
        return {site: m.role for (site, who), m in self.members.items() if who == email}

    def members_of(self, site_id: str) -> list[Membership]:
        """The members of a site, by email."""
        return sorted(
            (m for (site, _), m in self.members.items() if site == site_id), key=lambda m: m.email
        )

    def tokens_of(self, site_id: str) -> list[ApiToken]:
        """A site's live API tokens, newest first."""
        found = [t for (site, _), t in self.tokens.items() if site == site_id]
        return sorted(found, key=lambda t: t.created_ms, reverse=True)

    def history_of(self, site_id: str) -> list[SettingsChange]:
        """A site's settings changes, newest first."""
        found = [c for c in self.history.values() if c.site_id == site_id]
        return sorted(found, key=lambda c: c.at_ms, reverse=True)

    def live_session(
        self, id_sha256: str, now_ms: int, *, idle_ms: int, absolute_ms: int
    ) -> LoginSession | None:
        """The session if it exists, its account exists, and no timeout or sign-out ended it."""
        session = self.sessions.get(id_sha256)
        if session is None:
            return None
        account = self.accounts.get(session.email)
        if account is None or session.epoch != account.session_epoch:
            return None
        if now_ms - session.last_seen_ms > idle_ms or now_ms - session.created_ms > absolute_ms:
            return None
        return session

    def ended_sessions(self, now_ms: int, *, idle_ms: int, absolute_ms: int) -> list[str]:
        """Keys of session records that can no longer be used (to tombstone them)."""
        return [
            f"{SESSION}:{id_sha256}"
            for id_sha256 in self.sessions
            if self.live_session(id_sha256, now_ms, idle_ms=idle_ms, absolute_ms=absolute_ms)
            is None
        ]


def touched(session: LoginSession, now_ms: int) -> LoginSession:
    """The session with its idle clock restarted."""
    return replace(session, last_seen_ms=now_ms)


def _put(table: dict[Any, Any], key: object, entity: object | None) -> None:
    if entity is None:
        table.pop(key, None)
    else:
        table[cast(Any, key)] = entity
