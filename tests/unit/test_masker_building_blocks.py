"""Specifications of the masker's building blocks: selectors, detectors, node index."""

from __future__ import annotations

from collections import Counter

import pytest

from services.masker.detectors import Scrubber, iban_valid, luhn_valid, mask_text
from services.masker.node_index import SessionNodeIndex
from services.masker.selectors import (
    SelectorError,
    compile_selectors,
    compound_matches,
    compound_may_match_change,
    parse_selector_list,
)

SCRUBBER = Scrubber.build(("email", "card", "iban"), ("token", "email"))


@pytest.mark.parametrize(
    ("selector", "tag", "attrs", "expected"),
    [
        ("input", "input", {}, True),
        ("INPUT", "input", {}, True),
        ("#a", "div", {"id": "a"}, True),
        (".x.y", "div", {"class": "y z x"}, True),
        (".x.y", "div", {"class": "x"}, False),
        ("[data-p]", "div", {"data-p": ""}, True),
        ("[type=password]", "input", {"type": "password"}, True),
        ('[name="card no"]', "input", {"name": "card no"}, True),
        ("[name^=cc]", "input", {"name": "ccnum"}, True),
        ("[name$=num]", "input", {"name": "ccnum"}, True),
        ("[name*=cn]", "input", {"name": "ccnum"}, True),
        ("[class~=b]", "div", {"class": "a b"}, True),
        ("input.x:focus", "input", {"class": "x"}, True),
        ("*", "span", {}, True),
    ],
)
def test_compound_selectors_match_like_css(
    selector: str, tag: str, attrs: dict[str, str], expected: bool
) -> None:
    (parsed,) = parse_selector_list(selector)
    assert compound_matches(parsed.parts[-1], tag, attrs) is expected


def test_child_combinator_is_read_as_descendant() -> None:
    (parsed,) = parse_selector_list("form > .secret input")
    assert [p.classes or p.tag for p in parsed.parts] == ["form", ("secret",), "input"]


def test_unsupported_selector_raises_a_specific_error() -> None:
    with pytest.raises(SelectorError, match="unsupported syntax"):
        parse_selector_list("div ~ !p")


def test_unparseable_selectors_compile_to_match_everything() -> None:
    selectors, problems = compile_selectors(["div ~ !p"])
    assert len(problems) == 1
    assert compound_matches(selectors[0].parts[-1], "anything", {})


def test_attribute_change_can_match_only_through_changed_attributes() -> None:
    (parsed,) = parse_selector_list("input.private")
    assert compound_may_match_change(parsed.parts[0], {"class": "private"})
    assert not compound_may_match_change(parsed.parts[0], {"class": "public"})
    assert not compound_may_match_change(parsed.parts[0], {"value": "x"})


def test_luhn_and_iban_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937040044053201300")  # wrong length for DE


def test_mask_text_keeps_whitespace() -> None:
    assert mask_text(" a\u00a0b ") == " *\u00a0* "


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mail ann@ex.io now", "mail ********* now"),
        ("?u=ann%40ex.io", "?u=***********"),
        ("card 4111-1111-1111-1111!", "card *******************!"),
        ("4111 1111 1111 1111 2024", "**** **** **** **** 2024"),
        ("x GB82 WEST 1234 5698 7654 32 y", "x **** **** **** **** **** ** y"),
        ("/a?token=abc&b=1", "/a?token=***&b=1"),
        ("#id_token=abc", "#id_token=***"),
        ("plain words 12 34", "plain words 12 34"),
    ],
)
def test_scrubber_masks_pii_and_query_params_keeping_length(raw: str, expected: str) -> None:
    counts: Counter[str] = Counter()
    assert SCRUBBER.scrub(raw, counts) == expected


def test_scrubber_counts_by_detector() -> None:
    counts: Counter[str] = Counter()
    SCRUBBER.scrub("a@b.io 4111111111111111 ?token=x", counts)
    assert counts == Counter({"pii_email": 1, "pii_card": 1, "url_param": 1})


@pytest.mark.parametrize(
    "typed",
    ["de89 3704 0044 0532 0130 00", "De89370400440532013000", "gb82west12345698765432"],
)
def test_an_iban_typed_in_lower_or_mixed_case_is_masked(typed: str) -> None:
    assert SCRUBBER.scrub(f"pay to {typed} today", Counter()) == (
        f"pay to {mask_text(typed)} today"
    )


def test_a_lower_case_code_that_fails_the_iban_checksum_is_kept() -> None:
    assert SCRUBBER.scrub("ref de89370400440532013001", Counter()) == "ref de89370400440532013001"


def test_disabled_detectors_do_not_run() -> None:
    scrubber = Scrubber.build(("iban",), ())
    assert scrubber.scrub("a@b.io", Counter()) == "a@b.io"


def test_node_index_merges_neighbouring_ids_with_equal_bits() -> None:
    index = SessionNodeIndex()
    for node_id in range(1, 101):
        index.set(node_id, 0)
    index.set(50, 2)
    assert index.runs() == [(1, 49, 0), (50, 50, 2), (51, 100, 0)]
    index.set(50, 0)
    assert index.get(50) == 0
    assert index.get(101) is None


def test_node_index_fills_gaps_out_of_order() -> None:
    index = SessionNodeIndex()
    for node_id in (1, 3, 2, 10, 5, 4):
        index.set(node_id, 1)
    assert index.runs() == [(1, 5, 1), (10, 10, 1)]


def test_node_index_round_trips_through_its_list_form() -> None:
    index = SessionNodeIndex()
    for node_id, value in ((1, 0), (2, 0), (7, 4), (8, 4), (20, 1)):
        index.set(node_id, value)
    assert SessionNodeIndex.from_list(index.to_list()).runs() == index.runs()


def test_node_index_ignores_malformed_stored_form() -> None:
    assert SessionNodeIndex.from_list([1, 2]).runs() == []
    assert SessionNodeIndex.from_list([5, 0, 0, -10, 0, 0]).runs() == []


def test_node_index_trim_forgets_the_oldest_runs() -> None:
    index = SessionNodeIndex()
    for node_id in range(0, 20, 2):
        index.set(node_id, 0)
    assert index.trim(3) == 7
    assert index.get(0) is None
    assert index.get(18) == 0
