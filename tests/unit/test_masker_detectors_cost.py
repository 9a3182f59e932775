"""The string checks cost a bounded amount per character on any text.

Timing lives in bench/bench_detectors.py; these tests check that the cost is
linear: every detector reads bounded candidates and resumes after what it
consumed, so text 16 times longer takes about 16 times as long (a quadratic
scan would take 256 times as long), whatever the text is built to provoke.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from bench.bench_detectors import CASES, repeat_to
from services.masker import sensitivity
from services.masker.detectors import MAX_CANDIDATE_CHARS, Scrubber

SCRUBBER = Scrubber.build(("email", "card", "iban"), ("token", "email", "password"))


# Texts built to make one detector work hardest: bench/bench_detectors.py's,
# and a few for the scanners it has no case for.
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    **CASES,
    "JSON keys without colons": lambda n: repeat_to('"k" ', n),
    "header-like words": lambda n: repeat_to("Secret:Bearer ", n),
    "token alphabet run": lambda n: repeat_to("aB3", n),
    "URL storm": lambda n: repeat_to("//a", n),
    "private key header storm": lambda n: repeat_to("-----BEGIN PRIVATE KEY-----", n),
}


def cpu_seconds(text: str) -> float:
    """The fastest of five scrubs of ``text``."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        SCRUBBER.scrub(text, Counter(), payload=True)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("build", ADVERSARIAL.values(), ids=list(ADVERSARIAL))
def test_scrub_time_grows_linearly_with_adversarial_text(build: Callable[[int], str]) -> None:
    small, large = build(8 * 1024), build(128 * 1024)
    # 16x the text: linear is ~16x, quadratic ~256x; 64x leaves room for a loaded machine
    assert cpu_seconds(large) <= 64 * max(cpu_seconds(small), 2e-4)


def test_candidates_are_bounded_by_the_documented_maximum() -> None:
    # a 13-digit run longer than any candidate is scanned in bounded pieces
    text = "4" * (MAX_CANDIDATE_CHARS * 4)
    assert SCRUBBER.scrub(text, Counter()) == text


def test_digits_joined_by_single_spaces_are_not_a_card() -> None:
    text = "1 " * 5_000

    assert SCRUBBER.scrub(text, Counter()) == text


def test_a_long_run_of_four_digit_groups_is_masked_in_cards() -> None:
    counts: Counter[str] = Counter()
    SCRUBBER.scrub("4111 " * 5_000, counts)

    assert counts["pii_card"] <= 5_000


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


def test_huge_field_names_are_checked_in_full() -> None:
    names = [f"{i}-" + "x" * 10_000 for i in range(50)] + ["y" * 10_000 + "password"]

    found = [sensitivity.name_is_sensitive(n, ("password",), frozenset()) for n in names]

    assert found == [False] * 50 + [True]
