"""The string rules as the compiled core runs them: the Python face keeps the
Python API, and where Python's Unicode classes cannot be matched exactly the
core masks more (docs/masking.md, "The compiled core")."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from hypothesis import given, settings
from hypothesis import strategies as st

from services.masker.detectors import Scrubber, card_number, mask_text
from services.masker.sensitivity import (
    DEFAULT_SENSITIVE_NAMES,
    SECRET_LONG_NAMES,
    SECRET_SHORT_NAMES,
    key_is_secret,
    name_is_sensitive,
    split_names,
)
from services.masker.token_rules import TOKEN_HINTS, TOKEN_RULES, token_spans

SCRUBBER = Scrubber.build(("email", "card", "iban"), ("q",))


def scrub(value: str, **options: bool) -> str:
    return SCRUBBER.scrub(value, Counter(), **options)


def test_an_unchanged_text_comes_back_as_the_same_string_object() -> None:
    text = "plain words " * 20
    assert scrub(text) is text


def test_masked_text_keeps_the_character_length_of_non_ascii_text() -> None:
    text = "Grüße an jane.doe@example.com, Ihr Team"
    masked = scrub(text)
    assert len(masked) == len(text)
    assert masked == "Grüße an " + "*" * len("jane.doe@example.com") + ", Ihr Team"


def arabic_indic(digits: str) -> str:
    return digits.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})


def test_a_card_in_digits_of_another_script_is_masked() -> None:
    # no checksum is computed on such digits: 13+ of them in card groups are masked
    card = arabic_indic("4111 1111 1111 1111")
    assert scrub(f"card {card} ok") == f"card {mask_text(card)} ok"


def test_a_token_right_after_a_letter_of_another_script_is_masked() -> None:
    token = "glpat-" + "k3j5h6g7f8d9s0a1q2w3"
    assert scrub("é" + token) == "é" + "*" * len(token)


def test_spans_on_the_python_face_are_code_point_offsets() -> None:
    text = "ü " + "AKIA" + "A" * 16
    assert token_spans(text) == [("aws_access_key", (2, 22))]
    assert SCRUBBER.find_pii("é a@b.com", Counter()) == [(2, 9)]


def test_counts_land_in_the_callers_counter() -> None:
    counts: Counter[str] = Counter({"pii_email": 1})
    SCRUBBER.scrub("a@b.com and c@d.org", counts)
    assert counts == Counter({"pii_email": 3})


def test_a_lone_surrogate_is_read_as_one_character() -> None:
    assert scrub("\ud800 a@b.com") == "? " + "*" * 7
    assert scrub("\ud800 plain") == "\ud800 plain"


def test_scrubbers_with_the_same_settings_are_equal_and_hash_alike() -> None:
    a = Scrubber.build(["email", "card"], [" Token ", ""])
    b = Scrubber(email=True, card=True, iban=False, query_params=frozenset({"token"}))
    assert a == b
    assert hash(a) == hash(b)
    assert a != Scrubber()
    assert a.query_params == frozenset({"token"})

    @lru_cache(maxsize=4)
    def built(scrubber: Scrubber) -> int:
        return id(scrubber)

    assert built(a) == built(b)


def test_json_integers_are_card_numbers_by_their_digits() -> None:
    assert card_number(4111111111111111)
    assert not card_number(4111111111111112)
    assert not card_number(-4111111111111111)
    assert not card_number(True)


def test_the_word_lists_are_the_cores() -> None:
    long_names, short_names = split_names(DEFAULT_SENSITIVE_NAMES)
    assert (long_names, short_names) == (SECRET_LONG_NAMES, SECRET_SHORT_NAMES)
    assert "password" in long_names and "pin" in short_names and "auth" in short_names
    assert key_is_secret("X-Api-Key") and not key_is_secret("author")


def test_name_lists_given_anew_are_read_anew() -> None:
    # the face caches compiled lists by identity: equal new lists give the same answers
    for _ in range(40):
        names = split_names([f"custom{n}" for n in range(3)])
        assert name_is_sensitive("user_custom2_field", *names)
        assert not name_is_sensitive("user_field", *names)
    assert name_is_sensitive("cardNumber", ["card"], frozenset())


def test_every_token_rule_has_hints_and_a_pattern() -> None:
    assert TOKEN_RULES and all(rule.hints and rule.pattern for rule in TOKEN_RULES)
    assert set(TOKEN_HINTS) == {h for rule in TOKEN_RULES for h in rule.hints}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(), st.booleans(), st.booleans())
def test_scrub_keeps_the_length_and_is_idempotent_on_any_text(
    value: str, url: bool, payload: bool
) -> None:
    once = scrub(value, url=url, payload=payload)
    assert len(once) == len(value)
    assert scrub(once, url=url, payload=payload) == once
