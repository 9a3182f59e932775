"""The string checks cost a bounded amount per character on any text (and field
name checks a bounded amount of memory).

Timing lives in bench/bench_detectors.py; these tests check the structure that
makes the cost linear: bounded candidates and no checksum work on text that
cannot hold a card.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from services.masker import detectors
from services.masker.detectors import MAX_CANDIDATE_CHARS, PII_PATTERNS, Scrubber

SCRUBBER = Scrubber.build(("email", "card", "iban"), ())


def max_width(pattern: re.Pattern[str]) -> int:
    # The regex parser's own (min, max) width; max is MAXREPEAT when unbounded.
    return int(re._parser.parse(pattern.pattern).getwidth()[1])  # type: ignore[attr-defined]


@pytest.mark.parametrize("pattern", PII_PATTERNS, ids=lambda p: p.pattern[:24])
def test_every_pii_pattern_matches_a_bounded_number_of_characters(
    pattern: re.Pattern[str],
) -> None:
    assert max_width(pattern) <= MAX_CANDIDATE_CHARS


@pytest.fixture
def luhn_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the card checksums the detectors compute (``calls["luhn"]``)."""
    calls = Counter[str]()
    real = detectors.luhn_valid

    def counting(digits: str) -> bool:
        calls["luhn"] += 1
        return real(digits)

    monkeypatch.setattr(detectors, "luhn_valid", counting)
    return calls


def test_digits_joined_by_single_spaces_cost_no_card_checksum(luhn_calls: Counter[str]) -> None:
    text = "1 " * 5_000

    assert SCRUBBER.scrub(text, Counter()) == text
    assert luhn_calls["luhn"] == 0


def test_card_checksums_stay_below_one_per_group_of_digits(luhn_calls: Counter[str]) -> None:
    groups = 5_000
    SCRUBBER.scrub("4111 " * groups, Counter())

    assert luhn_calls["luhn"] <= groups


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ref 2024 4111 1111 1111 1111", "ref 2024 **** **** **** ****"),
        ("amex 3782 822463 10005.", "amex **** ****** *****."),
        ("diners 3056-930902-5904", "diners ****************"),
        ("visa 4222222222222 ok", "visa ************* ok"),
        ("19 digits 4111 1111 1111 1111 003", "19 digits **** **** **** **** ***"),
    ],
)
def test_cards_in_their_usual_groupings_are_masked(raw: str, expected: str) -> None:
    assert SCRUBBER.scrub(raw, Counter()) == expected


def test_huge_field_names_are_checked_without_filling_the_cache() -> None:
    from services.masker import sensitivity

    cache = sensitivity._cached_name_is_sensitive
    before = cache.cache_info().currsize
    names = [f"{i}-" + "x" * 10_000 for i in range(50)] + ["y" * 10_000 + "password"]

    found = [sensitivity.name_is_sensitive(n, ("password",), frozenset()) for n in names]

    assert found == [False] * 50 + [True]
    assert cache.cache_info().currsize == before
