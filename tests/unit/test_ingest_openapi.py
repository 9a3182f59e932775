"""docs/openapi.yaml stays true: every error code the gateway can answer is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Codes built from a field or encoding name (f"invalid_{name}", f"invalid_{encoding}").
TEMPLATED = {
    "invalid_{name}": ("invalid_session_id", "invalid_window_id", "invalid_visitor_id"),
    "invalid_{encoding}": ("invalid_gzip", "invalid_deflate"),
}


def error_codes_in_code() -> set[str]:
    codes: set[str] = set()
    for source in (ROOT / "services" / "ingest").glob("*.py"):
        for code in re.findall(r"Rejection\(\s*\d{3},\s*f?\"([a-z_{}]+)\"", source.read_text()):
            codes.update(TEMPLATED.get(code, (code,)))
    return codes


def test_every_error_code_is_in_the_openapi_document() -> None:
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    codes = error_codes_in_code()
    assert len(codes) > 20
    assert sorted(c for c in codes if c not in spec) == []


def test_the_documented_path_is_the_served_path() -> None:
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    app = (ROOT / "services" / "ingest" / "app.py").read_text()
    for path in re.findall(r'add_(?:post|route)\((?:"OPTIONS", )?"(/[^"]+)"', app):
        assert f"  {path}:" in spec
