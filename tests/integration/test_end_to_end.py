"""The whole path on the real stack: POST → Kafka → masker → Kafka → sink → ClickHouse → read."""

from __future__ import annotations

import random
import time

import orjson
import pytest

from services.dev.demo import get, post_json
from services.dev.rrweb_gen import PASSWORD_INPUT_ID, generate_session
from services.dev.stack import LocalStack

pytestmark = pytest.mark.integration

READ_TOKEN = "rt_demo_local"


def read_session(stack: LocalStack, session_id: str, expected: int, timeout: float = 60) -> bytes:
    """Poll the read endpoint until ``expected`` events are stored."""
    url = f"http://127.0.0.1:{stack.sink_port}/v1/sites/demo/sessions/{session_id}/events"
    deadline = time.monotonic() + timeout
    body = b""
    while time.monotonic() < deadline:
        status, body = get(url, READ_TOKEN)
        if status == 200 and body.count(b"\n") >= expected:
            return body
        time.sleep(0.25)
    raise AssertionError(f"session not stored in {timeout}s; last body {body[:200]!r}")


def test_posted_session_reads_back_in_order_without_the_typed_password(
    pipeline: LocalStack,
) -> None:
    session = generate_session(random.Random(7), start_ms=int(time.time() * 1000))
    for seq, batch in enumerate(session.batches):
        status, body = post_json(
            f"http://127.0.0.1:{pipeline.ingest_port}/v1/recordings?key=pk_demo_local",
            {
                "session_id": session.session_id,
                "window_id": session.window_id,
                "visitor_id": session.visitor_id,
                "seq": seq,
                "events": batch,
            },
        )
        assert status == 202, body

    body = read_session(pipeline, session.session_id, len(session.events))

    stored = [orjson.loads(line) for line in body.splitlines()]
    assert len(stored) == len(session.events)
    assert [e["timestamp"] for e in stored] == sorted(e["timestamp"] for e in session.events)
    assert [e["type"] for e in stored] == [e["type"] for e in session.events]
    for secret in session.secrets:
        assert secret.encode() not in body
    password_inputs = [
        e
        for e in stored
        if e["type"] == 3 and e["data"].get("source") == 5 and e["data"]["id"] == PASSWORD_INPUT_ID
    ]
    assert password_inputs and all(set(e["data"]["text"]) == {"*"} for e in password_inputs)


def test_every_service_exposes_metrics_and_health(pipeline: LocalStack) -> None:
    from urllib.request import urlopen

    for port in (pipeline.ingest_port, pipeline.masker_port, pipeline.sink_port):
        for path in ("/healthz", "/readyz", "/metrics"):
            with urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                assert response.status == 200


def test_read_endpoint_refuses_a_request_without_a_token(pipeline: LocalStack) -> None:
    status, body = get(f"http://127.0.0.1:{pipeline.sink_port}/v1/sites/demo/sessions/x/events", "")
    assert status in (401, 403)
    assert b"error" in body
