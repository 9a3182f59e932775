"""The ingest gateway over HTTP against the real Kafka broker: every answer it can give."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from yarl import URL

from services.dev.kafka_broker import LocalKafkaBroker, free_port
from services.ingest.admission import session_sampled_in
from services.ingest.app import GATEWAY_KEY, Gateway, start_gateway
from services.ingest.settings import IngestSettings
from services.shared import topics
from services.shared.envelope import BatchEnvelope
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry, SiteSettings
from tests.unit.test_ingest_openapi import documented_statuses

pytestmark = pytest.mark.integration

SHOP_ORIGIN = "https://shop.example"
SITES = [
    SiteSettings(
        site_id="shop",
        public_keys=("pk_shop",),
        allowed_origins=(SHOP_ORIGIN,),
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
    ),
    SiteSettings(site_id="off", public_keys=("pk_off",), enabled=False),
    SiteSettings(
        site_id="slow", public_keys=("pk_slow",), rate_limit_per_second=0.01, rate_limit_burst=2
    ),
    SiteSettings(site_id="half", public_keys=("pk_half",), sample_rate=0.5),
    SiteSettings(site_id="quiet", public_keys=("pk_quiet",), ip_mode="drop"),
]


@dataclass
class Running:
    """A gateway serving on a local port."""

    url: str
    gateway: Gateway
    http: aiohttp.ClientSession

    async def post(
        self,
        body: bytes,
        *,
        key: str | None = "pk_shop",
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST a batch; returns status, JSON body and headers."""
        params = f"?key={key}" if key else "?"
        sent = {"Content-Type": "application/json", **(headers or {})}
        async with self.http.post(
            f"{self.url}/v1/recordings{params}{query}", data=body, headers=sent
        ) as response:
            return response.status, orjson.loads(await response.read()), dict(response.headers)


def ingest_settings(broker: LocalKafkaBroker, **overrides: Any) -> IngestSettings:
    """Small limits so every limit is reachable with small bodies."""
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, max_message_bytes=512 * 1024)
    base = IngestSettings(
        host="127.0.0.1",
        port=free_port(),
        max_body_bytes=256 * 1024,
        max_decoded_bytes=1024 * 1024,
        max_events_per_batch=100,
        publish_timeout_s=5.0,
        kafka=kafka,
    )
    return replace(base, **overrides)


@pytest.fixture(scope="module")
async def gw(kafka_broker: LocalKafkaBroker) -> AsyncIterator[Running]:
    """One gateway for the module, on the shared test broker."""
    settings = ingest_settings(kafka_broker)
    runner = await start_gateway(settings, SiteRegistry(SITES))
    async with aiohttp.ClientSession() as http:
        yield Running(f"http://127.0.0.1:{settings.port}", runner.app[GATEWAY_KEY], http)
    await runner.cleanup()


def now_ms() -> int:
    return int(time.time() * 1000)


def new_session() -> str:
    return uuid.uuid4().hex[:24]


def batch_body(
    session_id: str, seq: int = 0, events: list[Any] | None = None, **extra: Any
) -> bytes:
    doc = {
        "session_id": session_id,
        "window_id": "w-1",
        "visitor_id": "v-1",
        "seq": seq,
        "consent": True,
        "events": events or [{"type": 4, "timestamp": now_ms(), "data": {"href": "https://x/"}}],
        **extra,
    }
    return orjson.dumps(doc)


async def published(
    broker: LocalKafkaBroker, keys: set[bytes], expected: int, timeout_s: float = 30.0
) -> list[BatchEnvelope]:
    """Every record on recordings.raw with one of ``keys``, once ``expected`` are there."""
    records = await published_records(broker, keys, expected, timeout_s)
    return [envelope for _, _, envelope in records]


async def published_records(
    broker: LocalKafkaBroker, keys: set[bytes], expected: int, timeout_s: float = 30.0
) -> list[tuple[int, bytes, BatchEnvelope]]:
    """Like :func:`published`, with each record's partition and raw value."""
    consumer = AIOKafkaConsumer(
        topics.RAW,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    found: list[tuple[int, bytes, BatchEnvelope]] = []

    async def read(timeout_ms: int) -> None:
        for records in (await consumer.getmany(timeout_ms=timeout_ms)).values():
            found.extend(
                (r.partition, r.value, BatchEnvelope.from_json(r.value))
                for r in records
                if r.key in keys and r.value is not None
            )

    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and len(found) < expected:
            await read(500)
        await read(500)  # a little longer, so a duplicate would be seen too
    finally:
        await consumer.stop()
    return found


def metric(name: str, **labels: str) -> float:
    """A sample of the gateway's metrics (it runs in this process), 0 if none yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- accepted batches ---------------------------------------------------------


async def test_accepted_batch_is_in_kafka_keyed_by_site_and_session_with_enrichment(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    session = new_session()
    status, body, _ = await gw.post(
        batch_body(session, seq=4),
        headers={"User-Agent": "Mozilla/5.0 test", "Origin": SHOP_ORIGIN},
    )
    assert (status, body) == (202, {"status": "accepted", "seq": 4, "events": 1})

    [envelope] = await published(kafka_broker, {f"shop:{session}".encode()}, 1)
    assert (envelope.site_id, envelope.session_id, envelope.seq) == ("shop", session, 4)
    assert envelope.user_agent == "Mozilla/5.0 test"
    assert envelope.client_ip == "127.0.0.0"  # the /24 of 127.0.0.1, never the raw address
    assert abs(envelope.received_at_ms - now_ms()) < 60_000


async def test_a_site_with_ip_mode_drop_publishes_no_address(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    session = new_session()
    status, _, _ = await gw.post(batch_body(session), key="pk_quiet")
    assert status == 202
    [envelope] = await published(kafka_broker, {f"quiet:{session}".encode()}, 1)
    assert envelope.client_ip is None


@pytest.mark.parametrize(
    ("encode", "headers", "query"),
    [
        (gzip.compress, {"Content-Encoding": "gzip"}, ""),
        (zlib.compress, {"Content-Encoding": "deflate"}, ""),
        (gzip.compress, {"Content-Type": "application/octet-stream"}, "&enc=gzip"),
        (gzip.compress, {"Content-Type": "application/octet-stream"}, ""),
        (lambda b: b, {"Content-Type": "text/plain;charset=UTF-8"}, ""),
    ],
    ids=["gzip-header", "deflate-header", "enc-query", "gzip-magic", "beacon-text"],
)
async def test_compressed_and_beacon_bodies_are_accepted(
    gw: Running, encode: Any, headers: dict[str, str], query: str
) -> None:
    status, body, _ = await gw.post(encode(batch_body(new_session())), headers=headers, query=query)
    assert (status, body["status"]) == (202, "accepted")


async def test_a_batch_is_accepted_with_the_key_in_a_header(gw: Running) -> None:
    status, _, _ = await gw.post(
        batch_body(new_session()), key=None, headers={"X-Replaypipe-Key": "pk_shop"}
    )
    assert status == 202


async def test_a_sampled_out_session_gets_202_sampled_out_for_every_batch(gw: Running) -> None:
    session = next(
        s for s in (f"s-{i}" for i in range(100)) if not session_sampled_in("half", s, 0.5)
    )
    before = metric("replaypipe_ingest_sampled_out_batches_total")
    for seq in range(3):
        status, body, _ = await gw.post(batch_body(session, seq), key="pk_half")
        assert (status, body) == (202, {"status": "sampled_out", "seq": seq})
    assert metric("replaypipe_ingest_sampled_out_batches_total") == before + 3


async def test_concurrent_clients_all_land_exactly_once(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    sessions = [new_session() for _ in range(16)]

    async def client(session: str) -> list[int]:
        return [(await gw.post(batch_body(session, seq)))[0] for seq in range(8)]

    statuses = await asyncio.gather(*(client(s) for s in sessions))
    assert all(status == 202 for per_client in statuses for status in per_client)
    found = await published(kafka_broker, {f"shop:{s}".encode() for s in sessions}, 16 * 8)
    assert sorted((e.session_id, e.seq) for e in found) == sorted(
        (s, seq) for s in sessions for seq in range(8)
    )


async def test_a_session_lands_on_the_partition_the_java_client_would_choose(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    # The masker keeps a session's state per partition: its key must map as with
    # murmur2 (Java client, aiokafka, librdkafka's murmur2_random), always the same.
    sessions = [new_session() for _ in range(24)]
    for session in sessions:
        for seq in range(2):
            assert (await gw.post(batch_body(session, seq)))[0] == 202
    keys = {f"shop:{s}".encode(): s for s in sessions}
    records = await published_records(kafka_broker, set(keys), len(sessions) * 2)
    partitions = gw.gateway.settings.kafka.partitions
    assert len(records) == len(sessions) * 2
    for partition, _, envelope in records:
        key = f"shop:{envelope.session_id}".encode()
        assert partition == (murmur2(key) & 0x7FFFFFFF) % partitions


async def test_a_whole_batch_is_published_as_received_and_a_trimmed_one_as_its_events(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    whole, trimmed = new_session(), new_session()
    good = {"type": 3, "timestamp": now_ms(), "data": {"source": 1}}
    assert (await gw.post(batch_body(whole, events=[good])))[0] == 202
    assert (await gw.post(batch_body(trimmed, events=[good, {"type": "x"}])))[0] == 202
    records = {
        envelope.session_id: (value, envelope)
        for _, value, envelope in await published_records(
            kafka_broker, {f"shop:{whole}".encode(), f"shop:{trimmed}".encode()}, 2
        )
    }
    whole_doc = orjson.loads(records[whole][0])
    assert whole_doc["batch"] == orjson.loads(batch_body(whole, events=[good]))
    assert "events" not in whole_doc
    trimmed_doc = orjson.loads(records[trimmed][0])
    assert trimmed_doc["events"] == [good] and "batch" not in trimmed_doc
    assert records[whole][1].events == records[trimmed][1].events == [good]


# --- CORS ---------------------------------------------------------------------


async def test_preflight_from_an_allowed_origin_allows_the_recorder_headers(gw: Running) -> None:
    async with gw.http.options(
        f"{gw.url}/v1/recordings?key=pk_shop",
        headers={
            "Origin": SHOP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, content-encoding, x-replaypipe-key",
        },
    ) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert all(h in allowed for h in ("content-type", "content-encoding", "x-replaypipe-key"))


async def test_preflight_without_a_key_is_judged_against_every_enabled_site(gw: Running) -> None:
    async with gw.http.options(
        f"{gw.url}/v1/recordings", headers={"Origin": SHOP_ORIGIN}
    ) as response:
        assert response.status == 204


async def test_preflight_from_another_origin_is_refused(gw: Running) -> None:
    async with gw.http.options(
        f"{gw.url}/v1/recordings?key=pk_shop", headers={"Origin": "https://evil.example"}
    ) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers
        assert (await response.json())["error"] == "origin_not_allowed"


async def test_a_post_from_an_allowed_origin_carries_cors_headers(gw: Running) -> None:
    _, _, headers = await gw.post(batch_body(new_session()), headers={"Origin": SHOP_ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == SHOP_ORIGIN


# --- every rejection ----------------------------------------------------------

BOMB = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)


def _big_snapshot_batch() -> bytes:
    # Under the decoded-body limit (1 MiB) but over the Kafka message limit (512 KiB).
    node = {"type": 2, "tagName": "div", "attributes": {}, "childNodes": [], "id": 1}
    text = "lorem ipsum " * 60_000
    node["childNodes"] = [{"type": 3, "textContent": text, "id": 2}]
    snapshot = {"type": 2, "timestamp": now_ms(), "data": {"node": node, "initialOffset": {}}}
    return gzip.compress(batch_body(new_session(), events=[snapshot]))


def _deep_batch(*, with_left_out_event: bool) -> bytes:
    # 255 levels: orjson (ingest's re-serialisation, the masker's output) stops at 254.
    depth = 255 - 3  # the root object, the events array and the event hold the rest
    data = b"[" * depth + b"]" * depth
    event = b'{"type":3,"timestamp":%d,"data":%s}' % (now_ms(), data)
    left_out = b'{"type":"x"},' if with_left_out_event else b""
    return batch_body(new_session()).replace(b'"events":[', b'"events":[' + left_out + event + b",")


BODIES: dict[str, Callable[[], bytes]] = {
    "big": _big_snapshot_batch,
    "deep": lambda: _deep_batch(with_left_out_event=False),
    "deep with a left-out event": lambda: _deep_batch(with_left_out_event=True),
    # The second member used to be dropped silently, the first accepted.
    "two gzip members": lambda: (
        gzip.compress(batch_body(new_session())) + gzip.compress(batch_body(new_session()))
    ),
}

REJECTIONS: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing key", {"key": None}, 401, "missing_site_key"),
    ("unknown key", {"key": "pk_nope"}, 401, "unknown_site_key"),
    ("disabled site", {"key": "pk_off"}, 403, "site_disabled"),
    ("foreign origin", {"headers": {"Origin": "https://evil.example"}}, 403, "origin_not_allowed"),
    ("bad json", {"body": b'{"session_id": '}, 400, "invalid_json"),
    (
        "bad gzip",
        {"body": b"\x1f\x8b\x08\x00not-gzip-at-all", "headers": {"Content-Encoding": "gzip"}},
        400,
        "invalid_gzip",
    ),
    ("too deep", {"body": "deep"}, 400, "too_deeply_nested"),
    ("too deep, one left out", {"body": "deep with a left-out event"}, 400, "too_deeply_nested"),
    (
        "two gzip members",
        {"body": "two gzip members", "headers": {"Content-Encoding": "gzip"}},
        400,
        "invalid_gzip",
    ),
    ("no valid event", {"events": [{"type": "x", "timestamp": 1}]}, 400, "no_valid_event"),
    ("bad session id", {"session_id": "no spaces please"}, 400, "invalid_session_id"),
    (
        "old timestamps",
        {"events": [{"type": 3, "timestamp": 1_000}]},
        400,
        "timestamp_out_of_range",
    ),
    ("too many events", {"events": [{"type": 3, "timestamp": -1}] * 101}, 413, "too_many_events"),
    ("body too large", {"body": b" " * (300 * 1024)}, 413, "body_too_large"),
    ("gzip bomb", {"body": BOMB}, 413, "decoded_body_too_large"),
    ("over kafka limit", {"body": "big"}, 413, "batch_too_large"),
    (
        "wrong content type",
        {"headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        415,
        "unsupported_media_type",
    ),
    ("unknown encoding", {"headers": {"Content-Encoding": "br"}}, 415, "unsupported_encoding"),
]


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [(case, status, code) for _, case, status, code in REJECTIONS],
    ids=[name for name, *_ in REJECTIONS],
)
async def test_every_rejection_answers_json_with_its_status_and_is_counted(
    gw: Running, case: dict[str, Any], status: int, code: str
) -> None:
    if case.get("body") in BODIES:
        body = BODIES[case["body"]]()
    elif "body" in case:
        body = case["body"]
    else:
        fields = {k: v for k, v in case.items() if k in ("events", "session_id")}
        if isinstance(fields.get("events"), list) and fields["events"][0]["timestamp"] == -1:
            fields["events"] = [{"type": 3, "timestamp": now_ms()}] * 101
        body = batch_body(fields.pop("session_id", new_session()), **fields)
    before = metric("replaypipe_ingest_rejections_total", reason=code)

    answer, doc, _ = await gw.post(
        body, key=case.get("key", "pk_shop"), headers=case.get("headers")
    )

    assert (answer, doc["error"]) == (status, code)
    assert isinstance(doc["detail"], str) and doc["detail"].endswith(".")
    assert metric("replaypipe_ingest_rejections_total", reason=code) == before + 1


async def test_over_the_rate_limit_answers_429_with_retry_after(gw: Running) -> None:
    statuses = [await gw.post(batch_body(new_session()), key="pk_slow") for _ in range(3)]
    assert [s for s, _, _ in statuses] == [202, 202, 429]
    _, doc, headers = statuses[2]
    assert doc["error"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1


async def test_over_the_inflight_limit_answers_503_overloaded(
    kafka_broker: LocalKafkaBroker,
) -> None:
    # A long linger keeps the first batch waiting for its ack while the second arrives.
    settings = ingest_settings(kafka_broker, max_inflight_batches=1, linger_ms=3000)
    runner = await start_gateway(settings, SiteRegistry(SITES))
    gateway = runner.app[GATEWAY_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            running = Running(f"http://127.0.0.1:{settings.port}", gateway, http)
            first = asyncio.create_task(running.post(batch_body(new_session())))
            for _ in range(1000):
                if gateway.inflight:
                    break
                await asyncio.sleep(0.01)
            status, doc, headers = await running.post(batch_body(new_session()))
            assert (status, doc["error"]) == (503, "overloaded")
            assert int(headers["Retry-After"]) >= 1
            assert (await first)[0] == 202
    finally:
        await runner.cleanup()


async def test_health_and_readiness_probes_answer_200(gw: Running) -> None:
    for path in ("/healthz", "/readyz"):
        async with gw.http.get(f"{gw.url}{path}") as response:
            assert response.status == 200, await response.text()


# --- nothing the client sent is echoed (issue 12 item 8) ------------------------

CANARY = "pk_Zq9canary"
HTTP_LOGGER = "replaypipe.ingest"  # the gateway's own logger; .kafka is librdkafka's


def logged_text(records: list[logging.LogRecord]) -> str:
    """Everything the log records would print: messages, extras and tracebacks."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(str(record.__dict__))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


async def raw_request(gw: Running, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no HTTP client would send a malformed request line)."""
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "request_bytes",
    [
        f"POST /v1/recordings?key={CANARY} HTTP/1.1 extra\r\nHost: x\r\n\r\n".encode(),
        f"P\x01ST /v1/recordings?key={CANARY} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"POST /v1/recordings?key={CANARY}\x00 HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"POST /v1/recordings HTTP/1.1\r\nHost: x\r\nX-Key{CANARY}\r\n\r\n".encode(),
        f"POST /v1/recordings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"zz{CANARY}\r\n".encode(),
    ],
    ids=["request-line", "method", "nul-in-target", "header", "chunk-size"],
)
async def test_a_malformed_request_is_answered_400_json_without_echoing_it_in_answer_or_log(
    gw: Running, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, body = await raw_request(gw, request_bytes)
    assert status == 400
    assert orjson.loads(body)["error"] == "malformed_request"
    assert CANARY.encode() not in body
    http_records = [r for r in caplog.records if r.name in ("aiohttp.server", HTTP_LOGGER)]
    assert http_records, "the refusal is logged"
    assert CANARY not in logged_text(caplog.records)
    assert "127.0.0.1" not in logged_text(http_records)  # nor the raw client address


async def test_a_bug_answers_500_json_and_logs_its_traceback_without_the_message(
    gw: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError(f"client value {CANARY}")

    monkeypatch.setattr("services.ingest.app.parse_batch", broken)
    status, doc, _ = await gw.post(batch_body(new_session()))
    assert (status, doc["error"]) == (500, "internal_error")
    assert CANARY not in orjson.dumps(doc).decode()
    logged = logged_text(caplog.records)
    assert "KeyError" in logged and "broken" in logged  # which error, and where
    assert CANARY not in logged


async def test_a_user_agent_that_is_not_utf8_is_published_cleaned_instead_of_a_500(
    gw: Running, kafka_broker: LocalKafkaBroker
) -> None:
    session = new_session()
    body = batch_body(session, events=[{"type": 3, "timestamp": now_ms()}, {"type": "x"}])
    status, answer = await raw_request(
        gw,
        b"POST /v1/recordings?key=pk_shop HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nUser-Agent: Moz\xff\xfe\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body),
    )
    assert (status, orjson.loads(answer)["status"]) == (202, "accepted")
    [envelope] = await published(kafka_broker, {f"shop:{session}".encode()}, 1)
    assert envelope.user_agent == "Moz??"


async def test_a_chunked_body_broken_mid_stream_and_abandoned_is_a_client_error_not_a_500(
    gw: Running,
) -> None:
    refused = metric("replaypipe_ingest_rejections_total", reason="malformed_request")
    failed = metric("replaypipe_ingest_requests_total", status="500")
    host, port = gw.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/recordings?key=pk_shop HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body by now
    writer.write(b"zz\r\n")  # not a chunk size
    await writer.drain()
    writer.close()  # and gone: the handler's read fails
    for _ in range(200):
        if metric("replaypipe_ingest_rejections_total", reason="malformed_request") > refused:
            break
        await asyncio.sleep(0.05)
    assert metric("replaypipe_ingest_rejections_total", reason="malformed_request") == refused + 1
    assert metric("replaypipe_ingest_requests_total", status="500") == failed


# --- fuzz: nothing a client sends gets a 500 or an undocumented answer -----------
#
# Bodies are built with placeholders (strings below) swapped for raw JSON text at
# send time: the current clock, numbers orjson would not write, nesting it could not.

NOW_MARK, HUGE_MARK, DEEP_MARK = "@now@", "@huge@", "@deep@"
HUGE_NUMBERS = [b"1e400", b"-1e400", b"1" + b"0" * 400, b"18446744073709551616", b"-0", b"1E-400"]
DEPTHS = [197, 198, 254, 255, 256, 1023, 1100, 4000]
FUZZ_BOMB = gzip.compress(b"\0" * (4 * 1024 * 1024), compresslevel=9)  # 4 MiB, limit 1 MiB
# One clock for the whole run (well within the skew): drawing must not depend on time.
FUZZ_NOW_MS = now_ms()


DOCUMENTED = documented_statuses()

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
marked_texts = st.one_of(texts, st.builds(lambda a, b: a + CANARY + b, texts, texts))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    marked_texts,
    st.sampled_from([NOW_MARK, HUGE_MARK, DEEP_MARK]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(marked_texts, inner, max_size=4),
    max_leaves=12,
)
events = st.one_of(
    st.fixed_dictionaries(
        {"type": st.integers(min_value=-1, max_value=7), "timestamp": st.just(NOW_MARK)},
        optional={"data": json_values},
    ),
    st.fixed_dictionaries(
        {},
        optional={"type": json_values, "timestamp": json_values, "data": json_values},
    ),
    json_values,
)
ids = st.one_of(*[st.from_regex(r"\A[A-Za-z0-9-]{1,70}\Z")] * 3, json_values)
documents = st.fixed_dictionaries(
    {"session_id": ids, "events": st.one_of(st.lists(events, min_size=1, max_size=6), json_values)},
    optional={
        "window_id": ids,
        "visitor_id": ids,
        "seq": st.one_of(st.integers(min_value=0, max_value=2**53), json_values),
        "consent": st.one_of(st.booleans(), json_values),
        "page_url": st.one_of(marked_texts, json_values),
        "extra": json_values,
    },
)


# Right in every field but the events' contents: these reach Kafka (and the path
# that serialises the kept events again when one is left out).
plausible_batches = st.fixed_dictionaries(
    {
        "session_id": st.from_regex(r"\A[A-Za-z0-9-]{1,70}\Z"),
        "events": st.lists(events, min_size=1, max_size=6).map(
            lambda kept: [{"type": 3, "timestamp": NOW_MARK}, *kept]
        ),
    },
    optional={"seq": st.integers(min_value=0, max_value=2**53 - 1), "page_url": marked_texts},
)


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """JSON text of a batch with every field right, wrong, huge or deep."""
    body = orjson.dumps(draw(st.one_of(plausible_batches, documents, json_values)))
    body = body.replace(f'"{NOW_MARK}"'.encode(), str(FUZZ_NOW_MS).encode())
    # Only some bodies get the extremes, or hardly any would get past them.
    huge = draw(st.sampled_from(HUGE_NUMBERS)) if draw(st.booleans()) else b"12345"
    body = body.replace(f'"{HUGE_MARK}"'.encode(), huge)
    depth = draw(st.sampled_from(DEPTHS)) if draw(st.booleans()) else 2
    body = body.replace(f'"{DEEP_MARK}"'.encode(), b"[" * depth + b"]" * depth)
    if body.endswith(b"}") and draw(st.sampled_from([False, False, False, True])):
        # Over WRAPPED_PARSE_FROM_BYTES: the depth is checked by the wrapped parse.
        body = body[:-1] + b',"padding":"' + b"p" * 70_000 + b'"}'
    return body


@st.composite
def damaged(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` as it is, cut short, or with some bytes changed."""
    how = draw(st.sampled_from(["as is", "as is", "as is", "cut", "garble"]))
    if how == "cut" or not body:
        return body[: draw(st.integers(min_value=0, max_value=len(body)))]
    if how == "garble":
        changed = bytearray(body)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            changed[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
        return bytes(changed)
    return body


@st.composite
def encoded(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    """``body`` compressed one way or another (or a bomb), and the encoding to declare."""
    how = draw(
        st.sampled_from(
            [
                *("identity", "identity", "identity", "gzip", "gzip"),
                *("deflate", "raw-deflate", "two-members", "bomb"),
            ]
        )
    )
    if how == "gzip":
        return draw(damaged(gzip.compress(body, mtime=0))), "gzip"
    if how == "deflate":
        return draw(damaged(zlib.compress(body))), "deflate"
    if how == "raw-deflate":
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(body) + packer.flush(), "deflate"
    if how == "two-members":
        return gzip.compress(body, mtime=0) + gzip.compress(body, mtime=0), "gzip"
    if how == "bomb":
        return FUZZ_BOMB, "gzip"
    return body, ""


query_parts = st.one_of(
    st.sampled_from(["key=pk_shop", "key=pk_half", "key=pk_off", "key=pk_slow", "key=pk_quiet"]),
    st.sampled_from(["key=", "key", "key=pk_shop&key=pk_off", "enc=gzip", "enc=deflate", "enc=br"]),
    st.sampled_from([f"key={CANARY}", f"enc={CANARY}", f"{CANARY}=1", "%ff%fe=%00", "&&=&", "%"]),
    st.text(alphabet="abcdefgz%=&;+/?:@!$'()*,", max_size=20),
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
marked_header_values = st.one_of(header_values, st.builds(lambda a: a + CANARY, header_values))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """One POST: its query string, its body on the wire and its headers."""
    kind = draw(st.sampled_from(["json", "json", "json", "bytes", "big"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=600))
    elif kind == "big":
        body = b" " * (300 * 1024)  # over the wire limit of the test gateway
    else:
        body = draw(damaged(draw(json_bodies())))
    body, encoding = draw(encoded(body))
    # Mostly what gets past the first checks, so the later ones are reached too.
    usual = st.sampled_from([True, True, True, False])
    content_types = ["application/json", "text/plain;charset=UTF-8", "application/octet-stream"]
    headers = {
        "Content-Type": draw(st.sampled_from(content_types))
        if draw(usual)
        else draw(marked_header_values)
    }
    where = draw(st.sampled_from(["header", "header", "query", "sniffed", "wrong"]))
    if where == "header" and encoding:
        headers["Content-Encoding"] = encoding
    elif where == "wrong":
        headers["Content-Encoding"] = draw(
            st.one_of(st.sampled_from(["br", "GZIP", " gzip ", "identity", "x"]), header_values)
        )
    query = "&".join(
        (["key=pk_shop"] if draw(usual) else []) + draw(st.lists(query_parts, max_size=2))
    )
    if where == "query" and encoding:
        query += f"&enc={encoding}"
    for name in ("X-Forwarded-For", "User-Agent"):
        if draw(st.booleans()):
            headers[name] = draw(marked_header_values)
    for name, usual_value in (("Origin", SHOP_ORIGIN), ("X-Replaypipe-Key", "pk_shop")):
        if not draw(usual):  # the header, right or wrong
            headers[name] = draw(st.one_of(st.just(usual_value), marked_header_values))
    return query, body, headers


def assert_documented_answer(status: int, answer: bytes, headers: dict[str, str]) -> None:
    """A 202 of the documented shape, or a documented error code in the error shape."""
    assert status != 500, answer
    assert CANARY.lower().encode() not in answer.lower()  # also not lower-cased
    assert not any(
        CANARY.lower() in value.lower()
        for name, value in headers.items()
        if name != "Access-Control-Allow-Origin"  # the allowed origin, echoed by design
    )
    doc = orjson.loads(answer)
    event(f"{status} {doc.get('error', doc.get('status'))}")  # --hypothesis-show-statistics
    if status == 202:
        assert doc["status"] in ("accepted", "sampled_out"), doc
        return
    assert set(doc) == {"error", "detail"}, doc
    assert status in DOCUMENTED, (status, doc)
    assert re.search(rf"\b{doc['error']}\b", DOCUMENTED[status]), (status, doc)
    assert isinstance(doc["detail"], str) and doc["detail"].endswith(".")
    assert len(doc["detail"]) < 300


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=requests())
async def test_fuzz_no_request_gets_a_500_and_every_refusal_is_documented(
    gw: Running, request: tuple[str, bytes, dict[str, str]]
) -> None:
    query, body, headers = request
    url = URL(f"{gw.url}/v1/recordings?{query}", encoded=True)
    async with gw.http.post(url, data=body, headers=headers) as response:
        answer = await response.read()
        assert_documented_answer(response.status, answer, dict(response.headers))
