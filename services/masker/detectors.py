"""String-level scrubbers: length-keeping masks, PII detectors, query-parameter scrubbing.

Every function here keeps the length of the string it is given (so masked text
lays out like the original) and counts what it replaced in a ``Counter`` whose
keys are rule names (``pii_email``, ``pii_card``, ``pii_iban``, ``url_param``,
``secret_value``, ``secret_json``, ``url_path_secret``, ``token_<format>``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from services.masker.sensitivity import (
    SECRET_LONG_NAMES,
    SECRET_SHORT_NAMES,
    key_is_weak_secret,
    name_is_sensitive,
)
from services.masker.token_rules import TOKEN_HINTS, TOKEN_RULES, token_spans

MASK_CHAR = "*"
# Every PII detector's pattern matches a bounded number of characters (at most
# this many), so a detector's cost per start position is bounded and its cost on
# any text is linear (tests check the patterns; bench/bench_detectors.py the time).
# Secret values (a query value, a PEM key) run longer than PII: their patterns
# start only after a separator or a literal prefix and consume what they match.
MAX_CANDIDATE_CHARS = 16384
_NON_SPACE = re.compile(r"\S")
# What Scrubber remembers of texts it found clean: at most this many, this long.
MAX_CLEAN_TEXTS = 4096
MAX_CLEAN_CHARS = 64

# Only strings containing one of these can hold a detectable secret; one C-level
# search lets the common case (plain words, class names) skip every detector.
# Token formats without digits are found by their literal prefixes (TOKEN_HINTS).
_MAYBE_SENSITIVE = re.compile(r'[@\d="]|%40')

# Bounded like a deliverable address (RFC 5321: local part <= 64, labels <= 63),
# so every start costs a bounded number of steps whatever follows it.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}(?:@|%40)[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}"
    r"\.[A-Za-z]{2,63}(?![\w-])"
)
# A card number candidate: 13-19 digits in one piece, or groups joined by single
# spaces or dashes whose first group has 4 digits (4-4-4-4, 4-6-5, 4-4-4-4-3...),
# or UnionPay's 6-13.
# Bounded (at most 6 groups of at most 6 digits), and a group start is the only place one can begin,
# so text like "1 1 1 1" costs one C-level scan and no Python work.
# Separators are any single space (including no-break, figure and thin spaces
# some sites and locales use) or a dash.
_CARD_SEPARATORS = " \u00a0\u2007\u2009\u202f\u2002\u2003\u2005\u2006-"
_CARD_CANDIDATE = re.compile(
    r"(?<!\d)(?:\d{13,19}|\d{6}[" + _CARD_SEPARATORS + r"]\d{13}"
    r"|\d{4}(?:[" + _CARD_SEPARATORS + r"]\d{1,6}){1,5})(?!\d)"
)
_NON_ASCII_SPACE = re.compile("[^ -~]")
# Where an IBAN can start: a country code and check digits after a non-word
# character. Only the start is matched, so a candidate never swallows the words
# after it and hides the next IBAN; _iban_span reads the country's length from it.
_IBAN_CANDIDATE = re.compile(r"\b[A-Za-z]{2}\d{2}(?=[" + _CARD_SEPARATORS + r"]?[A-Za-z0-9])")
# key=value at the start, after a space or a URL/list separator. The separator
# starts the match, so parameters are matched one after the other; the key is
# bounded and the value stops at the next separator: linear.
_KEY_VALUE = re.compile(
    r"(^|[\s?&#;,({\[])([^=&#\s?;,\"'<>(){}\[]{1,128})=([^&#\s;\"'<>),]{0,4096})"
)
# The same inside a percent-encoded URL (a redirect/return/next parameter), once
# or twice encoded: separators %3F %26 %23, "=" as %3D.
_ENCODED_PARAM = re.compile(
    r"(%(?:25)?(?:3[Ff]|26|23))([A-Za-z0-9_.~\-]{1,128})(%(?:25)?3[Dd])"
    r"((?:[A-Za-z0-9_.~+!*()\-]|%(?!(?:25)?2[36])[0-9A-Fa-f]{2}){0,4096})"
)
# "Name: value" after a line start, space or separator (header lines in logs);
# Bearer/Basic values are left to their token rules (the scheme word is kept).
_HEADER_LINE = re.compile(
    r"(^|[\s,;{(\[])([A-Za-z][A-Za-z0-9_.-]{0,63}):[ \t]{0,4}"
    r"(?![Bb]earer\s|[Bb]asic\s)([^\s,;\"'<>]{1,4096})"
)
# A JSON member name and its colon: "key": (the value is read after it).
# Also escaped (\"key\":), as in JSON carried inside a JSON string.
_JSON_KEY = re.compile(r'\\?"([^"\\\n]{1,128})\\?"\s{0,8}:\s{0,8}')
# The string value of a "name" member (plain or escaped quotes), then its comma.
_JSON_PAIR_NAME = re.compile(r'\\?"([^"\\\n]{1,128})\\?"\s{0,8},\s{0,8}')
_JSON_NUMBER = re.compile(r"-?\d{1,64}(?:\.\d{1,64})?(?:[eE][+-]?\d{1,4})?")
_JSON_LITERAL = re.compile(r"true|false|null")
# A URL in text, and a path segment in it that may be a random token.
_URL_IN_TEXT = re.compile(r"(?:https?:)?//[^\s\"'<>]{1,2048}")
_PATH_SEGMENT = re.compile(r"(?<=/)[A-Za-z0-9_-]{20,256}(?=[/?#;]|$|[^A-Za-z0-9_.~%-])")
_KEY_TOKENS = re.compile(r"[^a-z0-9]+")
# A run of a token alphabet in text (base64/base64url/hex, padding included), and
# the alphanumeric pieces of one ("whsec_<hex>", "<uid>-<hex>"): a generated
# credential printed as text is one of these. Runs are read at most 1024
# characters at a time (linear); longer ones are data, not a credential, and skipped.
_MAX_RUN_CHARS = 1024
_TEXT_TOKEN = re.compile(r"[A-Za-z0-9_+/-]{20,1024}={0,2}")
_TOKEN_PIECE = re.compile(r"[A-Za-z0-9]{20,1024}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
PII_PATTERNS: tuple[re.Pattern[str], ...] = (
    _EMAIL, _CARD_CANDIDATE, _IBAN_CANDIDATE, _JSON_KEY, _JSON_PAIR_NAME, _JSON_NUMBER,
    _PATH_SEGMENT,
    _ENCODED_PARAM, _KEY_VALUE, _URL_IN_TEXT, _HEADER_LINE, _TEXT_TOKEN, _TOKEN_PIECE, _UUID,
    *(rule.pattern for rule in TOKEN_RULES),
)

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


# A shorter string holds no IBAN: _iban_span checks the country's full length.
_SHORTEST_IBAN = min(IBAN_LENGTHS.values())


def mask_text(value: str) -> str:
    """Replace every non-whitespace character with ``*`` (length and spaces kept)."""
    if value.isascii():
        # one C pass instead of a regex substitution per character run
        return value.encode().translate(_ASCII_MASK).decode("ascii")
    return _NON_SPACE.sub(MASK_CHAR, value)


# Byte table for mask_text on ASCII text: whitespace as ``\s`` knows it (str.isspace:
# also \x1c-\x1f) stays, every other character becomes MASK_CHAR.
_ASCII_MASK = bytes(b if chr(b).isspace() else ord(MASK_CHAR) for b in range(256))


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
    # Short texts scrub() (default options) returned unchanged without counting
    # anything: class names, labels, prices repeat across a page and its sessions.
    # scrub() is a pure function of the scrubber's fields and the text, so a text
    # in here needs no scan. Bounded: cleared when full.
    _clean: dict[str, None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

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

    def scrub(
        self,
        value: str,
        counts: Counter[str],
        *,
        url: bool = False,
        payload: bool = False,
        keep_paths: bool = False,
        random_tokens: bool = True,
    ) -> str:
        """Mask PII spans, known token formats and secret-named values, keeping the length.

        ``url``: ``value`` is a whole URL (an ``href``, a Meta href, the page
        URL), so its path segments are checked for random tokens too.
        ``payload``: ``value`` is a string leaf of a custom event or log, where
        ``X-Api-Key: value`` is a header line (in page text "Password: must
        have 8 characters" is a sentence, so only ``key=value`` counts there).
        ``keep_paths``: no path segment is masked as a random token (asset URLs).
        ``random_tokens``: outside URLs, runs that look generated (an API key
        printed as text) are masked; False for ``class``/``id``, which CSS reads.
        """
        # only texts scrubbed with the default rules are remembered: a value found
        # clean as a class or id (no random-token rule) may not be clean as text
        plain = (
            len(value) <= MAX_CLEAN_CHARS
            and random_tokens
            and not (url or payload or keep_paths)
        )
        if plain and value in self._clean:
            return value
        if not may_need_scrub(value):
            if plain:
                self._remember_clean(value)
            return value
        before = counts.total() if plain else 0
        result = self._scrub(
            value,
            counts,
            url=url,
            payload=payload,
            keep_paths=keep_paths,
            random_tokens=random_tokens,
        )
        if plain and result == value and counts.total() == before:
            self._remember_clean(value)
        return result

    def _remember_clean(self, value: str) -> None:
        if len(self._clean) >= MAX_CLEAN_TEXTS:
            self._clean.clear()
        self._clean[value] = None

    def _scrub(
        self,
        value: str,
        counts: Counter[str],
        *,
        url: bool,
        payload: bool,
        keep_paths: bool,
        random_tokens: bool,
    ) -> str:
        if "=" in value:
            value = self.scrub_query(value, counts)
            if "%" in value:
                value = _scrub_encoded_params(value, self.query_params, counts)
        if '"' in value and ":" in value:
            value = _scrub_json_members(value, self.query_params, counts)
        if payload and ":" in value:
            value = _scrub_header_lines(value, self.query_params, counts)
        if keep_paths:
            pass
        elif url:
            value = _scrub_path_segments(value, counts)
        elif "//" in value:
            value = _URL_IN_TEXT.sub(lambda m: _scrub_path_segments(m.group(), counts), value)
        spans = self.find_pii(value, counts)
        if _may_hold_token(value):
            for name, span in token_spans(value):
                counts[f"token_{name}"] += 1
                spans.append(span)
        if random_tokens and not url and len(value) >= 20:
            found = random_token_spans(value)
            if found:
                counts["text_random_token"] += len(found)
                spans.extend(found)
        if not spans:
            return value
        spans.sort()
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

    def scrub_url(self, value: str, counts: Counter[str], *, asset: bool = False) -> str:
        """Scrub a URL; ``data:`` URIs are left alone (base64 would give false PII hits).

        ``asset``: the URL loads an image or media the replay shows, so its path
        segments are kept (content hashes look random); parameters are scrubbed.
        """
        if value[:5].lower() == "data:":
            return value
        return self.scrub(value, counts, url=True, keep_paths=asset)

    def scrub_query(self, value: str, counts: Counter[str]) -> str:
        """Mask ``key=value`` values whose key names a secret (or a configured
        parameter), and random-looking URL parameter values."""
        names = self.query_params

        def replace(match: re.Match[str]) -> str:
            raw_value = match.group(3)
            if not raw_value or set(raw_value) == _MASKED:
                return match.group(0)
            if _param_is_sensitive(match.group(2), names) or (
                key_is_weak_secret(match.group(2)) and looks_secret_value(raw_value)
            ):
                counts["url_param"] += 1
            elif match.group(1) in "?&#" and match.group(1) and looks_random(raw_value):
                counts["url_random_value"] += 1
            else:
                return match.group(0)
            return f"{match.group(1)}{match.group(2)}={MASK_CHAR * len(raw_value)}"

        return _KEY_VALUE.sub(replace, value)

    def find_pii(self, value: str, counts: Counter[str]) -> list[tuple[int, int]]:
        """Sorted (start, end) spans of every enabled detector's matches in ``value``."""
        spans: list[tuple[int, int]] = []
        if self.email and ("@" in value or "%40" in value):
            for match in _EMAIL.finditer(value):
                spans.append(match.span())
                counts["pii_email"] += 1
        if self.card and len(value) >= 13 and _may_hold_card(value):
            found = _card_spans(value)
            if found:
                counts["pii_card"] += len(found)
                spans.extend(found)
        if self.iban and _may_hold_iban(value):
            for match in _IBAN_CANDIDATE.finditer(value):
                span = _iban_span(value, match.start())
                if span is not None:
                    spans.append(span)
                    counts["pii_iban"] += 1
        if len(spans) > 1:
            spans.sort()
        return spans


_MASKED = {MASK_CHAR}


# --- fast paths: cheap proofs that a detector cannot match ------------------------
# On an ASCII string, bytes.translate deletes a set of characters in one C loop
# (about 1 ns a character, against 15-50 ns for a regex scan or a loop of ``in``s),
# so "none of these characters occurs" costs little. Each gate answers exactly
# what the slower test it stands for would (tests/unit/test_masker_fast_paths.py).


def _hint_gate(hints: Iterable[str]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """Hints by a marker character each holds, and the hints without one.

    A hint's marker is its first ASCII character other than a lower-case letter;
    hints without one (``bearer``, ``xox``) and hints with a non-ASCII character
    are checked as words. A string holding a hint holds its marker or is checked
    for it as a word.
    """
    by_marker: dict[str, list[str]] = {}
    words: list[str] = []
    for hint in hints:
        marker = next((c for c in hint if c.isascii() and not "a" <= c <= "z"), None)
        if marker is None or not hint.isascii():
            words.append(hint)
        else:
            by_marker.setdefault(marker, []).append(hint)
    return {m: tuple(h) for m, h in sorted(by_marker.items())}, tuple(words)


_ASCII_DIGITS = b"0123456789"
_ASCII_BYTES = bytes(range(128))
_DIGIT = re.compile(r"\d")
_TOKEN_HINTS_BY_MARKER, _TOKEN_HINT_WORDS = _hint_gate(TOKEN_HINTS)
_TOKEN_HINT_CHARS = "".join(_TOKEN_HINTS_BY_MARKER).encode()
# What _MAYBE_SENSITIVE finds among ASCII characters ("%40" holds "%"), plus the token hints'.
_SCRUB_GATE_CHARS = b'@="%' + _ASCII_DIGITS + _TOKEN_HINT_CHARS


def _non_ascii_part(raw: bytes) -> str:
    """The non-ASCII characters of a UTF-8 string, in order (ASCII bytes never occur
    inside a multi-byte character, so deleting them leaves whole characters)."""
    return raw.translate(None, _ASCII_BYTES).decode()


def may_need_scrub(value: str) -> bool:
    """Whether :meth:`Scrubber.scrub` may change ``value``: exactly
    ``_MAYBE_SENSITIVE.search(value) or any(hint in value for hint in TOKEN_HINTS)``."""
    raw = value.encode()
    if len(raw.translate(None, _SCRUB_GATE_CHARS)) == len(raw):
        # No ASCII trigger: left are a non-ASCII digit (\d) and the hint words.
        if not value.isascii() and _DIGIT.search(_non_ascii_part(raw)):
            return True
        return _holds_any(value, _TOKEN_HINT_WORDS)
    return _MAYBE_SENSITIVE.search(value) is not None or _may_hold_token(value)


def _may_hold_token(value: str) -> bool:
    """Exactly ``any(hint in value for hint in TOKEN_HINTS)`` (else ``token_spans`` finds none).

    Only the hints whose marker character occurs are looked for.
    """
    raw = value.encode()
    if len(raw.translate(None, _TOKEN_HINT_CHARS)) != len(raw):
        for marker, hints in _TOKEN_HINTS_BY_MARKER.items():
            if marker in value and _holds_any(value, hints):
                return True
    return _holds_any(value, _TOKEN_HINT_WORDS)


def _holds_any(value: str, words: tuple[str, ...]) -> bool:
    # a loop, not any(genexpr): no generator to build for a handful of words
    for word in words:  # noqa: SIM110
        if word in value:
            return True
    return False


def _may_hold_card(value: str) -> bool:
    r"""False only if ``value`` holds no card candidate with 13 digits, which a card needs.

    Such a candidate is 13+ characters of digits and single separators in one
    piece. Text with a non-ASCII digit (\d knows more than 0-9) may hold one.
    """
    raw = value.encode()
    if len(raw) - len(raw.translate(None, _ASCII_DIGITS)) < 13:
        return _has_non_ascii_digit(value, raw)
    return _has_non_ascii_digit(value, raw) or _CARD_RUN.search(value) is not None


def _has_non_ascii_digit(value: str, raw: bytes) -> bool:
    return not value.isascii() and _DIGIT.search(_non_ascii_part(raw)) is not None


# 13 characters in a row that are ASCII digits or card separators: a superset of
# what holds a card in text whose digits are ASCII (one character class to scan).
_CARD_RUN = re.compile(r"[0-9" + _CARD_SEPARATORS + r"]{13}")
# Where an IBAN candidate starts ([A-Za-z]{2}\d{2}), as bytes of UTF-8: ASCII letters
# read as "a", ASCII digits as "0", every other byte as a space; then one
# substring test finds the shape.
_IBAN_SHAPE = bytes(
    ord("a") if b < 128 and chr(b).isalpha() else ord("0") if b < 128 and chr(b).isdigit()
    else ord(" ")
    for b in range(256)
)


def _may_hold_iban(value: str) -> bool:
    """False only if ``value`` is too short for an IBAN or has no two ASCII letters
    followed by two digits (where every IBAN candidate starts)."""
    if len(value) < _SHORTEST_IBAN:
        return False
    raw = value.encode()
    return b"aa00" in raw.translate(_IBAN_SHAPE) or _has_non_ascii_digit(value, raw)


def _param_is_sensitive(raw_key: str, names: frozenset[str]) -> bool:
    """A key naming a secret word (any casing or compound) or a configured parameter."""
    key = unquote_plus(raw_key)
    if name_is_sensitive(key, SECRET_LONG_NAMES, SECRET_SHORT_NAMES):
        return True
    if not names:
        return False
    key = key.lower()
    if key in names:
        return True
    # user[email], reset_token, x-api-key: any word of the key that is a listed name
    return any(token in names for token in _KEY_TOKENS.split(key) if token)


def looks_random(value: str) -> bool:
    """Conservative: a 20+ character run that reads like a generated token, not a word.

    Upper, lower and scattered digits with frequent class changes (base62/base64
    tokens), or 32+ hex characters with digits and letters (hex tokens, hashes).
    Slugs ("spring-sale-2024"), words and CamelCase titles stay.
    """
    n = len(value)
    if n < 20 or n > 1024 or not _TOKEN_ALPHABET.fullmatch(value):
        return False
    # Counted with C-level scans (this runs on every long run of text).
    switches = len(_CLASS_RUN.findall(value)) - 1  # changes between lower/upper/digit/other
    digit_runs = len(_DIGIT_RUN.findall(value))  # a title ends in "2024"; a token scatters them
    digit = digit_runs > 0
    lower = value.upper() != value
    upper = value.lower() != value
    if n >= 32 and digit and (lower or upper) and _HEX_RUN.fullmatch(value):
        return _entropy(value) >= 3.0 and switches >= 0.15 * (n - 1)
    if lower and upper:
        if switches < 0.4 * (n - 1) or _entropy(value) < 3.5:
            return False
        # A title ends in "2024"; a token scatters its digits (a long one may
        # hold one run). A token with fewer digits has few vowels: words and
        # short-worded titles ("IsItOnOrOff") have a third or more.
        if digit_runs >= (1 if n >= 32 else 2):
            return True
        return _vowels(value) <= 0.3 * _letters(value)
    # One letter case (base36: session ids, "k3j5h6g7..."): no separators (slugs
    # have them), digits in several places, few vowels (words joined with
    # numbers, "covid19update2021", have a third or more), high entropy.
    if n < 24 or digit_runs < 2 or not value.isalnum() or _entropy(value) < 3.5:
        return False
    few_vowels = _vowels(value) <= 0.3 * _letters(value)
    return few_vowels or (digit_runs >= 4 and switches >= 0.3 * (n - 1))


def looks_generated(value: str) -> bool:
    """``looks_random`` of a run, a UUID, or one of the run's
    alphanumeric pieces ("whsec_<hex>", Django's "<base36>-<hex>" reset token)."""
    if looks_random(value):
        return True
    if len(value) == 36 and _UUID.fullmatch(value):
        return True  # 122 random bits (v4) in a link: an invite or verification token
    if value.isalnum():
        return False
    return any(looks_random(piece.group()) for piece in _TOKEN_PIECE.finditer(value))


def random_token_spans(value: str) -> list[tuple[int, int]]:
    """Spans of the token-alphabet runs in text that look generated (or their
    generated pieces: the words around a token in a path stay)."""
    spans: list[tuple[int, int]] = []
    long_run_end = -1  # where the last 1024-character chunk of a longer run ended
    for match in _TEXT_TOKEN.finditer(value):
        run = match.group()
        start, end = match.span()
        if start == long_run_end or len(run.rstrip("=")) >= _MAX_RUN_CHARS:
            long_run_end = end  # part of a run of 1024+ characters: data, not a credential
            continue
        if "/" in run and any(_is_path_word(part) for part in run.split("/")):
            # a path ("com/services/<token>"), not base64: only its generated segments
            base = match.start()
            for part in _PATH_PART.finditer(run):
                if looks_generated(part.group()):
                    spans.append((base + part.start(), base + part.end()))
        elif looks_random(run):
            spans.append(match.span())
        elif not run.isalnum():
            base = match.start()
            for piece in _TOKEN_PIECE.finditer(run):
                if looks_random(piece.group()):
                    spans.append((base + piece.start(), base + piece.end()))
    return spans


_PATH_PART = re.compile(r"[^/]{20,}")


def _is_path_word(part: str) -> bool:
    """A lower-case word of a path ("api", "services"), which base64 rarely holds."""
    return len(part) >= 3 and part.isalpha() and part.islower()


def looks_secret_value(value: str) -> bool:
    """A value under a weak secret word (``key``, ``api``...) that reads like a
    credential: gitleaks' generic-api-key test, 10+ characters of entropy >= 3.5,
    with a digit, no spaces."""
    n = len(value)
    if n < 10 or n > 4096 or not any(c.isdigit() for c in value):
        return False
    if any(c.isspace() for c in value):
        return False
    return _entropy(value) >= 3.5


_CLASS_RUN = re.compile(r"[a-z]+|[A-Z]+|[0-9]+|[^A-Za-z0-9]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
_HEX_RUN = re.compile(r"[0-9a-fA-F]+")
_DROP_NON_LETTERS = str.maketrans("", "", "0123456789_+/=-")
_DROP_VOWELS = str.maketrans("", "", "aeiouAEIOU")


def _letters(value: str) -> int:
    """Letters in a token-alphabet run."""
    return len(value.translate(_DROP_NON_LETTERS))


def _vowels(value: str) -> int:
    return len(value) - len(value.translate(_DROP_VOWELS))
# base64/base64url/hex: what generated tokens are written in (not encoded URLs).
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_+/=-]+")


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    # log2(n) - sum(c * log2(c)) / n, the c * log2(c) terms from a table (C-level map)
    n = len(value)
    if n > MAX_ENTROPY_CHARS:
        return -sum(c / n * math.log2(c / n) for c in Counter(value).values())
    return math.log2(n) - sum(map(_C_LOG_C.__getitem__, Counter(value).values())) / n


MAX_ENTROPY_CHARS = 4096
_C_LOG_C: tuple[float, ...] = (0.0, *(c * math.log2(c) for c in range(1, MAX_ENTROPY_CHARS + 1)))


def _scrub_encoded_params(value: str, names: frozenset[str], counts: Counter[str]) -> str:
    """Mask secret parameters of a URL percent-encoded inside another URL's parameter."""

    def replace(match: re.Match[str]) -> str:
        raw_value = match.group(4)
        key = match.group(2)
        if not raw_value or not (
            _param_is_sensitive(key, names)
            or (key_is_weak_secret(key) and looks_secret_value(raw_value))
        ):
            return match.group(0)
        counts["url_param"] += 1
        return match.group(0)[: match.start(4) - match.start()] + MASK_CHAR * len(raw_value)

    return _ENCODED_PARAM.sub(replace, value)


def _scrub_header_lines(value: str, names: frozenset[str], counts: Counter[str]) -> str:
    """Mask the values of ``Secret-Name: value`` pairs (headers in a log line)."""

    def replace(match: re.Match[str]) -> str:
        raw_value = match.group(3)
        if set(raw_value) == _MASKED or not _param_is_sensitive(match.group(2), names):
            return match.group(0)
        counts["secret_header"] += 1
        return match.group(0)[: match.start(3) - match.start()] + MASK_CHAR * len(raw_value)

    return _HEADER_LINE.sub(replace, value)


def _scrub_json_members(value: str, names: frozenset[str], counts: Counter[str]) -> str:
    """Mask the value of every JSON member whose name says it is a secret, whatever
    its type (JSON carried in a string, a data-* attribute, a log line), and the
    ``value`` of a ``{"name": <secret name>, "value": …}`` pair (HAR headers)."""
    pieces: list[str] = []
    last = 0
    pos = 0
    pair_names_secret = False  # the member just read was "name": "<secret name>"
    search = _JSON_KEY.search
    while (match := search(value, pos)) is not None:
        pos = match.end()
        key = match.group(1)
        pair_value = pair_names_secret and key == "value"
        pair_names_secret = False
        if key == "name" and (quoted := _JSON_PAIR_NAME.match(value, pos)) is not None:
            pair_names_secret = _param_is_sensitive(quoted.group(1), names)
            pos = quoted.end()
            continue
        if not pair_value and not _param_is_sensitive(key, names):
            if key_is_weak_secret(match.group(1)) and value.startswith('"', pos):
                end = _string_end(value, pos + 1)
                if looks_secret_value(value[pos + 1 : end]):
                    pieces.append(value[last : pos + 1])
                    pieces.append(MASK_CHAR * (end - pos - 1))
                    counts["secret_json"] += 1
                    last = pos = end
            continue
        start = end = pos
        if value.startswith('\\"', pos):
            start = pos + 2
            end = value.find('\\"', start)
            if end < 0:
                end = len(value)
        elif value.startswith('"', pos):
            start = pos + 1
            end = _string_end(value, start)
        elif (number := _JSON_NUMBER.match(value, pos)) is not None:
            # A number becomes a string of the same length, so the JSON still parses.
            width = number.end() - pos
            pieces.append(value[last:pos])
            pieces.append('"' + MASK_CHAR * (width - 2) + '"' if width >= 2 else "0")
            counts["secret_json"] += 1
            last = pos = number.end()
            continue
        elif value.startswith(("{", "["), pos):
            end = _container_end(value, pos)  # everything inside, brackets included
        elif _JSON_LITERAL.match(value, pos) is not None:
            continue
        if end > start:
            pieces.append(value[last:start])
            pieces.append(MASK_CHAR * (end - start))
            counts["secret_json"] += 1
            last = pos = end
    if not pieces:
        return value
    pieces.append(value[last:])
    return "".join(pieces)


def _container_end(value: str, start: int) -> int:
    """End of the JSON object/array opening at ``start`` (or of ``value``), one pass."""
    depth = 0
    pos = start
    n = len(value)
    while pos < n:
        ch = value[pos]
        if ch == '"':
            pos = _string_end(value, pos + 1)
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return n


def _string_end(value: str, start: int) -> int:
    """Index of the closing quote of a JSON string starting at ``start`` (or the end)."""
    pos = start
    while True:
        quote = value.find('"', pos)
        if quote < 0:
            return len(value)
        backslashes = 0
        while quote - backslashes - 1 >= start and value[quote - backslashes - 1] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return quote
        pos = quote + 1


def _scrub_path_segments(url: str, counts: Counter[str]) -> str:
    """Mask path segments that look like random tokens (reset and magic links)."""
    if "/" not in url:
        return url
    path_end = len(url)
    for sep in "?#":
        cut = url.find(sep)
        if 0 <= cut < path_end:
            path_end = cut

    def replace(match: re.Match[str]) -> str:
        segment = match.group()
        if not looks_generated(segment):
            return segment
        counts["url_path_secret"] += 1
        return MASK_CHAR * len(segment)

    return _PATH_SEGMENT.sub(replace, url[:path_end]) + url[path_end:]


def card_number(number: int) -> bool:
    """True if a JSON integer has a card number's length and checksum."""
    digits = str(number)
    return 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


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
            pos = start + 5  # past the first group (4+ digits and a separator)
    return found


def _card_end(candidate: str) -> int:
    """Length of the longest Luhn-valid 13-19 digit prefix of whole groups; 0 if none."""
    if len(candidate) <= 19 and candidate.isdigit():
        return len(candidate) if luhn_valid(candidate) else 0
    ends: list[int] = []  # ends (in candidate) of the prefixes with 13-19 digits
    count = 0
    end = -1
    if not candidate.isascii():
        candidate = _NON_ASCII_SPACE.sub(" ", candidate)  # same length: spans stay right
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


def _iban_span(value: str, start: int) -> tuple[int, int] | None:
    """The span of the IBAN starting at ``start`` (its country's length), if valid.

    Reads exactly the country's number of letters and digits (single spaces
    between: ASCII, no-break, thin and the other spaces cards are grouped with,
    or dashes), so the words after an IBAN never take part in the check.
    """
    expected = IBAN_LENGTHS.get(value[start : start + 2].upper())
    if expected is None:
        return None
    end = start + expected
    compact = value[start:end]
    if not compact.isalnum():
        # the expected-th character that is not a separator (single ones only)
        matched = _IBAN_PREFIXES[expected].match(value, start)
        if matched is None:
            return None
        end = matched.end()
        compact = matched.group().translate(_DROP_SEPARATORS)
    if end < len(value) and value[end].isalnum():
        return None  # longer than the country's IBAN: some other code
    if not iban_valid(compact):
        return None
    return start, end


# A prefix of exactly n alphanumerics with single separators between, per IBAN length.
_IBAN_PREFIXES: dict[int, re.Pattern[str]] = {
    n: re.compile(
        r"[A-Za-z0-9](?:[" + _CARD_SEPARATORS + r"]?[A-Za-z0-9]){" + str(n - 1) + "}"
    )
    for n in set(IBAN_LENGTHS.values())
}
_DROP_SEPARATORS = str.maketrans("", "", _CARD_SEPARATORS)
