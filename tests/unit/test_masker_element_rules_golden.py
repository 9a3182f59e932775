"""The compiled core answers as the former Python element rules did.

``tests/fixtures/element_rules/former-python.json`` holds what the Python
implementation of ``selectors.py`` and ``MaskPolicy`` (before the port to
``services/masker/core``, commit 9868780) answered on a fixed random corpus:
600 selector texts built from tricky pieces (quotes, pseudo-classes, nested
parentheses, Unicode whitespace, combinators), 100 elements with odd
attribute values (non-strings, mixed case, rrweb classes, more than eight
attributes) and 10 site settings. Any difference is a change of masking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.masker.policy import MaskPolicy
from services.masker.selectors import (
    SelectorError,
    compound_matches,
    compound_may_match_change,
    parse_selector_list,
)
from services.shared.site_settings import SiteSettings

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "element_rules" / "former-python.json")
    .read_text(encoding="utf-8")
)
ELEMENTS: list[tuple[str, dict[str, Any]]] = [(tag, attrs) for tag, attrs in GOLDEN["elements"]]


def bits(values: Any) -> str:
    return "".join("1" if v else "0" for v in values)


def parsed(text: str) -> dict[str, Any]:
    try:
        selectors = parse_selector_list(text)
    except SelectorError as exc:
        return {"text": text, "error": str(exc)}
    return {
        "text": text,
        "parsed": [
            {
                "source": s.source,
                "parts": [
                    {
                        "tag": c.tag,
                        "id": c.element_id,
                        "classes": list(c.classes),
                        "attrs": [list(a) for a in c.attrs],
                        "matches": bits(compound_matches(c, t, a) for t, a in ELEMENTS),
                        "may_match_change": bits(
                            compound_may_match_change(c, a) for _, a in ELEMENTS
                        ),
                    }
                    for c in s.parts
                ],
            }
            for s in selectors
        ],
    }


def test_selectors_parse_and_match_as_before() -> None:
    differing = [
        case["text"] for case in GOLDEN["selectors"] if parsed(case["text"]) != case
    ]
    assert differing == []


@pytest.mark.parametrize("case", GOLDEN["policies"], ids=lambda c: c["selector_key"])
def test_element_rules_mark_elements_as_before(case: dict[str, Any]) -> None:
    selectors = case["site"]
    site = SiteSettings(
        site_id="s",
        mask_text_selectors=tuple(selectors["mask_text_selectors"]),
        block_selectors=tuple(selectors["block_selectors"]),
        ignore_input_selectors=tuple(selectors["ignore_input_selectors"]),
    )
    policy = MaskPolicy.from_site(site, case["sensitive_names"])
    assert policy.selector_key == case["selector_key"]
    assert list(policy.problems) == case["problems"]
    assert [[r.flag, r.context_base] for r in policy.selector_rules] == case["rules"]
    rows = []
    for tag, attrs in ELEMENTS:
        row = [policy.attribute_marks(attrs), int(policy.field_is_sensitive(attrs))]
        for parent in GOLDEN["parents"]:
            row += [
                policy.element_value(tag, attrs, parent),
                policy.change_marks(attrs, parent),
                *policy.change_ancestor_marks(attrs, parent),
            ]
        rows.append(row)
    assert rows == case["rows"]
