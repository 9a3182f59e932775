"""The masker's fast paths answer exactly what the slow paths they skip would.

The scrub gate (:func:`services.masker.detectors.may_need_scrub`) is a cheap
proof that no detector can match; the core's other gates (card digits, token
hints, the clean-text memory) skip scans. These properties check the gate
against the pattern it stands for, and that scrubbing and a whole masked batch
are the same with the fast paths as with every scan run
(``replaypipe_masker_core.set_fast_paths(False)``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import orjson
import replaypipe_masker_core as core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.masker import batch, detectors
from services.masker.detectors import Scrubber, mask_text, may_need_scrub
from services.masker.rules import SessionMaskState, mask_batch
from services.masker.token_rules import TOKEN_HINTS, token_spans
from services.shared.site_settings import SiteSettings
from tests.unit.strategies_rrweb import Scenario, scenarios

FAST_PATH_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Characters every gate reads: the detectors' triggers, Unicode digits and spaces
# (\d and \s know more than ASCII), separators and plain letters.
_CHARS = list('@="%:/_-.?&# \t\n\x1c\x1f\u00a0\u2009') + list("0123456789٣१") + list(
    "aAbBeEgGhHiIkKpPsStTxXyYzZJ"
)
_FRAGMENTS = [
    *TOKEN_HINTS, "%40", "4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444",
    "4111\u00a01111\u20091111\u00a01111", "DE89370400440532013000", "de89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432", "token=", "£", "é",
]
texts = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.text(alphabet=st.sampled_from(_CHARS), max_size=8)),
    max_size=8,
).map("".join)


# What every text scrub() may change holds: this pattern or a token hint.
_SCRUB_CANDIDATE = re.compile(r'[@\d="]|%40')
_NON_SPACE = re.compile(r"\S")


def _slow_scrub_gate(value: str) -> bool:
    return _SCRUB_CANDIDATE.search(value) is not None or any(hint in value for hint in TOKEN_HINTS)


def _slow_mask_text(value: str) -> str:
    return _NON_SPACE.sub(detectors.MASK_CHAR, value)


@contextmanager
def slow_paths() -> Iterator[None]:
    """The masker with every fast path replaced by the scan it stands for."""
    core.set_fast_paths(False)
    try:
        with mock.patch.object(batch, "_TEXT_RULE_BITS", -1):
            yield
    finally:
        core.set_fast_paths(True)


@FAST_PATH_SETTINGS
@given(texts)
def test_scrub_gate_answers_exactly_what_the_pattern_and_hint_scan_answer(value: str) -> None:
    assert may_need_scrub(value) == _slow_scrub_gate(value)


def test_scrub_gate_and_mask_text_are_exact_for_every_character_alone_and_in_words() -> None:
    # The gates decide per character class; every code point up to U+3000 (ASCII,
    # Latin, Unicode digits and spaces) alone, and before and after a word.
    for code in range(0x3000):
        for value in (chr(code), f"plain {chr(code)}text", f"{chr(code)}bearer"):
            assert may_need_scrub(value) == _slow_scrub_gate(value), repr(value)
            assert mask_text(value) == _slow_mask_text(value), repr(value)


@FAST_PATH_SETTINGS
@given(st.one_of(texts, st.text()))
def test_mask_text_of_ascii_text_equals_the_regex_substitution(value: str) -> None:
    assert mask_text(value) == _slow_mask_text(value)


@FAST_PATH_SETTINGS
@given(texts)
def test_token_gate_answers_exactly_whether_a_token_hint_occurs(value: str) -> None:
    assert core.may_hold_token(value) == any(hint in value for hint in TOKEN_HINTS)
    if not core.may_hold_token(value):
        assert token_spans(value) == []


@FAST_PATH_SETTINGS
@given(texts)
def test_a_text_the_gate_calls_clean_is_unchanged_by_every_scan(value: str) -> None:
    if may_need_scrub(value):
        return
    scrubber = Scrubber.build(["email", "card", "iban"], ["q"])
    with slow_paths():
        counts: Counter[str] = Counter()
        assert scrubber.find_pii(value, counts) == []
        assert core.card_spans(value) == []
        assert token_spans(value) == []
        assert scrubber.scrub(value, counts) == value
    assert counts == Counter()


@FAST_PATH_SETTINGS
@given(texts)
def test_pii_found_with_and_without_the_card_gate_is_the_same(value: str) -> None:
    scrubber = Scrubber()
    fast_counts: Counter[str] = Counter()
    fast = scrubber.find_pii(value, fast_counts)
    slow_counts: Counter[str] = Counter()
    with slow_paths():
        slow = scrubber.find_pii(value, slow_counts)
    assert (fast, fast_counts) == (slow, slow_counts)


@FAST_PATH_SETTINGS
@given(texts, st.booleans(), st.booleans())
def test_scrub_gives_the_same_text_and_counts_with_and_without_fast_paths(
    value: str, url: bool, payload: bool
) -> None:
    scrubber = Scrubber.build(["email", "card", "iban"], ["q"])
    fast_counts: Counter[str] = Counter()
    fast = scrubber.scrub(value, fast_counts, url=url, payload=payload)
    slow_counts: Counter[str] = Counter()
    with slow_paths():
        slow = scrubber.scrub(value, slow_counts, url=url, payload=payload)
    assert (fast, fast_counts) == (slow, slow_counts)


@FAST_PATH_SETTINGS
@given(st.lists(texts, min_size=1, max_size=6))
def test_a_text_scrubbed_again_gives_the_same_text_and_counts_as_the_first_time(
    values: list[str],
) -> None:
    # The second time a short clean text comes from the scrubber's memory, not a scan.
    scrubber = Scrubber.build(["email", "card", "iban"], [])

    def scrub_all() -> list[tuple[str, Counter[str]]]:
        out = []
        for value in values:
            counts: Counter[str] = Counter()
            out.append((scrubber.scrub(value, counts), counts))
        return out

    first = scrub_all()
    assert scrub_all() == first


def test_the_scrubbers_memory_of_clean_texts_is_bounded() -> None:
    scrubber = Scrubber()
    for n in range(detectors.MAX_CLEAN_TEXTS * 2):
        scrubber.scrub(f"plain text {n:x}", Counter())
    assert 0 < scrubber.clean_texts() <= detectors.MAX_CLEAN_TEXTS


def _masked(scenario: Scenario) -> tuple[Any, Counter[str], list[int]]:
    events = orjson.loads(orjson.dumps(scenario.events))
    state = SessionMaskState()
    result = mask_batch(events, state, scenario.site, scenario.consent)
    return result.events, result.counts, state.nodes.to_list()


@FAST_PATH_SETTINGS
@given(scenarios())
def test_a_masked_batch_is_identical_with_and_without_fast_paths(scenario: Scenario) -> None:
    fast = _masked(scenario)
    with slow_paths():
        slow = _masked(scenario)
    assert fast == slow


def _page_of(values: list[str]) -> list[Any]:
    """A full snapshot with each value as a text node and as a title and class."""
    nodes = [
        {
            "type": 2, "id": 10 + 2 * n, "tagName": "p",
            "attributes": {"title": value, "class": value, "data-x": value},
            "childNodes": [{"type": 3, "id": 11 + 2 * n, "textContent": value}],
        }
        for n, value in enumerate(values)
    ]
    body = {"type": 2, "id": 2, "tagName": "body", "attributes": {}, "childNodes": nodes}
    document = {"type": 0, "id": 1, "childNodes": [body]}
    return [{"type": 2, "timestamp": 1, "data": {"node": document}}]


@FAST_PATH_SETTINGS
@given(st.lists(texts, min_size=1, max_size=4), st.sampled_from(["£ ", "é", "", "\u00a0"]))
def test_latin1_page_text_masks_the_same_with_and_without_fast_paths(
    values: list[str], prefix: str
) -> None:
    # Characters outside ASCII ("£" before a price) count as digits and separators
    # to the gates; the result must be what every scan gives.
    site = SiteSettings(site_id="demo", pii_detectors=("email", "card", "iban"))
    page = _page_of([prefix + value for value in values])

    def masked() -> tuple[Any, Counter[str]]:
        events = orjson.loads(orjson.dumps(page))
        result = mask_batch(events, SessionMaskState(), site)
        return result.events, result.counts

    fast = masked()
    with slow_paths():
        slow = masked()
    assert fast == slow
