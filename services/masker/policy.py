"""A site's masking settings, precompiled: which elements are sensitive, which
selectors set which bits, and the string scrubber to use.

The element rules (sensitive fields, rrweb marks, site selectors and their
descendant context bits) live in the masker's compiled core
(``services/masker/core/src/policy.rs``, :class:`ElementRules`);
:class:`MaskPolicy` holds them with the rest of the site's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from replaypipe_masker_core import ElementRules, SelectorRule

from services.masker.detectors import Scrubber
from services.masker.sensitivity import DEFAULT_SENSITIVE_NAMES
from services.shared.site_settings import SiteSettings

__all__ = ["ElementRules", "MaskPolicy", "SelectorRule"]


@dataclass(frozen=True, slots=True)
class MaskPolicy:
    """Everything :func:`mask_batch` needs from a site's settings, precompiled."""

    record_inputs: bool
    consent_mode: str
    rules: ElementRules
    scrubber: Scrubber
    # Copied from ``rules`` once: read per batch and per attribute mutation.
    selector_rules: tuple[SelectorRule, ...]
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

    @property
    def long_sensitive_names(self) -> tuple[str, ...]:
        """Sensitive names matched as substrings (lower case, no separators)."""
        return self.rules.long_sensitive_names

    @property
    def short_sensitive_names(self) -> frozenset[str]:
        """Sensitive names matched as whole words only."""
        return self.rules.short_sensitive_names

    # --- element classification (ElementRules) ----------------------------------

    def name_is_sensitive(self, value: str) -> bool:
        """True if a field name/id matches the sensitive-name list."""
        return self.rules.name_is_sensitive(value)

    def field_is_sensitive(self, attrs: dict[str, Any]) -> bool:
        """Password type, card/OTP/password autocomplete, or a sensitive name or id."""
        return self.rules.field_is_sensitive(attrs)

    def attribute_marks(self, attrs: dict[str, Any]) -> int:
        """Marks an element's own attributes carry, whether snapshotted or changed later:
        rrweb classes, ``data-recording-ignore``, sensitive fields, contenteditable."""
        return self.rules.attribute_marks(attrs)

    def element_value(self, tag: str, attrs: dict[str, Any], parent_value: int) -> int:
        """Bits of an element (own marks + inherited) with its children's selector context."""
        return self.rules.element_value(tag, attrs, parent_value)

    def change_marks(self, changed: dict[str, Any], value: int) -> int:
        """Marks an attribute mutation adds to an element (marks are never removed)."""
        return self.rules.change_marks(changed, value)

    def change_ancestor_marks(self, changed: dict[str, Any], value: int) -> tuple[int, int]:
        """What an attribute mutation means for an element's descendants through
        descendant-combinator selectors (``.vault span`` when ``vault`` is added):
        ``(flags, context)``, see :meth:`ElementRules.change_ancestor_marks`."""
        return self.rules.change_ancestor_marks(changed, value)


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
    rules = ElementRules(
        mask_text_selectors, block_selectors, ignore_input_selectors, sensitive_names
    )
    return MaskPolicy(
        record_inputs=record_inputs,
        consent_mode=consent_mode,
        rules=rules,
        scrubber=Scrubber.build(pii_detectors, scrub_query_params),
        selector_rules=rules.selector_rules,
        selector_key=rules.selector_key,
        problems=rules.problems,
    )
