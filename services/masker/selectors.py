"""A small CSS selector subset, matched against serialised rrweb element nodes.

Supported (the subset the site settings may use):

* compound selectors made of a tag (``input``), ``*``, ``#id``, ``.class`` and
  attribute tests ``[attr]``, ``[attr=value]``, ``[attr~=value]``, ``[attr^=value]``,
  ``[attr$=value]``, ``[attr*=value]`` (values quoted or not, matched case-sensitively
  except tag names);
* the descendant combinator (whitespace); ``>`` is accepted and treated as a
  descendant combinator (matches a superset, which is the safe side for masking);
* selector lists separated by commas.

Pseudo-classes and pseudo-elements (``:not(...)``, ``::before``) are dropped from
the compound they appear in, so the remaining compound matches a superset of the
intended elements. A selector that cannot be parsed at all compiles to ``*``
(matches everything): when unsure, mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""
    \s*(?P<comb>>)\s*
  | (?P<ws>\s+)
  | (?P<tag>\*|[A-Za-z][A-Za-z0-9_-]*)
  | \#(?P<id>[A-Za-z0-9_\\-]+)
  | \.(?P<cls>[A-Za-z0-9_\\-]+)
  | \[\s*(?P<attr>[A-Za-z_:][A-Za-z0-9_:.-]*)\s*
        (?:(?P<op>[~^$*|]?=)\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\]\s]+))\s*)?\]
  | (?P<pseudo>::?[A-Za-z-]+(?:\((?:[^()]|\([^()]*\))*\))?)
    """,
    re.VERBOSE,
)

AttrTest = tuple[str, str, str]  # (name, operator or "", value)


class SelectorError(ValueError):
    """A selector outside the supported subset; the message names the selector."""


@dataclass(frozen=True, slots=True)
class Compound:
    """One compound selector: every part must hold on the same element."""

    tag: str | None = None
    element_id: str | None = None
    classes: tuple[str, ...] = ()
    attrs: tuple[AttrTest, ...] = ()

    def referenced_attributes(self) -> frozenset[str]:
        """Attribute names this compound looks at (``class`` and ``id`` included)."""
        names = {name for name, _, _ in self.attrs}
        if self.classes:
            names.add("class")
        if self.element_id is not None:
            names.add("id")
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class Selector:
    """A chain of compounds joined by descendant combinators (outermost first)."""

    source: str
    parts: tuple[Compound, ...]


def parse_selector_list(text: str) -> list[Selector]:
    """Parse a comma-separated selector list; raises :class:`SelectorError`."""
    selectors = []
    for chunk in text.split(","):
        chunk = chunk.strip()
        if not chunk:
            raise SelectorError(f"empty selector in {text!r}")
        selectors.append(_parse_one(chunk))
    return selectors


def _parse_one(text: str) -> Selector:
    parts: list[Compound] = []
    current: dict[str, Any] = {}
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise SelectorError(
                f"selector {text!r}: unsupported syntax at {text[pos:]!r} "
                "(supported: tag, #id, .class, [attr], [attr=value], descendant)"
            )
        pos = match.end()
        kind = match.lastgroup
        if match["attr"] is not None:
            value = match["dq"] if match["dq"] is not None else match["sq"]
            if value is None:
                value = match["bare"] or ""
            current.setdefault("attrs", []).append(
                (match["attr"].lower(), match["op"] or "", value)
            )
            continue
        if kind in ("ws", "comb"):
            if current:
                parts.append(_compound(current))
                current = {}
            continue
        if kind == "tag":
            if "tag" in current or current:
                raise SelectorError(f"selector {text!r}: a tag name must come first")
            current["tag"] = match["tag"].lower()
        elif kind == "id":
            current["id"] = match["id"].replace("\\", "")
        elif kind == "cls":
            current.setdefault("classes", []).append(match["cls"].replace("\\", ""))
        else:
            # pseudo-class/element: dropped, so the compound matches a superset
            current.setdefault("pseudo", True)
    if current:
        parts.append(_compound(current))
    if not parts:
        raise SelectorError(f"selector {text!r} selects nothing")
    return Selector(text, tuple(parts))


def _compound(values: Mapping[str, Any]) -> Compound:
    tag = values.get("tag")
    return Compound(
        tag=None if tag == "*" else tag,
        element_id=values.get("id"),
        classes=tuple(values.get("classes", ())),
        attrs=tuple(values.get("attrs", ())),
    )


def compile_selectors(texts: Iterable[str]) -> tuple[list[Selector], list[str]]:
    """Compile selector strings; unparseable ones become ``*`` and are reported.

    Returns the selectors and one human-readable problem per unusable input.
    """
    selectors: list[Selector] = []
    problems: list[str] = []
    for text in texts:
        try:
            selectors.extend(parse_selector_list(text))
        except SelectorError as exc:
            problems.append(f"{exc}; treated as '*' (matches every element)")
            selectors.append(Selector(text, (Compound(),)))
    return selectors, problems


def _attr_test(actual: str, op: str, expected: str) -> bool:
    if op == "":
        return True
    if op == "=":
        return actual == expected
    if op == "~=":
        return expected in actual.split()
    if op == "^=":
        return bool(expected) and actual.startswith(expected)
    if op == "$=":
        return bool(expected) and actual.endswith(expected)
    if op == "*=":
        return bool(expected) and expected in actual
    if op == "|=":
        return actual == expected or actual.startswith(expected + "-")
    return False


def compound_matches(part: Compound, tag: str, attrs: Mapping[str, Any]) -> bool:
    """True if an element with this (lower-case) tag and attributes matches ``part``."""
    if part.tag is not None and part.tag != tag:
        return False
    if part.element_id is not None and attrs.get("id") != part.element_id:
        return False
    if part.classes:
        cls = attrs.get("class")
        if not isinstance(cls, str):
            return False
        tokens = cls.split()
        if any(c not in tokens for c in part.classes):
            return False
    for name, op, value in part.attrs:
        actual = attrs.get(name)
        if not isinstance(actual, str) or not _attr_test(actual, op, value):
            return False
    return True


def compound_may_match_change(part: Compound, changed: Mapping[str, Any]) -> bool:
    """Whether an attribute mutation can make an element match ``part``.

    Only the changed attributes are known (not the tag, not the other attributes),
    so unknown parts count as matching; the change must touch at least one
    attribute the compound looks at, otherwise nothing new is learnt.
    """
    referenced = part.referenced_attributes()
    if not referenced or referenced.isdisjoint(changed):
        return False
    if part.element_id is not None and "id" in changed and changed["id"] != part.element_id:
        return False
    if part.classes and "class" in changed:
        cls = changed["class"]
        tokens = cls.split() if isinstance(cls, str) else []
        if any(c not in tokens for c in part.classes):
            return False
    for name, op, value in part.attrs:
        if name in changed:
            actual = changed[name]
            if not isinstance(actual, str) or not _attr_test(actual, op, value):
                return False
    return True
