"""Specifications of ``replaypipe mask`` (the offline masking command)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.masker import offline
from services.shared.site_settings import SiteSettings

SECRET = "S3cr3tOffline"


def _events() -> list[dict[str, Any]]:
    password = {
        "type": 2,
        "id": 4,
        "tagName": "input",
        "attributes": {"type": "password", "value": SECRET},
        "childNodes": [],
    }
    body = {"type": 2, "id": 3, "tagName": "body", "attributes": {}, "childNodes": [password]}
    root = {
        "type": 0,
        "id": 1,
        "childNodes": [
            {"type": 2, "id": 2, "tagName": "html", "attributes": {}, "childNodes": [body]}
        ],
    }
    return [
        {
            "type": 4,
            "timestamp": 1,
            "data": {"href": "https://x.example/?token=abc", "width": 1, "height": 1},
        },
        {"type": 2, "timestamp": 2, "data": {"node": root, "initialOffset": {"top": 0, "left": 0}}},
        {"type": 3, "timestamp": 3, "data": {"source": 5, "id": 4, "text": SECRET}},
    ]


def _run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: bytes) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    stdout = io.TextIOWrapper(out)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", err)
    code = offline.main(argv)
    stdout.flush()
    return code, out.getvalue(), err.getvalue()


def _ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _sites_file(tmp_path: Path, *sites: dict[str, Any]) -> Path:
    path = tmp_path / "sites.json"
    path.write_bytes(orjson.dumps({"sites": list(sites)}))
    return path


def test_mask_command_masks_ndjson_and_reports_counts_on_stderr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sites = _sites_file(tmp_path, {"site_id": "demo"}, {"site_id": "other"})
    code, out, err = _run(
        monkeypatch, ["--site-settings", str(sites), "--site", "demo"], _ndjson(_events()) + b"\n"
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    assert SECRET.encode() not in out and b"token=abc" not in out
    summary = orjson.loads(err.strip().splitlines()[-1])
    assert summary["events_in"] == 3 and summary["events_out"] == 3
    assert summary["counts"]["sensitive_field"] == 2
    assert summary["counts"]["url_param"] == 1


def test_mask_command_accepts_a_single_site_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "site.json"
    path.write_bytes(orjson.dumps({"site_id": "solo", "consent_mode": "required"}))
    code, out, err = _run(monkeypatch, ["--site-settings", str(path)], _ndjson(_events()))
    assert code == 0
    assert out == b""
    assert orjson.loads(err)["dropped"] == 3


def test_mask_command_needs_site_when_file_has_several(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sites = _sites_file(tmp_path, {"site_id": "a"}, {"site_id": "b"})
    code, _, err = _run(monkeypatch, ["--site-settings", str(sites)], b"")
    assert code == 2
    assert "--site" in err


def test_mask_command_names_the_bad_input_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sites = _sites_file(tmp_path, {"site_id": "a"})
    code, _, err = _run(monkeypatch, ["--site-settings", str(sites)], b"{}\nnot json\n")
    assert code == 2
    assert "line 2" in err


def test_mask_stream_carries_state_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offline, "CHUNK_EVENTS", 1)
    sink = io.BytesIO()
    site = SiteSettings(site_id="s", record_inputs=True)
    summary = offline.mask_stream(io.BytesIO(_ndjson(_events())), sink, site)
    assert SECRET.encode() not in sink.getvalue()
    assert summary["events_out"] == 3
