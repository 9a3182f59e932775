"""Audit events from the console become audit_log rows (pure: no broker, no engine)."""

from __future__ import annotations

import uuid

import orjson

from services.console.audit import AuditAction, audit_event
from services.sink.audit import COLUMNS, audit_row


def test_replay_event_becomes_a_row_with_its_session() -> None:
    event = audit_event(
        AuditAction.REPLAY_OPENED,
        actor="v@x",
        site_id="shop",
        target="s-1",
        at_ms=1_700_000_000_000,
    )
    row = audit_row(orjson.dumps(event))
    assert row is not None
    doc = dict(zip(COLUMNS, row, strict=True))
    assert doc["event_id"] == uuid.UUID(event["event_id"])
    assert doc["site_id"] == "shop" and doc["session_id"] == "s-1"
    assert doc["action"] == "replay_opened" and doc["actor"] == "v@x"
    assert doc["at"].timestamp() == 1_700_000_000


def test_non_session_event_has_no_session_id() -> None:
    event = audit_event(AuditAction.TOKEN_CREATED, actor="o@x", site_id="shop", target="ci")
    row = audit_row(orjson.dumps(event))
    assert row is not None and row[COLUMNS.index("session_id")] == ""


def test_unusable_records_are_skipped() -> None:
    assert audit_row(None) is None
    assert audit_row(b"not json") is None
    assert audit_row(orjson.dumps({"event_id": "nope", "at_ms": 1})) is None


def test_long_fields_are_capped() -> None:
    event = audit_event(AuditAction.SQL_RUN, actor="a@x", site_id="shop", detail="x" * 10_000)
    row = audit_row(orjson.dumps(event))
    assert row is not None and len(row[COLUMNS.index("detail")]) == 2000


def test_audit_event_has_no_field_for_content_or_secrets() -> None:
    event = audit_event(AuditAction.LOGIN_FAILED, actor="a@x")
    assert set(event) == {
        "event_id",
        "at_ms",
        "actor",
        "action",
        "site_id",
        "target",
        "outcome",
        "address",
        "detail",
    }
