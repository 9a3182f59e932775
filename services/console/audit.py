"""Audit events: who did what, on which site, when — never content, never a secret.

The console publishes one JSON object per event to the Kafka topic
``console.audit``; the sink writes them into the ClickHouse table ``audit_log``
(services/sink/audit.py). An event names the actor, the action and its target
(a session id, a token's name, a setting's name); it never carries a recording's
content, a password, a token or a setting's value beyond the field names changed.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any


class AuditAction(StrEnum):
    """Every kind of event the audit log records."""

    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
    PASSWORD_CHANGED = "password_changed"
    TOTP_ENABLED = "totp_enabled"
    REPLAY_OPENED = "replay_opened"
    EXPORT = "export"
    SESSIONS_LISTED = "sessions_listed"
    SQL_RUN = "sql_run"
    SETTINGS_CHANGED = "settings_changed"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    MEMBER_CHANGED = "member_changed"
    SITE_CREATED = "site_created"
    SESSION_ERASED = "session_erased"
    VISITOR_ERASED = "visitor_erased"


def audit_event(
    action: AuditAction,
    *,
    actor: str,
    site_id: str = "",
    target: str = "",
    outcome: str = "ok",
    address: str = "",
    detail: str = "",
    at_ms: int | None = None,
) -> dict[str, Any]:
    """One audit event as published on ``console.audit`` (and stored as one row)."""
    return {
        "event_id": str(uuid.uuid4()),
        "at_ms": int(time.time() * 1000) if at_ms is None else at_ms,
        "actor": actor,
        "action": str(action),
        "site_id": site_id,
        "target": target[:200],
        "outcome": outcome,
        "address": address,
        "detail": detail[:2000],
    }
