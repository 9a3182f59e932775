"""Per-site privacy and intake settings.

They come from a JSON file loaded at start (``SITES_FILE``) and are updated live
from the compacted topic ``sites.config`` (key = site id, value = the same JSON
object as one entry of the file, or a tombstone to remove the site).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import orjson

ConsentMode = Literal["none", "required", "mask_until_consent"]
IpMode = Literal["anonymize", "drop"]

CONSENT_MODES: tuple[ConsentMode, ...] = ("none", "required", "mask_until_consent")
IP_MODES: tuple[IpMode, ...] = ("anonymize", "drop")
PII_DETECTORS = ("email", "card", "iban")
DEFAULT_SCRUB_QUERY_PARAMS = (
    "token",
    "access_token",
    "auth",
    "code",
    "email",
    "password",
    "pass",
    "pwd",
    "secret",
    "session",
    "key",
    "api_key",
)


class SiteSettingsError(ValueError):
    """A site settings document that cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """Everything the pipeline knows about one site. Defaults are the safe choice."""

    site_id: str
    public_keys: tuple[str, ...] = ()
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    sample_rate: float = 1.0
    retention_days: int = 30
    record_inputs: bool = False
    consent_mode: ConsentMode = "none"
    mask_text_selectors: tuple[str, ...] = ()
    block_selectors: tuple[str, ...] = ()
    ignore_input_selectors: tuple[str, ...] = ()
    pii_detectors: tuple[str, ...] = PII_DETECTORS
    scrub_query_params: tuple[str, ...] = DEFAULT_SCRUB_QUERY_PARAMS
    ip_mode: IpMode = "anonymize"
    rate_limit_per_second: float = 50.0
    rate_limit_burst: int = 200
    read_token_sha256: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SiteSettings:
        """Build from a JSON object; unknown keys go to ``extra``, bad values raise."""
        site_id = doc.get("site_id")
        if not isinstance(site_id, str) or not site_id or ":" in site_id:
            raise SiteSettingsError("site_id must be a non-empty string without ':'")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {"site_id": site_id}
        for name, value in doc.items():
            if name == "site_id":
                continue
            if name not in known or name == "extra":
                values.setdefault("extra", {})[name] = value
                continue
            values[name] = _coerce(name, value)
        settings = cls(**values)
        if settings.consent_mode not in CONSENT_MODES:
            raise SiteSettingsError(f"site {site_id}: consent_mode must be one of {CONSENT_MODES}")
        if settings.ip_mode not in IP_MODES:
            raise SiteSettingsError(f"site {site_id}: ip_mode must be one of {IP_MODES}")
        if not 0.0 <= settings.sample_rate <= 1.0:
            raise SiteSettingsError(f"site {site_id}: sample_rate must be between 0 and 1")
        if settings.retention_days < 1:
            raise SiteSettingsError(f"site {site_id}: retention_days must be at least 1")
        unknown = set(settings.pii_detectors) - set(PII_DETECTORS)
        if unknown:
            raise SiteSettingsError(f"site {site_id}: unknown pii_detectors {sorted(unknown)}")
        return settings

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form (as in the file and on ``sites.config``)."""
        doc: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                doc.update(value)
            else:
                doc[f.name] = list(value) if isinstance(value, tuple) else value
        return doc

    def accepts_read_token(self, token: str) -> bool:
        """True if ``token`` is one of this site's read tokens (stored only as SHA-256)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        return digest in self.read_token_sha256


_TUPLE_FIELDS = {
    "public_keys",
    "allowed_origins",
    "mask_text_selectors",
    "block_selectors",
    "ignore_input_selectors",
    "pii_detectors",
    "scrub_query_params",
    "read_token_sha256",
}


def _coerce(name: str, value: Any) -> Any:
    if name in _TUPLE_FIELDS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SiteSettingsError(f"{name} must be a list of strings")
        return tuple(value)
    if name in ("enabled", "record_inputs"):
        if not isinstance(value, bool):
            raise SiteSettingsError(f"{name} must be true or false")
        return value
    if name in ("sample_rate", "rate_limit_per_second"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SiteSettingsError(f"{name} must be a number")
        return float(value)
    if name in ("retention_days", "rate_limit_burst"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SiteSettingsError(f"{name} must be an integer")
        return value
    return value


class SiteRegistry:
    """The current settings of every site, by id and by public key.

    Mutated only by :meth:`apply_update` (from ``sites.config``) and :meth:`replace_all`.
    """

    def __init__(self, sites: Iterable[SiteSettings] = ()) -> None:
        self._by_id: dict[str, SiteSettings] = {}
        self._by_key: dict[str, SiteSettings] = {}
        self.replace_all(sites)

    def replace_all(self, sites: Iterable[SiteSettings]) -> None:
        """Swap in a whole new set of sites."""
        self._by_id = {s.site_id: s for s in sites}
        self._reindex()

    def _reindex(self) -> None:
        self._by_key = {key: s for s in self._by_id.values() for key in s.public_keys}

    def get(self, site_id: str) -> SiteSettings | None:
        """Settings of a site by id, or None if unknown."""
        return self._by_id.get(site_id)

    def by_public_key(self, key: str) -> SiteSettings | None:
        """Settings of the site owning a public site key, or None."""
        return self._by_key.get(key)

    def all(self) -> list[SiteSettings]:
        """Every known site."""
        return list(self._by_id.values())

    def apply_update(self, site_id: str, value: bytes | None) -> SiteSettings | None:
        """Apply one ``sites.config`` record: JSON settings, or None (tombstone) to remove."""
        if value is None:
            self._by_id.pop(site_id, None)
            self._reindex()
            return None
        doc = orjson.loads(value)
        if not isinstance(doc, dict):
            raise SiteSettingsError(f"sites.config value for {site_id} is not a JSON object")
        doc.setdefault("site_id", site_id)
        if doc["site_id"] != site_id:
            raise SiteSettingsError("sites.config key and site_id differ")
        settings = SiteSettings.from_dict(doc)
        self._by_id[site_id] = settings
        self._reindex()
        return settings


def load_sites_file(path: str | Path) -> list[SiteSettings]:
    """Read a sites file: ``{"sites": [ {...}, ... ]}``."""
    doc = orjson.loads(Path(path).read_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("sites"), list):
        raise SiteSettingsError(f"{path}: expected an object with a 'sites' list")
    return [SiteSettings.from_dict(entry) for entry in doc["sites"]]
