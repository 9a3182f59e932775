"""The privacy-settings form: typed fields in, validated SiteSettings (or the problems) out.

Pure: the page and the ``replaypipe sites set`` command both use it, so a value
is checked the same way wherever it is typed. Selectors are checked by the
masker's own parser, so a problem is shown before saving, not found in a log.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.console.state import SettingsChange
from services.masker.selectors import compile_selectors
from services.shared.site_settings import (
    CONSENT_MODES,
    IP_MODES,
    PII_DETECTORS,
    SiteSettings,
    SiteSettingsError,
)

# Fields of SiteSettings that a site owner edits on the settings page.
EDITABLE_FIELDS = (
    "record_inputs",
    "consent_mode",
    "sample_rate",
    "retention_days",
    "mask_text_selectors",
    "block_selectors",
    "ignore_input_selectors",
    "pii_detectors",
    "scrub_query_params",
    "allowed_origins",
    "ip_mode",
)
SELECTOR_FIELDS = ("mask_text_selectors", "block_selectors", "ignore_input_selectors")
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True, slots=True)
class FormResult:
    """The settings to save, or the problems by field (then ``settings`` is None)."""

    settings: SiteSettings | None
    problems: dict[str, list[str]]


def lines(text: str) -> tuple[str, ...]:
    """One value per line (blank lines dropped): how list fields are typed."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def settings_from_form(current: SiteSettings, form: Mapping[str, Any]) -> FormResult:
    """Apply the posted form to ``current``; every field is checked as typed.

    ``form`` maps field names to strings (checkboxes: present means on;
    ``pii_detectors`` may be a list of the checked names).
    """
    problems: dict[str, list[str]] = {}
    values: dict[str, Any] = {}

    def problem(name: str, text: str) -> None:
        problems.setdefault(name, []).append(text)

    values["record_inputs"] = form.get("record_inputs") in ("on", "true", "1", True)
    consent = str(form.get("consent_mode", current.consent_mode))
    if consent not in CONSENT_MODES:
        problem("consent_mode", f"Choose one of {', '.join(CONSENT_MODES)}.")
    values["consent_mode"] = consent
    ip_mode = str(form.get("ip_mode", current.ip_mode))
    if ip_mode not in IP_MODES:
        problem("ip_mode", f"Choose one of {', '.join(IP_MODES)}.")
    values["ip_mode"] = ip_mode
    try:
        rate = float(str(form.get("sample_rate", current.sample_rate)))
        if not 0.0 <= rate <= 1.0:
            raise ValueError
        values["sample_rate"] = rate
    except ValueError:
        problem("sample_rate", "Type a number from 0 (record nothing) to 1 (record every visit).")
    try:
        days = int(str(form.get("retention_days", current.retention_days)))
        if not 1 <= days <= MAX_RETENTION_DAYS:
            raise ValueError
        values["retention_days"] = days
    except ValueError:
        problem("retention_days", f"Type a whole number of days from 1 to {MAX_RETENTION_DAYS}.")
    for name in SELECTOR_FIELDS:
        typed = lines(str(form.get(name, "\n".join(getattr(current, name)))))
        _, found = compile_selectors(typed)
        for text in found:
            problem(name, text)
        values[name] = typed
    detectors = form.get("pii_detectors", list(current.pii_detectors))
    chosen = tuple(detectors) if isinstance(detectors, list | tuple) else lines(str(detectors))
    unknown = sorted(set(chosen) - set(PII_DETECTORS))
    if unknown:
        problem("pii_detectors", f"Unknown detectors {unknown}; known: {', '.join(PII_DETECTORS)}.")
    values["pii_detectors"] = tuple(d for d in PII_DETECTORS if d in chosen)
    params = lines(str(form.get("scrub_query_params", "\n".join(current.scrub_query_params))))
    for param in params:
        if any(c in param for c in "=&?# "):
            problem("scrub_query_params", f"{param!r}: type a parameter name only, no = & ? #.")
    values["scrub_query_params"] = params
    origins = lines(str(form.get("allowed_origins", "\n".join(current.allowed_origins))))
    for origin in origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            problem(
                "allowed_origins",
                f"{origin!r}: type an origin like https://shop.example (scheme and host, no path).",
            )
    values["allowed_origins"] = origins
    if problems:
        return FormResult(None, problems)
    try:
        # The shared parser has the last word, so the page never saves what services refuse.
        settings = SiteSettings.from_dict(replace(current, **values).to_dict())
    except SiteSettingsError as exc:
        return FormResult(None, {"form": [str(exc)]})
    return FormResult(settings, {})


def settings_diff(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """The fields whose value changed: name → (before, after)."""
    old = before or {}
    return {name: (old.get(name), value) for name, value in after.items() if old.get(name) != value}


def settings_change(
    *, who: str, before: SiteSettings | None, after: SiteSettings, at_ms: int
) -> SettingsChange:
    """The history record of a save (token hashes left out: the token list tells those)."""
    return SettingsChange(
        change_id=uuid.uuid4().hex,
        site_id=after.site_id,
        who=who,
        at_ms=at_ms,
        before=None if before is None else _without_token_hashes(before.to_dict()),
        after=_without_token_hashes(after.to_dict()),
    )


def _without_token_hashes(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "read_token_sha256"}
