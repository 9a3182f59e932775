"""Why an insert failed, from ClickHouse's error code (:mod:`services.sink.refusals`)."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from services.sink.refusals import (
    BAD_ROW_CODES,
    OVER_LIMIT_CODES,
    InsertFailure,
    classify_insert_failure,
    error_code,
    failure_for_code,
    failure_name,
)


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (395, InsertFailure.BAD_ROW),  # throwIf in parsed_batches_mv: not a valid envelope
        (117, InsertFailure.BAD_ROW),  # INCORRECT_DATA
        (27, InsertFailure.BAD_ROW),  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        (241, InsertFailure.OVER_LIMIT),  # MEMORY_LIMIT_EXCEEDED
        (159, InsertFailure.OVER_LIMIT),  # TIMEOUT_EXCEEDED
        (396, InsertFailure.OVER_LIMIT),  # TOO_MANY_ROWS_OR_BYTES
        (60, InsertFailure.OUTAGE),  # UNKNOWN_TABLE: events detached
        (242, InsertFailure.OUTAGE),  # TABLE_IS_READ_ONLY
        (243, InsertFailure.OUTAGE),  # NOT_ENOUGH_SPACE
        (210, InsertFailure.OUTAGE),  # NETWORK_ERROR
        (None, InsertFailure.OUTAGE),  # no code at all: connection refused, timeout
    ],
)
def test_each_error_code_means_a_data_refusal_a_limit_or_an_outage(
    code: int | None, failure: InsertFailure
) -> None:
    assert failure_for_code(code) is failure


def test_no_code_is_both_a_data_error_and_a_limit() -> None:
    assert not set(BAD_ROW_CODES) & set(OVER_LIMIT_CODES)


def test_the_code_is_read_from_clickhouse_connect_errors_not_from_their_wording() -> None:
    # The text says "memory" but the code says the table is read-only: the code decides.
    exc = DatabaseError("Code: 242. memory limit exceeded (TABLE_IS_READ_ONLY)", code=242)
    assert error_code(exc) == 242
    assert classify_insert_failure(exc) is InsertFailure.OUTAGE
    server_error = OperationalError("The ClickHouse server returned an error", code=241)
    assert classify_insert_failure(server_error) is InsertFailure.OVER_LIMIT


def test_an_unwrapped_engine_exception_gives_its_leading_code() -> None:
    exc = RuntimeError("Code: 395. DB::Exception: replaypipe: message is not a valid envelope")
    assert error_code(exc) == 395
    assert classify_insert_failure(exc) is InsertFailure.BAD_ROW
    assert error_code(RuntimeError("see Code: 395. later")) is None


def test_exceptions_without_a_code_are_outages() -> None:
    for exc in (ConnectionRefusedError(), TimeoutError(), OSError("disk")):
        assert classify_insert_failure(exc) is InsertFailure.OUTAGE


def test_failure_name_is_the_code_name_never_the_message_text() -> None:
    secret = "Code: 117. DB::Exception: Cannot parse 'hunter2'"
    assert failure_name(DatabaseError(secret, code=117, name="INCORRECT_DATA")) == "INCORRECT_DATA"
    assert failure_name(DatabaseError(secret, code=117)) == "INCORRECT_DATA"
    assert failure_name(DatabaseError(secret, code=999)) == "code 999"
    assert failure_name(ConnectionRefusedError("hunter2")) == "ConnectionRefusedError"
