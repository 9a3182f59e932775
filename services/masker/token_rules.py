"""Known credential formats, each naming the scanner rule it comes from.

The table is small on purpose: formats with a fixed, distinctive prefix, so a
hit in page text is a credential, not a word. Every pattern matches a bounded
number of characters and runs only on text holding one of its literal
``hints``. The rules are compiled in the masker's core
(``services/masker/core/src/token_rules.rs``); this module lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from replaypipe_masker_core import TOKEN_HINTS as _HINTS
from replaypipe_masker_core import token_rule_table, token_spans

MAX_TOKEN_CHARS: Final = 8192


@dataclass(frozen=True, slots=True)
class TokenRule:
    """One credential format (its ``pattern`` is the core's regex source)."""

    name: str
    source: str  # the scanner rule this follows (gitleaks id, detect-secrets plugin, Relay rule)
    hints: tuple[str, ...]  # literals one of which every match contains
    pattern: str


TOKEN_RULES: Final[tuple[TokenRule, ...]] = tuple(
    TokenRule(name, source, tuple(hints), pattern)
    for name, source, hints, pattern in token_rule_table()
)
# Literals at least one of which every token match contains (a cheap gate).
TOKEN_HINTS: Final[tuple[str, ...]] = tuple(_HINTS)

__all__ = ["MAX_TOKEN_CHARS", "TOKEN_HINTS", "TOKEN_RULES", "TokenRule", "token_spans"]
