"""A small CSS selector subset, matched against serialised rrweb element nodes.

Supported (the subset the site settings may use):

* compound selectors made of a tag (``input``), ``*``, ``#id``, ``.class`` and
  attribute tests ``[attr]``, ``[attr=value]``, ``[attr~=value]``, ``[attr^=value]``,
  ``[attr$=value]``, ``[attr*=value]``, ``[attr|=value]`` (values quoted or not,
  matched case-sensitively except tag names);
* the descendant combinator (whitespace); ``>`` is accepted and treated as a
  descendant combinator (matches a superset, which is the safe side for masking);
* selector lists separated by commas.

Pseudo-classes and pseudo-elements (``:not(...)``, ``::before``) are dropped from
the compound they appear in, so the remaining compound matches a superset of the
intended elements. A selector that cannot be parsed at all compiles to ``*``
(matches everything): when unsure, mask.

The parser and the matching live in the masker's compiled core
(``services/masker/core/src/selectors.rs``); this module is their Python name.
"""

from __future__ import annotations

from replaypipe_masker_core import (
    Compound,
    Selector,
    SelectorError,
    compile_selectors,
    compound_matches,
    compound_may_match_change,
    parse_selector_list,
)

AttrTest = tuple[str, str, str]  # (name, operator or "", value), as Compound.attrs holds them

__all__ = [
    "AttrTest",
    "Compound",
    "Selector",
    "SelectorError",
    "compile_selectors",
    "compound_matches",
    "compound_may_match_change",
    "parse_selector_list",
]
