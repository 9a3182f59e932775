"""The shared JSON-lines logging: declared context fields only, repeats rate-limited."""

from __future__ import annotations

import ast
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from services.shared.logging import (
    CONTEXT_FIELDS,
    MAX_FIELD_CHARS,
    JsonLineFormatter,
    RepeatedLogFilter,
    logging_config,
    setup_logging,
)

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer, as setup_logging wires it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLineFormatter("test"))
    logger = logging.getLogger("replaypipe.test_logging")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.handlers.clear()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_a_port_is_logged_as_port_and_a_migration_as_migration(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info("sink listening", extra={"port": 8082})
    logger.info("migration applied", extra={"version": 2, "migration": "0002_sessions"})

    listening, migration = _lines(out)
    assert listening["port"] == 8082 and "count" not in listening
    assert (migration["version"], migration["migration"]) == (2, "0002_sessions")
    assert "reason" not in migration


def test_an_undeclared_extra_field_is_dropped_and_only_its_name_is_shown(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning("field typed", extra={"site": "demo", "typed_value": "hunter2-S3CRET"})

    (line,) = _lines(out)
    assert line["site"] == "demo"
    assert "typed_value" not in line
    assert line["dropped_fields"] == ["typed_value"]
    assert "hunter2-S3CRET" not in out.getvalue()


def test_a_long_reason_is_cut_to_a_sentence(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.error("bad settings", extra={"reason": "x" * 10_000})

    (line,) = _lines(out)
    assert isinstance(line["reason"], str)
    assert len(line["reason"]) == MAX_FIELD_CHARS + 1


def test_a_line_names_its_service_logger_and_level(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning("kafka not reachable")

    (line,) = _lines(out)
    assert (line["service"], line["logger"], line["level"]) == (
        "test",
        "replaypipe.test_logging",
        "warning",
    )
    assert str(line["ts"]).endswith("Z")


def test_the_same_error_is_written_at_most_the_limit_per_interval(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    clock = FakeClock()
    logger.handlers[0].addFilter(RepeatedLogFilter(limit=3, interval_s=60, clock=clock))

    for attempt in range(1000):
        logger.error("unable to connect to %s", "127.0.0.1:9092", extra={"attempt": attempt})

    lines = _lines(out)
    assert [line["attempt"] for line in lines] == [0, 1, 2]


def test_the_next_line_after_the_interval_says_how_many_were_suppressed(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    clock = FakeClock()
    logger.handlers[0].addFilter(RepeatedLogFilter(limit=2, interval_s=60, clock=clock))
    for _ in range(10):
        logger.error("unable to connect to %s", "127.0.0.1:9092")

    clock.now += 60
    logger.error("unable to connect to %s", "127.0.0.1:9092")
    logger.error("unable to connect to %s", "127.0.0.1:9092")

    lines = _lines(out)
    assert len(lines) == 4
    assert "suppressed" not in lines[0] and "suppressed" not in lines[1]
    assert lines[2]["suppressed"] == 8
    assert "suppressed" not in lines[3]


def test_different_messages_and_levels_are_limited_separately(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.handlers[0].addFilter(RepeatedLogFilter(limit=1, interval_s=60, clock=FakeClock()))

    for _ in range(5):
        logger.error("kafka down")
        logger.warning("kafka down")
        logger.error("insert failed")

    assert [(line["level"], line["msg"]) for line in _lines(out)] == [
        ("error", "kafka down"),
        ("warning", "kafka down"),
        ("error", "insert failed"),
    ]


def test_info_lines_are_never_rate_limited(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.handlers[0].addFilter(RepeatedLogFilter(limit=1, interval_s=60, clock=FakeClock()))

    for _ in range(5):
        logger.info("site settings updated")

    assert len(_lines(out)) == 5


def test_the_faust_logging_config_formats_limits_and_quiets_libraries() -> None:
    config = logging_config("masker", "info")

    assert config["formatters"]["json"]["service"] == "masker"
    assert config["handlers"]["stderr"]["filters"] == ["repeats"]
    assert config["loggers"]["aiokafka"] == {"level": "WARNING"}
    assert config["root"]["level"] == "INFO"


def test_every_extra_field_the_services_log_is_declared() -> None:
    """An undeclared name would be dropped silently: catch it in the test run instead."""
    undeclared: list[str] = []
    for source in sorted((ROOT / "services").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    undeclared += [
                        f"{source.relative_to(ROOT)}:{key.value!s}"
                        for key in keyword.value.keys
                        if isinstance(key, ast.Constant) and key.value not in CONTEXT_FIELDS
                    ]
    assert undeclared == []


def test_setup_logging_limits_repeats_and_quiets_the_chatty_libraries() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    try:
        setup_logging("ingest", "info")

        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonLineFormatter)
        assert any(isinstance(f, RepeatedLogFilter) for f in handler.filters)
        assert logging.getLogger("aiokafka").level == logging.WARNING
        assert root.level == logging.INFO
    finally:
        root.handlers[:], level, aiokafka_level = saved
        root.setLevel(level)
        logging.getLogger("aiokafka").setLevel(aiokafka_level)
