"""docs/openapi.yaml stays true: every error code the gateway can answer is documented,
under the status it is answered with, and the documented paths are the served ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Codes built from a field or encoding name (f"invalid_{name}", f"invalid_{encoding}").
TEMPLATED = {
    "invalid_{name}": ("invalid_session_id", "invalid_window_id", "invalid_visitor_id"),
    "invalid_{encoding}": ("invalid_gzip", "invalid_deflate"),
}


def error_codes_in_code() -> set[tuple[int, str]]:
    """(status, code) of every ``Rejection(status, "code", ...)`` in services/ingest."""
    found: set[tuple[int, str]] = set()
    for source in (ROOT / "services" / "ingest").glob("*.py"):
        pattern = r"Rejection\(\s*(\d{3}),\s*f?\"([a-z_{}]+)\""
        for status, code in re.findall(pattern, source.read_text()):
            found.update((int(status), c) for c in TEMPLATED.get(code, (code,)))
    return found


def documented_statuses() -> dict[int, str]:
    """Each answer of ``POST /v1/recordings`` in the spec, with its description."""
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    post = spec.split("    post:", 1)[1].split("    options:", 1)[0]
    pattern = r'"(\d{3})":\s*\n\s*description: (.*)'
    return {int(status): description for status, description in re.findall(pattern, post)}


def test_every_error_code_is_documented_under_its_status() -> None:
    codes = error_codes_in_code()
    documented = documented_statuses()
    assert len(codes) > 20 and len(documented) > 5
    missing = sorted(
        (status, code)
        for status, code in codes
        if not re.search(rf"\b{code}\b", documented.get(status, ""))
    )
    assert missing == []


def test_the_served_paths_are_the_documented_paths() -> None:
    spec = (ROOT / "docs" / "openapi.yaml").read_text()
    app = (ROOT / "services" / "ingest" / "app.py").read_text()
    served = re.findall(r'add_(?:post|route)\((?:"OPTIONS", )?"(/[^"]+)"', app)
    assert served, "found no route in services/ingest/app.py: the pattern is out of date"
    assert sorted(path for path in set(served) if f"  {path}:" not in spec) == []
