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
_NON_SPACE = re.compile(r"\S")

# Only strings containing one of these can hold a detectable secret; one C-level
# search lets the common case (plain words, class names) skip every detector.
_MAYBE_SENSITIVE = re.compile(r"[@\d=]|%40")

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
# A run of digits joined by single spaces or dashes; card windows are picked inside it.
_DIGIT_RUN = re.compile(r"(?<![\d])\d+(?:[ -]\d+)*(?!\d)")
_IBAN_CANDIDATE = re.compile(r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,32}\b")
_QUERY_PARAM = re.compile(r"([?&#;])([^=&#\s?;]+)=([^&#\s;\"'<>)]*)")
_KEY_TOKENS = re.compile(r"[^a-z0-9]+")

# IBAN length per country (ISO 13616 registry); the length check plus mod-97
# keeps random codes from being masked. Letters count in either case: people
# type IBANs in lower case too.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}


def mask_text(value: str) -> str:
    """Replace every non-whitespace character with ``*`` (length and spaces kept)."""
    return _NON_SPACE.sub(MASK_CHAR, value)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    """ISO 13616 check: known country length and mod-97 remainder 1 (any letter case)."""
    compact = compact.upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


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
        if self.card:
            for match in _DIGIT_RUN.finditer(value):
                if len(match.group()) >= 13:
                    found = _card_spans(match.group(), match.start())
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


def _card_spans(run: str, offset: int) -> list[tuple[int, int]]:
    """Card numbers (13-19 digits, Luhn-valid) whose ends fall on group boundaries."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run)]
    found: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        hit = None
        digits = ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits):
                hit = j  # keep looking: prefer the longest valid window
        if hit is None:
            i += 1
            continue
        found.append((offset + groups[i][0], offset + groups[hit][1]))
        i = hit + 1
    return found


def _iban_span(candidate: str, offset: int) -> tuple[int, int] | None:
    expected = IBAN_LENGTHS.get(candidate[:2].upper())
    if expected is None:
        return None
    taken = 0
    for index, char in enumerate(candidate):
        if char != " ":
            taken += 1
            if taken == expected:
                compact = candidate[: index + 1].replace(" ", "")
                if iban_valid(compact):
                    return offset, offset + index + 1
                return None
    return None
