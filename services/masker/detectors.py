"""String-level scrubbers: length-keeping masks, PII detectors, query-parameter scrubbing.

The one implementation lives in the masker's compiled core
(``services/masker/core/src/detectors.rs``); this module is its Python name.
Every function keeps the length of the string it is given (so masked text
lays out like the original) and counts what it replaced in a ``Counter`` whose
keys are rule names (``pii_email``, ``pii_card``, ``pii_iban``, ``url_param``,
``url_random_value``, ``secret_json``, ``secret_header``, ``url_path_secret``,
``text_random_token``, ``token_<format>``).

- :class:`Scrubber` (``build``, ``scrub``, ``scrub_url``, ``scrub_query``,
  ``find_pii``): the scrubbers enabled for one site, with a bounded memory of
  short texts it found clean.
- :func:`mask_text`, :func:`luhn_valid`, :func:`iban_valid`, :func:`card_number`,
  :func:`looks_random`, :func:`looks_generated`, :func:`random_token_spans`,
  :func:`looks_secret_value`, :func:`may_need_scrub` (the gate: whether ``scrub``
  may change a text at all).
"""

from __future__ import annotations

from replaypipe_masker_core import (
    IBAN_LENGTHS,
    MASK_CHAR,
    MAX_CANDIDATE_CHARS,
    MAX_CLEAN_CHARS,
    MAX_CLEAN_TEXTS,
    Scrubber,
    card_number,
    iban_valid,
    looks_generated,
    looks_random,
    looks_secret_value,
    luhn_valid,
    mask_text,
    may_need_scrub,
    random_token_spans,
)

__all__ = [
    "IBAN_LENGTHS",
    "MASK_CHAR",
    "MAX_CANDIDATE_CHARS",
    "MAX_CLEAN_CHARS",
    "MAX_CLEAN_TEXTS",
    "Scrubber",
    "card_number",
    "iban_valid",
    "looks_generated",
    "looks_random",
    "looks_secret_value",
    "luhn_valid",
    "mask_text",
    "may_need_scrub",
    "random_token_spans",
]
