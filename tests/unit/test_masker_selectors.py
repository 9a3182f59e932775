"""Specifications of the site selector subset and the element rules, as the
compiled core implements them (services/masker/core/src/selectors.rs, policy.rs).

The edge cases pin what the former Python implementation (a regex tokenizer,
Python's ``str`` methods) did, so the port changed no site's masking.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.masker.policy import ElementRules, MaskPolicy
from services.masker.selectors import (
    Compound,
    SelectorError,
    compound_matches,
    compound_may_match_change,
    parse_selector_list,
)
from services.masker.sensitivity import (
    CONTEXT_SHIFT,
    DEFAULT_SENSITIVE_NAMES,
    F_BLOCK,
    F_INPUT_TEXT,
    F_MASK,
    F_MASK_INPUT,
    MAX_CONTEXT_BITS,
)
from services.shared.site_settings import SiteSettings


def only_compound(text: str) -> Compound:
    (selector,) = parse_selector_list(text)
    (part,) = selector.parts
    return part


def rules(*mask_text: str, block: tuple[str, ...] = ()) -> ElementRules:
    return ElementRules(mask_text, block, (), DEFAULT_SENSITIVE_NAMES)


# --- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "div ~ !p",
            "selector 'div ~ !p': unsupported syntax at '~ !p' (supported: tag, #id, .class,"
            " [attr], [attr=value], descendant)",
        ),
        ("a,,b", "empty selector in 'a,,b'"),
        ("*div", "selector '*div': a tag name must come first"),
        (">", "selector '>' selects nothing"),
        ("a'b", "selector \"a'b\": unsupported syntax at \"'b\""),
    ],
)
def test_selector_errors_name_the_selector_as_python_repr(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as raised:
        parse_selector_list(text)
    assert str(raised.value).startswith(message)


def test_selector_error_is_a_value_error() -> None:
    assert issubclass(SelectorError, ValueError)


def test_a_quoted_value_not_followed_by_a_bracket_is_read_as_a_bare_value() -> None:
    assert only_compound('[a="x"y]').attrs == (("a", "=", '"x"y'),)
    assert only_compound("[a='x]").attrs == (("a", "=", "'x"),)


def test_attribute_names_are_lower_cased_and_values_kept() -> None:
    assert only_compound("[Data-X ^= 'Ab c' ]").attrs == (("data-x", "^=", "Ab c"),)


def test_pseudo_classes_with_nested_parentheses_are_dropped() -> None:
    part = only_compound("input.x:not(:is(.a)):focus::before")
    assert (part.tag, part.classes, part.attrs) == ("input", ("x",), ())


def test_unicode_whitespace_separates_compounds_as_python_split_does() -> None:
    (selector,) = parse_selector_list("form\u2003.card\x1cinput")
    assert [p.tag or p.classes for p in selector.parts] == ["form", ("card",), "input"]


def test_backslashes_are_dropped_from_ids_and_classes() -> None:
    part = only_compound("#a\\-b.c\\d")
    assert (part.element_id, part.classes) == ("a-b", ("cd",))


def test_compounds_compare_by_value() -> None:
    assert only_compound("div.x[a=b]") == Compound("div", None, ("x",), (("a", "=", "b"),))
    assert hash(only_compound("div.x")) == hash(only_compound("div.x"))
    assert only_compound("div.x").referenced_attributes() == frozenset({"class"})


# --- matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("en", True), ("en-us", True), ("enx", False), ("e", False)]
)
def test_dash_match_takes_the_value_or_its_dash_prefix(value: str, expected: bool) -> None:
    assert compound_matches(only_compound("[lang|=en]"), "p", {"lang": value}) is expected


@pytest.mark.parametrize("value", [None, 5, True, ["x"], {"x": 1}])
def test_attribute_values_that_are_not_strings_never_match(value: Any) -> None:
    for text in ("#x", ".x", "[a]", "[a=x]"):
        key = {"#x": "id", ".x": "class"}.get(text, "a")
        assert not compound_matches(only_compound(text), "div", {key: value})


def test_a_change_that_removes_the_id_cannot_make_an_id_selector_match() -> None:
    assert not compound_may_match_change(only_compound("#pay"), {"id": None})
    assert compound_may_match_change(only_compound("#pay.x"), {"class": "x y"})


# --- element rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        {"type": "PassWord"},
        {"autocomplete": "shipping CC-Exp"},
        {"autocomplete": "One-Time-Code"},
        {"name": "authToken"},
        {"id": "card-no"},
    ],
)
def test_sensitive_fields_are_found_in_any_case(attrs: dict[str, str]) -> None:
    assert rules().field_is_sensitive(attrs)
    assert rules().attribute_marks(attrs) & F_MASK_INPUT


@pytest.mark.parametrize(
    ("attrs", "marks"),
    [
        ({"contenteditable": True}, F_INPUT_TEXT),
        ({"contenteditable": ""}, F_INPUT_TEXT),
        ({"contenteditable": "false"}, 0),
        ({"contenteditable": None}, 0),
        ({"data-recording-ignore": 1}, F_MASK),
        ({"data-recording-ignore": " Events "}, F_BLOCK),
        ({"class": "a rr-mask"}, F_MASK),
        ({"class": 3}, 0),
    ],
)
def test_attribute_marks_of_odd_values(attrs: dict[str, Any], marks: int) -> None:
    assert rules().attribute_marks(attrs) == marks


def test_descendant_selector_context_passes_from_parent_to_child() -> None:
    policy = rules("form .card input")
    form = policy.element_value("form", {}, 0)
    card = policy.element_value("div", {"class": "card"}, form)
    assert not policy.element_value("input", {}, form) & F_MASK
    assert policy.element_value("input", {}, card) & F_MASK


def test_selectors_beyond_the_context_bits_ignore_their_ancestors() -> None:
    deep = " ".join(["div"] * (MAX_CONTEXT_BITS + 1)) + " b"  # needs 41 context bits
    policy = rules("form span", deep)
    bases = [r.context_base for r in policy.selector_rules]
    assert bases == [0, -1]
    # the deep rule matches a <b> anywhere; "form span" still needs the form
    assert policy.element_value("b", {}, 0) & F_MASK
    assert not policy.element_value("span", {}, 0) & F_MASK
    assert policy.element_value("span", {}, 1 << CONTEXT_SHIFT) & F_MASK


def test_selector_key_is_the_fingerprint_stored_states_were_made_with() -> None:
    # values computed by the former Python implementation: stored node bits
    # stay valid across the port
    site = SiteSettings(
        site_id="s",
        mask_text_selectors=(".secret", "form .card input"),
        block_selectors=("[data-private]",),
        ignore_input_selectors=("é",),
    )
    policy = MaskPolicy.from_site(site)
    assert policy.selector_key == "59786075a6e2"
    assert policy.problems == (
        "selector 'é': unsupported syntax at 'é' (supported: tag, #id, .class, [attr],"
        " [attr=value], descendant); treated as '*' (matches every element)",
    )
    assert MaskPolicy.from_site(SiteSettings(site_id="s")).selector_key == "e8fe5433bc14"
