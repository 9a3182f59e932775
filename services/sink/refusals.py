"""Why an insert failed, from ClickHouse's numeric error code (pure).

An insert fails either because of what it carries — a message's events that
the views cannot read, or a batch too costly for the server's per-query limits
— or because ClickHouse cannot take writes right now (down, table detached or
read-only, disk full, network). The first kind is isolated: the batch is split
until the message that causes it is alone, and that message goes to the DLQ.
The second kind is an outage: the same insert is retried until it succeeds,
and nothing is dropped.

The code is read from the exception, never from the wording of its message:
clickhouse-connect puts it in ``Error.code`` for a server and for the embedded
engine alike; an engine exception that reached us unwrapped starts with
``Code: N.``. A failure without a code (connection refused, timeout) is an
outage.

Imports nothing from Kafka or ClickHouse: a unit test calls these with plain
exceptions.
"""

from __future__ import annotations

import re
from enum import Enum
from types import MappingProxyType

_CODE_PREFIX = re.compile(r"^Code: (\d+)\. ")


class InsertFailure(Enum):
    """What a failed insert means for the messages in it. The value is the DLQ reason."""

    OUTAGE = "outage"  # retry the same insert (same token) until ClickHouse takes it
    BAD_ROW = "bad_row"  # a message's events cannot be read: isolate it
    OVER_LIMIT = "over_limit"  # too costly for a per-query limit: split; alone still: isolate


# Errors the data of the insert causes (the same message fails again, in any batch).
# 395 is the throwIf of parsed_batches_mv (migrations/0001_events.sql).
BAD_ROW_CODES = MappingProxyType(
    {
        6: "CANNOT_PARSE_TEXT",
        26: "CANNOT_PARSE_QUOTED_STRING",
        27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
        38: "CANNOT_PARSE_DATE",
        41: "CANNOT_PARSE_DATETIME",
        53: "TYPE_MISMATCH",
        69: "ARGUMENT_OUT_OF_BOUND",
        70: "CANNOT_CONVERT_TYPE",
        72: "CANNOT_PARSE_NUMBER",
        117: "INCORRECT_DATA",
        128: "TOO_LARGE_ARRAY_SIZE",
        131: "TOO_LARGE_STRING_SIZE",
        306: "TOO_DEEP_RECURSION",
        395: "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO",
    }
)

# A per-query limit the insert exceeded: a smaller insert fits, unless one message
# alone is over it.
OVER_LIMIT_CODES = MappingProxyType(
    {
        158: "TOO_MANY_ROWS",
        159: "TIMEOUT_EXCEEDED",
        241: "MEMORY_LIMIT_EXCEEDED",
        307: "TOO_MANY_BYTES",
        396: "TOO_MANY_ROWS_OR_BYTES",
    }
)


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code ``exc`` carries, if any.

    ``code`` (clickhouse-connect's ``Error``, server or embedded engine), else
    the ``Code: N.`` an engine exception starts with.
    """
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    match = _CODE_PREFIX.match(str(exc))
    return int(match.group(1)) if match else None


def failure_for_code(code: int | None) -> InsertFailure:
    """What an insert failing with ClickHouse error ``code`` means (None: no code, an outage)."""
    if code in BAD_ROW_CODES:
        return InsertFailure.BAD_ROW
    if code in OVER_LIMIT_CODES:
        return InsertFailure.OVER_LIMIT
    return InsertFailure.OUTAGE


def classify_insert_failure(exc: BaseException) -> InsertFailure:
    """What the exception an insert raised means for the messages in it."""
    return failure_for_code(error_code(exc))


def failure_name(exc: BaseException) -> str:
    """A short name for logs and DLQ details: the error code's name, else the exception type.

    Never the message text: it can quote the data being inserted.
    """
    code = error_code(exc)
    name = getattr(exc, "name", None)
    if isinstance(name, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", name):
        return name
    known = BAD_ROW_CODES.get(code or -1) or OVER_LIMIT_CODES.get(code or -1)
    if known is not None:
        return known
    return f"code {code}" if code is not None else type(exc).__name__
