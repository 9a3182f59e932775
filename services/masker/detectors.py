"""String-level scrubbers: length-keeping masks, PII detectors, query-parameter scrubbing.

Every function here keeps the length of the string it is given (so masked text
lays out like the original) and counts what it replaced in a ``Counter`` whose
keys are rule names (``pii_email``, ``pii_card``, ``pii_iban``, ``url_param``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

MASK_CHAR = "*"
# Every PII detector's pattern matches a bounded number of characters (at most
# this many), so a detector's cost per start position is bounded and its cost on
# any text is linear (tests check the patterns; bench/bench_detectors.py the time).
MAX_CANDIDATE_CHARS = 1024
_NON_SPACE = re.compile(r"\S")

# Only strings containing one of these can hold a detectable secret; one C-level
# search lets the common case (plain words, class names) skip every detector.
_MAYBE_SENSITIVE = re.compile(r"[@\d=]|%40")

# Bounded like a deliverable address (RFC 5321: local part <= 64, labels <= 63),
# so every start costs a bounded number of steps whatever follows it.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}(?:@|%40)[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}"
    r"\.[A-Za-z]{2,63}(?![\w-])"
)
# A card number candidate: 13-19 digits in one piece, or groups joined by single
# spaces or dashes whose first group has 4 digits (4-4-4-4, 4-6-5, 4-4-4-4-3...).
# Bounded (at most 6 groups of at most 6 digits), and a group start is the only place one can begin,
# so text like "1 1 1 1" costs one C-level scan and no Python work.
_CARD_CANDIDATE = re.compile(r"(?<!\d)(?:\d{13,19}|\d{4}(?:[ -]\d{1,6}){1,5})(?!\d)")
# Country code, check digits, then 11-32 letters or digits, single spaces allowed.
_IBAN_CANDIDATE = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,32}\b")
# Linear though unbounded: a key or value run stops at the characters that start
# the next parameter, so no character is read by two attempts.
_QUERY_PARAM = re.compile(r"([?&#;])([^=&#\s?;]+)=([^&#\s;\"'<>)]*)")
_KEY_TOKENS = re.compile(r"[^a-z0-9]+")
PII_PATTERNS: tuple[re.Pattern[str], ...] = (_EMAIL, _CARD_CANDIDATE, _IBAN_CANDIDATE)

# IBAN length per country (ISO 13616 registry); the length check plus mod-97
# keeps random codes from being masked. Letters count in either case: people
# type IBANs in lower case too.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def mask_text(value: str) -> str:
    """Replace every non-whitespace character with ``*`` (length and spaces kept)."""
    return _NON_SPACE.sub(MASK_CHAR, value)


_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2*d, digits summed


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers (``digits``: ASCII digits only)."""
    # Every second digit from the right is doubled; C-level slicing, translate
    # and byte sums instead of a Python loop per digit.
    kept = digits[-1::-2].encode()
    doubled = digits[-2::-2].translate(_DOUBLED).encode()
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


# Letters count as 10..35 in the mod-97 check.
_IBAN_NUMBERS = str.maketrans({chr(ord("A") + i): str(10 + i) for i in range(26)})


def iban_valid(compact: str) -> bool:
    """ISO 13616 check: known country length and mod-97 remainder 1 (any letter case)."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_IBAN_NUMBERS)) % 97 == 1


@dataclass(frozen=True, slots=True)
class Scrubber:
    """The string scrubbers enabled for one site (built once per settings version)."""

    email: bool = True
    card: bool = True
    iban: bool = True
    query_params: frozenset[str] = frozenset()

    @classmethod
    def build(cls, detectors: Iterable[str], query_params: Iterable[str]) -> Scrubber:
        """From a site's ``pii_detectors`` and ``scrub_query_params``."""
        enabled = set(detectors)
        return cls(
            email="email" in enabled,
            card="card" in enabled,
            iban="iban" in enabled,
            query_params=frozenset(p.strip().lower() for p in query_params if p.strip()),
        )

    def scrub(self, value: str, counts: Counter[str]) -> str:
        """Mask PII spans and sensitive query-parameter values, keeping the length."""
        if not _MAYBE_SENSITIVE.search(value):
            return value
        if self.query_params and "=" in value:
            value = self.scrub_query(value, counts)
        spans = self.find_pii(value, counts)
        if not spans:
            return value
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            if start < last:
                start = last
            if end <= start:
                continue
            pieces.append(value[last:start])
            pieces.append(mask_text(value[start:end]))
            last = end
        pieces.append(value[last:])
        return "".join(pieces)

    def scrub_url(self, value: str, counts: Counter[str]) -> str:
        """Scrub a URL; ``data:`` URIs are left alone (base64 would give false PII hits)."""
        if value[:5].lower() == "data:":
            return value
        return self.scrub(value, counts)

    def scrub_query(self, value: str, counts: Counter[str]) -> str:
        """Replace the values of configured query/fragment parameters with ``*``."""
        names = self.query_params

        def replace(match: re.Match[str]) -> str:
            raw_value = match.group(3)
            if not raw_value or not _param_is_sensitive(match.group(2), names):
                return match.group(0)
            counts["url_param"] += 1
            return f"{match.group(1)}{match.group(2)}={MASK_CHAR * len(raw_value)}"

        return _QUERY_PARAM.sub(replace, value)

    def find_pii(self, value: str, counts: Counter[str]) -> list[tuple[int, int]]:
        """Sorted (start, end) spans of every enabled detector's matches in ``value``."""
        spans: list[tuple[int, int]] = []
        if self.email and ("@" in value or "%40" in value):
            for match in _EMAIL.finditer(value):
                spans.append(match.span())
                counts["pii_email"] += 1
        if self.card and len(value) >= 13:
            found = _card_spans(value)
            if found:
                counts["pii_card"] += len(found)
                spans.extend(found)
        if self.iban:
            for match in _IBAN_CANDIDATE.finditer(value):
                span = _iban_span(match.group(), match.start())
                if span is not None:
                    spans.append(span)
                    counts["pii_iban"] += 1
        if len(spans) > 1:
            spans.sort()
        return spans


def _param_is_sensitive(raw_key: str, names: frozenset[str]) -> bool:
    key = unquote_plus(raw_key).lower()
    if key in names:
        return True
    # user[email], reset_token, x-api-key: any word of the key that is a listed name
    return any(token in names for token in _KEY_TOKENS.split(key) if token)


def _card_spans(value: str) -> list[tuple[int, int]]:
    """Card numbers (13-19 digits, Luhn-valid) in ``value``, as (start, end) spans.

    A candidate that holds no card is searched again from its next group, so a
    card written after other digit groups ("ref 2024 4111 1111 1111 1111") is found.
    """
    found: list[tuple[int, int]] = []
    search = _CARD_CANDIDATE.search
    pos = 0
    while (match := search(value, pos)) is not None:
        start = match.start()
        end = _card_end(match.group())
        if end:
            found.append((start, start + end))
            pos = start + end
        else:
            pos = start + 5  # past the first group (4 digits and a separator)
    return found


def _card_end(candidate: str) -> int:
    """Length of the longest Luhn-valid 13-19 digit prefix of whole groups; 0 if none."""
    if len(candidate) <= 19 and candidate.isdigit():
        return len(candidate) if luhn_valid(candidate) else 0
    ends: list[int] = []  # ends (in candidate) of the prefixes with 13-19 digits
    count = 0
    end = -1
    for group in candidate.replace("-", " ").split(" "):
        count += len(group)
        end += len(group) + 1
        if count > 19:
            break
        if count >= 13:
            ends.append(end)
    for end in reversed(ends):  # longest first
        if luhn_valid(candidate[:end].replace(" ", "").replace("-", "")):
            return end
    return 0


def _iban_span(candidate: str, offset: int) -> tuple[int, int] | None:
    """The span of the IBAN at the start of ``candidate`` (its country's length), if valid."""
    expected = IBAN_LENGTHS.get(candidate[:2].upper())
    if expected is None:
        return None
    if " " not in candidate:
        end = expected
    else:
        # the expected-th character that is not a space (single spaces only)
        prefix = _IBAN_PREFIXES.get(expected)
        matched = prefix.match(candidate) if prefix is not None else None
        if matched is None:
            return None
        end = matched.end()
    if end > len(candidate) or not iban_valid(candidate[:end].replace(" ", "")):
        return None
    return offset, offset + end


# A prefix of exactly n alphanumerics with single spaces between, per IBAN length.
_IBAN_PREFIXES: dict[int, re.Pattern[str]] = {
    n: re.compile(r"[A-Za-z0-9](?: ?[A-Za-z0-9]){" + str(n - 1) + "}")
    for n in set(IBAN_LENGTHS.values())
}
