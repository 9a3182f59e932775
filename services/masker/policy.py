"""A site's masking settings, precompiled: which elements are sensitive, which
selectors set which bits, and the string scrubber to use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from services.masker.detectors import Scrubber
from services.masker.selectors import (
    Selector,
    compile_selectors,
    compound_matches,
    compound_may_match_change,
)
from services.masker.sensitivity import (
    CONTEXT_SHIFT,
    DEFAULT_SENSITIVE_NAMES,
    F_BLOCK,
    F_IGNORE,
    F_INPUT_TEXT,
    F_MASK,
    F_MASK_INPUT,
    F_SCRIPT_ELEMENT,
    F_STYLE_ELEMENT,
    FLAG_BITS,
    MAX_CONTEXT_BITS,
    NOT_INHERITED,
    SENSITIVE_AUTOCOMPLETE,
    SENSITIVE_AUTOCOMPLETE_PREFIX,
    class_marks,
    name_is_sensitive,
    recording_ignore_marks,
    split_names,
)
from services.shared.site_settings import SiteSettings


@dataclass(frozen=True, slots=True)
class SelectorRule:
    """A compiled site selector and the bit it sets on matching elements."""

    selector: Selector
    flag: int
    context_base: int  # first context bit of its ancestor prefixes; -1: ancestors ignored


@dataclass(frozen=True, slots=True)
class MaskPolicy:
    """Everything :func:`mask_batch` needs from a site's settings, precompiled."""

    record_inputs: bool
    consent_mode: str
    long_sensitive_names: tuple[str, ...]
    short_sensitive_names: frozenset[str]
    selector_rules: tuple[SelectorRule, ...]
    scrubber: Scrubber
    selector_key: str
    problems: tuple[str, ...] = ()

    @classmethod
    def from_site(
        cls, site: SiteSettings, sensitive_names: Sequence[str] | None = None
    ) -> MaskPolicy:
        """Build (cached) from site settings and the deployment's sensitive-name list."""
        names = tuple(DEFAULT_SENSITIVE_NAMES if sensitive_names is None else sensitive_names)
        return _policy_for(
            site.record_inputs,
            site.consent_mode,
            tuple(site.mask_text_selectors),
            tuple(site.block_selectors),
            tuple(site.ignore_input_selectors),
            tuple(site.pii_detectors),
            tuple(site.scrub_query_params),
            names,
        )

    # --- element classification ---------------------------------------------

    def name_is_sensitive(self, value: str) -> bool:
        """True if a field name/id matches the sensitive-name list."""
        return name_is_sensitive(value, self.long_sensitive_names, self.short_sensitive_names)

    def field_is_sensitive(self, attrs: dict[str, Any]) -> bool:
        """Password type, card/OTP/password autocomplete, or a sensitive name or id."""
        field_type = attrs.get("type")
        if isinstance(field_type, str) and field_type.lower() == "password":
            return True
        autocomplete = attrs.get("autocomplete")
        if isinstance(autocomplete, str) and autocomplete:
            for token in autocomplete.lower().split():
                if token in SENSITIVE_AUTOCOMPLETE:
                    return True
                if token.startswith(SENSITIVE_AUTOCOMPLETE_PREFIX):
                    return True
        for key in ("name", "id"):
            value = attrs.get(key)
            if isinstance(value, str) and value and self.name_is_sensitive(value):
                return True
        return False

    def attribute_marks(self, attrs: dict[str, Any]) -> int:
        """Marks an element's own attributes carry, whether snapshotted or changed later:
        rrweb classes, ``data-recording-ignore``, sensitive fields, contenteditable."""
        bits = 0
        cls = attrs.get("class")
        if isinstance(cls, str) and "rr-" in cls:
            bits |= class_marks(cls)
        marker = attrs.get("data-recording-ignore")
        if marker is not None:
            bits |= recording_ignore_marks(marker)
        if self.field_is_sensitive(attrs):
            bits |= F_MASK_INPUT
        editable = attrs.get("contenteditable")
        if editable is not None and editable != "false":
            bits |= F_INPUT_TEXT
        return bits

    def element_value(self, tag: str, attrs: dict[str, Any], parent_value: int) -> int:
        """Bits of an element (own marks + inherited) with its children's selector context."""
        bits = (parent_value & ~NOT_INHERITED & FLAG_BITS) | self.attribute_marks(attrs)
        if tag == "textarea" or tag == "select":
            bits |= F_INPUT_TEXT
        elif tag == "style":
            bits |= F_STYLE_ELEMENT
        elif tag == "script":
            bits |= F_SCRIPT_ELEMENT
        context = parent_value >> CONTEXT_SHIFT
        child_context = context
        for rule in self.selector_rules:
            parts = rule.selector.parts
            last = len(parts) - 1
            base = rule.context_base
            if base < 0:
                if compound_matches(parts[last], tag, attrs):
                    bits |= rule.flag
                continue
            if (last == 0 or (context >> (base + last - 1)) & 1) and compound_matches(
                parts[last], tag, attrs
            ):
                bits |= rule.flag
            for k in range(last):
                if (k == 0 or (context >> (base + k - 1)) & 1) and compound_matches(
                    parts[k], tag, attrs
                ):
                    child_context |= 1 << (base + k)
        return bits | (child_context << CONTEXT_SHIFT)

    def change_marks(self, changed: dict[str, Any], value: int) -> int:
        """Marks an attribute mutation adds to an element (marks are never removed)."""
        bits = self.attribute_marks(changed)
        if self.selector_rules:
            context = value >> CONTEXT_SHIFT
            for rule in self.selector_rules:
                parts = rule.selector.parts
                last = len(parts) - 1
                base = rule.context_base
                if base >= 0 and last > 0 and not (context >> (base + last - 1)) & 1:
                    continue
                if compound_may_match_change(parts[last], changed):
                    bits |= rule.flag
        return bits

    def change_ancestor_marks(self, changed: dict[str, Any], value: int) -> tuple[int, int]:
        """What an attribute mutation means for an element's descendants through
        descendant-combinator selectors (``.vault span`` when ``vault`` is added).

        Returns ``(flags, context)``: ``context`` are the selector-progress bits
        the element's children inherit from now on, so nodes added under it are
        matched exactly; ``flags`` are the bits of the rules that may now match
        somewhere below, for the descendants that already exist. Their tags and
        attributes are not kept, so they all get the flag: more masked, never less.
        """
        flags = 0
        context_bits = 0
        context = value >> CONTEXT_SHIFT
        for rule in self.selector_rules:
            parts = rule.selector.parts
            last = len(parts) - 1
            base = rule.context_base
            if last == 0 or base < 0:
                continue  # no ancestor part, or ancestors ignored: matched where it applies
            for k in range(last):
                reached = k == 0 or (context >> (base + k - 1)) & 1
                if reached and compound_may_match_change(parts[k], changed):
                    flags |= rule.flag
                    context_bits |= 1 << (base + k)
        return flags, context_bits << CONTEXT_SHIFT


@lru_cache(maxsize=256)
def _policy_for(
    record_inputs: bool,
    consent_mode: str,
    mask_text_selectors: tuple[str, ...],
    block_selectors: tuple[str, ...],
    ignore_input_selectors: tuple[str, ...],
    pii_detectors: tuple[str, ...],
    scrub_query_params: tuple[str, ...],
    sensitive_names: tuple[str, ...],
) -> MaskPolicy:
    rules: list[SelectorRule] = []
    problems: list[str] = []
    next_bit = 0
    for texts, flag in (
        (block_selectors, F_BLOCK),
        (mask_text_selectors, F_MASK),
        (ignore_input_selectors, F_IGNORE),
    ):
        selectors, found = compile_selectors(texts)
        problems.extend(found)
        for selector in selectors:
            needed = len(selector.parts) - 1
            if needed and next_bit + needed <= MAX_CONTEXT_BITS:
                rules.append(SelectorRule(selector, flag, next_bit))
                next_bit += needed
            else:
                rules.append(SelectorRule(selector, flag, 0 if not needed else -1))
    key_source = "\x1f".join(
        ["\x1e".join(block_selectors), "\x1e".join(mask_text_selectors),
         "\x1e".join(ignore_input_selectors)]
    )
    long_names, short_names = split_names(sensitive_names)
    return MaskPolicy(
        record_inputs=record_inputs,
        consent_mode=consent_mode,
        long_sensitive_names=long_names,
        short_sensitive_names=short_names,
        selector_rules=tuple(rules),
        scrubber=Scrubber.build(pii_detectors, scrub_query_params),
        selector_key=hashlib.sha1(key_source.encode()).hexdigest()[:12],
        problems=tuple(problems),
    )
