"""Account passwords: argon2id hashes (argon2-cffi) and the policy a new password must meet.

The policy is NIST SP 800-63B's: a minimum length, no composition rules, and a
refusal of passwords found in a list of common/breached ones. The list in
``data/common-passwords.txt.gz`` is the file Django 5.2.19 ships as
``django/contrib/auth/common-passwords.txt.gz`` (19,640 passwords from Royce
Williams' breach compilation; BSD licence), copied unchanged.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common-passwords.txt.gz"
# Longer passwords buy nothing and make hashing a denial-of-service lever.
MAX_PASSWORD_CHARS = 1024

# argon2-cffi's defaults are argon2id with RFC 9106's low-memory profile.
_HASHER = PasswordHasher()
# Verifying against this when an account does not exist keeps the timing of a
# failed login the same for unknown and known emails.
_DUMMY_HASH = _HASHER.hash("replaypipe-no-such-account")


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must satisfy."""

    min_length: int = 12

    def problems(self, password: str, *, email: str = "") -> list[str]:
        """Why ``password`` is refused (empty when it is acceptable); messages say what to do."""
        found: list[str] = []
        if len(password) < self.min_length:
            found.append(f"Use at least {self.min_length} characters.")
        if len(password) > MAX_PASSWORD_CHARS:
            found.append(f"Use at most {MAX_PASSWORD_CHARS} characters.")
        if is_common_password(password):
            found.append(
                "This password is on a list of common or breached passwords; pick another."
            )
        local_part = email.split("@", 1)[0].lower()
        if local_part and len(local_part) >= 4 and local_part in password.lower():
            found.append("Do not use your email address in the password.")
        return found


@cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip().lower() for line in lines if line.strip())


def is_common_password(password: str) -> bool:
    """True if ``password`` (ignoring case) is in the shipped common-passwords list."""
    return password.strip().lower() in _common_passwords()


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, salt included) to store for ``password``."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True if ``password`` matches ``stored_hash``; None (no account) costs the same and fails."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(stored_hash)
