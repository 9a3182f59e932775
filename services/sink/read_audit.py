"""The audit log's table, and the reads of the read API that the sink records in it.

The console audits what people do in it (``services/console/audit.py`` →
``console.audit`` → ``audit_log``, written by ``services/sink/audit.py``). A site's
read token reads the sink's API directly, without the console, so the sink records
those reads itself: the token's id (never the token), the action, the session, the
outcome, the client address and the endpoint. Reads with the admin token are not
recorded here: that is the console's service credential, and the console audits its
own requests (a replay opened in the console is one ``replay_opened``, not two).

Rows are kept in memory and inserted about once a second (ClickHouse wants few,
large inserts, and a replay's latency must not include one). A crash loses at most
that second. When the inserts fail and :data:`MAX_PENDING` rows wait, further reads
are refused rather than served unaudited.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from services.sink.store import ClickHouseStore

log = logging.getLogger("replaypipe.sink.read_audit")

AUDIT_TABLE = "audit_log"
COLUMNS = (
    "event_id",
    "at",
    "site_id",
    "session_id",
    "actor",
    "action",
    "target",
    "outcome",
    "address",
    "detail",
)
MAX_PENDING = 10_000
FLUSH_SECONDS = 1.0
TOKEN_ID_CHARS = 12


def read_token_id(token: str) -> str:
    """How the audit log names a read token: ``read-token:`` and the first 12 hex digits
    of its SHA-256 (the site settings hold the full hash, so an owner can tell which
    token it was; the token itself cannot be recovered from it)."""
    return "read-token:" + hashlib.sha256(token.encode()).hexdigest()[:TOKEN_ID_CHARS]


def read_row(
    *,
    site_id: str,
    actor: str,
    action: str,
    session_id: str,
    outcome: str,
    address: str,
    endpoint: str,
) -> list[Any]:
    """One ``audit_log`` row (COLUMNS order) for one read of the read API."""
    return [
        uuid.uuid4(),
        datetime.now(tz=UTC),
        site_id[:128],
        session_id[:200],
        actor,
        action,
        session_id[:200],
        outcome,
        address[:64],
        f"read_api {endpoint}",
    ]


class ReadAudit:
    """Reads recorded in memory, inserted into ``audit_log`` by :meth:`flush`."""

    def __init__(self, store: ClickHouseStore, *, max_pending: int = MAX_PENDING) -> None:
        self.store = store
        self.max_pending = max_pending
        self._rows: list[list[Any]] = []

    @property
    def pending(self) -> int:
        """Rows not inserted yet."""
        return len(self._rows)

    def record(self, row: list[Any]) -> bool:
        """Keep ``row`` for the next insert; False (nothing kept) when too many wait."""
        if len(self._rows) >= self.max_pending:
            return False
        self._rows.append(row)
        return True

    async def flush(self) -> None:
        """Insert every pending row; on failure they stay pending for the next flush
        (a row inserted twice collapses by ``event_id``)."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            await self.store.insert_columns(AUDIT_TABLE, columns, COLUMNS, uuid.uuid4().hex)
        except Exception as exc:  # any store failure: keep the rows, retry at the next flush
            self._rows = rows + self._rows
            log.warning(
                "audit insert failed", extra={"count": len(rows), "error_type": type(exc).__name__}
            )

    async def run(self, every_s: float = FLUSH_SECONDS) -> None:
        """Flush every ``every_s`` until cancelled (the owner flushes once more after)."""
        while True:
            await asyncio.sleep(every_s)
            await self.flush()
