"""What counts as sensitive: field names, autocomplete tokens, and the node bits
(marks) that say how a node is masked.

Every node the masker sees gets a small integer of bits (blocked, text-masked,
sensitive input, input-ignored, form text, CSS/script text), inherited from its
parent; the bits above ``CONTEXT_SHIFT`` record which descendant-selector
prefixes its ancestors matched (see :mod:`services.masker.policy`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Final

# The one list of secret words: field names and ids, URL parameter keys,
# payload keys and attribute names are all checked against it (with the card and
# bank words of DEFAULT_SENSITIVE_NAMES). Anchored on Sentry Relay's default
# password rule (relay-pii/src/regexes.rs PASSWORD_KEY_REGEX: password, secret,
# passwd, api_key, apikey, auth, credentials, mysql_pwd, privatekey, private_key,
# token, otp, two_factor), the keywords of gitleaks' generic-api-key rule
# (access, auth, credential, key, passwd, password, secret, token; the weak ones
# below) plus session, cookie, signature and anti-forgery names. Names of
# 4+ characters match as substrings of the name with separators removed
# ("credit-card-number" contains "card", "X-Api-Key" contains "apikey");
# shorter ones and those in WHOLE_WORD_NAMES must be a whole word ("cvv2",
# "user_ssn", "authToken") so that "pin" does not match "shipping" nor "auth"
# "author".
SECRET_WORDS: Final[tuple[str, ...]] = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pass",
    "pwd",
    "pw",
    "secret",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "privatekey",
    "private_key",
    "auth",
    "authorization",
    "authenticity",
    "credential",
    "bearer",
    "session",
    "sessid",
    "sid",
    "cookie",
    "signature",
    "sig",
    "csrf",
    "xsrf",
    "jwt",
    "otp",
    "twofactor",
    "hmac",
    "pin",
)
DEFAULT_SENSITIVE_NAMES: Final[tuple[str, ...]] = (
    *SECRET_WORDS,
    "card",
    "ccnum",
    "cvv",
    "cvc",
    "csc",
    "cvn",
    "iban",
    "ssn",
    "securitycode",
    "accountnumber",
    "routing",
    "taxid",
)
# 4+ letter words that are parts of common harmless words ("author", "compass").
WHOLE_WORD_NAMES: Final = frozenset({"auth", "pass"})
# gitleaks generic-api-key keywords too common to mask on their own ("sort_key",
# "api_version", "access_level"): a value under them is masked only when it
# looks generated (detectors.looks_secret_value). Whole words only.
WEAK_SECRET_WORDS: Final[tuple[str, ...]] = ("key", "api", "access", "creds")
SENSITIVE_AUTOCOMPLETE: Final = frozenset({"one-time-code", "current-password", "new-password"})
# autocomplete tokens starting with "cc-" (cc-number, cc-csc, cc-exp*, cc-name, ...)
SENSITIVE_AUTOCOMPLETE_PREFIX = "cc-"

# --- node bits -----------------------------------------------------------------

F_BLOCK: Final = 1 << 0  # blocked subtree: nothing inside is kept
F_MASK: Final = 1 << 1  # text, text attributes and input values masked
F_MASK_INPUT: Final = 1 << 2  # input values masked (sensitive field or inside one)
F_IGNORE: Final = 1 << 3  # input events dropped, values masked
F_INPUT_TEXT: Final = 1 << 4  # text that is form content (textarea, select, contenteditable)
F_STYLE_ELEMENT: Final = 1 << 5
F_SCRIPT_ELEMENT: Final = 1 << 6
F_CSS_TEXT: Final = 1 << 7
F_SCRIPT_TEXT: Final = 1 << 8
NOT_INHERITED: Final = F_STYLE_ELEMENT | F_SCRIPT_ELEMENT | F_CSS_TEXT | F_SCRIPT_TEXT
CONTEXT_SHIFT: Final = 10
FLAG_BITS: Final = (1 << CONTEXT_SHIFT) - 1
# Keeps stored ints JSON-safe (< 2**53): selectors beyond this ignore their ancestors.
MAX_CONTEXT_BITS: Final = 40
# A node the masker never saw: mask its text and values, but do not drop it.
UNKNOWN_NODE: Final = F_MASK | F_MASK_INPUT

_CAMEL_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# Separators dropped before a long name is looked for inside a field name.
NON_ALNUM = re.compile(r"[^a-z0-9]+")


# Field names and ids longer than this are checked without the cache: a page (or
# a hostile client) with huge distinct names must not fill memory with them.
MAX_CACHED_NAME_CHARS: Final = 256


def name_is_sensitive(
    value: str, long_names: tuple[str, ...], short_names: frozenset[str]
) -> bool:
    """True if a field name/id contains a long name or has a short one as a whole word.

    ``long_names``/``short_names`` are already lower-cased without separators.
    """
    if len(value) <= MAX_CACHED_NAME_CHARS:
        return _cached_name_is_sensitive(value, long_names, short_names)
    return _name_is_sensitive(value, long_names, short_names)


def _name_is_sensitive(
    value: str, long_names: tuple[str, ...], short_names: frozenset[str]
) -> bool:
    compact = NON_ALNUM.sub("", value.lower())
    if any(name in compact for name in long_names):
        return True
    if short_names:
        return any(word.lower() in short_names for word in _CAMEL_WORDS.findall(value))
    return False


_cached_name_is_sensitive = lru_cache(maxsize=4096)(_name_is_sensitive)


def split_names(names: Iterable[str]) -> tuple[tuple[str, ...], frozenset[str]]:
    """(substring names, whole-word names) of a name list, lower-cased without separators."""
    normalised = [NON_ALNUM.sub("", n.lower()) for n in names]
    long_names = tuple(
        dict.fromkeys(n for n in normalised if len(n) >= 4 and n not in WHOLE_WORD_NAMES)
    )
    short_names = frozenset(n for n in normalised if 0 < len(n) < 4 or n in WHOLE_WORD_NAMES)
    return long_names, short_names


SECRET_LONG_NAMES, SECRET_SHORT_NAMES = split_names(DEFAULT_SENSITIVE_NAMES)
_WEAK_NAMES: Final = frozenset(WEAK_SECRET_WORDS)


def key_is_secret(key: str) -> bool:
    """True if a URL parameter, payload key or attribute name names a secret word."""
    return name_is_sensitive(key, SECRET_LONG_NAMES, SECRET_SHORT_NAMES)


def key_is_weak_secret(key: str) -> bool:
    """True if a key has a weak secret word (``key``, ``api``...) as a whole word:
    its value is a secret if it looks generated."""
    if len(key) > MAX_CACHED_NAME_CHARS:
        return False
    return _cached_name_is_sensitive(key, (), _WEAK_NAMES)


def class_marks(cls: str) -> int:
    """Bits of rrweb's ``rr-block``/``rr-mask``/``rr-ignore`` classes in a class attribute."""
    bits = 0
    tokens = cls.split()
    if "rr-block" in tokens:
        bits |= F_BLOCK
    if "rr-mask" in tokens:
        bits |= F_MASK
    if "rr-ignore" in tokens:
        bits |= F_IGNORE
    return bits


def recording_ignore_marks(marker: object) -> int:
    """Bits of a ``data-recording-ignore`` attribute value."""
    # Smartsupp: "events" records nothing inside, "mask" masks typed input. Any
    # other value is an unknown intent to hide something: mask.
    if isinstance(marker, str) and marker.strip().lower() == "events":
        return F_BLOCK
    return F_MASK
