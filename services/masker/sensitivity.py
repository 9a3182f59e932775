"""What counts as sensitive: field names, autocomplete tokens, and the node bits
(marks) that say how a node is masked.

Every node the masker sees gets a small integer of bits (blocked, text-masked,
sensitive input, input-ignored, form text, CSS/script text), inherited from its
parent; the bits above ``CONTEXT_SHIFT`` record which descendant-selector
prefixes its ancestors matched (see :mod:`services.masker.policy`).

The word rules (``name_is_sensitive``, ``split_names``, ``key_is_secret``,
``key_is_weak_secret``, ``class_marks``, ``recording_ignore_marks``) are the
masker core's (``services/masker/core/src/sensitivity.rs``, which compiles the
same default word lists); the lists and the node bits are here.
"""

from __future__ import annotations

from typing import Final

import replaypipe_masker_core as _core
from replaypipe_masker_core import (
    class_marks,
    key_is_secret,
    key_is_weak_secret,
    name_is_sensitive,
    recording_ignore_marks,
    split_names,
)

# The one list of secret words and the card and bank words, compiled in the
# core (sensitivity.rs says where each comes from): field names and ids, URL
# parameter keys, payload keys and attribute names are all checked against them.
# Names of 4+ characters match as substrings of the name with separators
# removed ("credit-card-number" contains "card"); shorter ones and those in
# WHOLE_WORD_NAMES must be a whole word ("cvv2", "user_ssn", "authToken").
SECRET_WORDS: Final[tuple[str, ...]] = tuple(_core.SECRET_WORDS)
DEFAULT_SENSITIVE_NAMES: Final[tuple[str, ...]] = tuple(_core.DEFAULT_SENSITIVE_NAMES)
# 4+ letter words that are parts of common harmless words ("author", "compass").
WHOLE_WORD_NAMES: Final = frozenset(_core.WHOLE_WORD_NAMES)
# gitleaks generic-api-key keywords too common to mask on their own ("sort_key",
# "api_version", "access_level"): a value under them is masked only when it
# looks generated (detectors.looks_secret_value). Whole words only.
WEAK_SECRET_WORDS: Final[tuple[str, ...]] = tuple(_core.WEAK_SECRET_WORDS)
SENSITIVE_AUTOCOMPLETE: Final = frozenset(_core.SENSITIVE_AUTOCOMPLETE)
# autocomplete tokens starting with "cc-" (cc-number, cc-csc, cc-exp*, cc-name, ...)
SENSITIVE_AUTOCOMPLETE_PREFIX: Final[str] = _core.SENSITIVE_AUTOCOMPLETE_PREFIX

# --- node bits -----------------------------------------------------------------

F_BLOCK: Final = 1 << 0  # blocked subtree: nothing inside is kept
F_MASK: Final = 1 << 1  # text, text attributes and input values masked
F_MASK_INPUT: Final = 1 << 2  # input values masked (sensitive field or inside one)
F_IGNORE: Final = 1 << 3  # input events dropped, values masked
F_INPUT_TEXT: Final = 1 << 4  # text that is form content (textarea, select, contenteditable)
F_STYLE_ELEMENT: Final = 1 << 5
F_SCRIPT_ELEMENT: Final = 1 << 6
F_CSS_TEXT: Final = 1 << 7
F_SCRIPT_TEXT: Final = 1 << 8
NOT_INHERITED: Final = F_STYLE_ELEMENT | F_SCRIPT_ELEMENT | F_CSS_TEXT | F_SCRIPT_TEXT
CONTEXT_SHIFT: Final = 10
FLAG_BITS: Final = (1 << CONTEXT_SHIFT) - 1
# Keeps stored ints JSON-safe (< 2**53): selectors beyond this ignore their ancestors.
MAX_CONTEXT_BITS: Final = 40
# A node the masker never saw: mask its text and values, but do not drop it.
UNKNOWN_NODE: Final = F_MASK | F_MASK_INPUT

# Field names and ids longer than this are never weak secrets (state.py bounds
# what it keeps by it too).
MAX_CACHED_NAME_CHARS: Final[int] = _core.MAX_CACHED_NAME_CHARS


SECRET_LONG_NAMES, SECRET_SHORT_NAMES = split_names(DEFAULT_SENSITIVE_NAMES)

__all__ = [
    "CONTEXT_SHIFT",
    "DEFAULT_SENSITIVE_NAMES",
    "FLAG_BITS",
    "F_BLOCK",
    "F_CSS_TEXT",
    "F_IGNORE",
    "F_INPUT_TEXT",
    "F_MASK",
    "F_MASK_INPUT",
    "F_SCRIPT_ELEMENT",
    "F_SCRIPT_TEXT",
    "F_STYLE_ELEMENT",
    "MAX_CACHED_NAME_CHARS",
    "MAX_CONTEXT_BITS",
    "NOT_INHERITED",
    "SECRET_LONG_NAMES",
    "SECRET_SHORT_NAMES",
    "SECRET_WORDS",
    "SENSITIVE_AUTOCOMPLETE",
    "SENSITIVE_AUTOCOMPLETE_PREFIX",
    "UNKNOWN_NODE",
    "WEAK_SECRET_WORDS",
    "WHOLE_WORD_NAMES",
    "class_marks",
    "key_is_secret",
    "key_is_weak_secret",
    "name_is_sensitive",
    "recording_ignore_marks",
    "split_names",
]
