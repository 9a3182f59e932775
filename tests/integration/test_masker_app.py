"""The masker process on a real broker: crash safety, state recovery, live settings, eviction.

Only the masker runs here (no ingest, no sink): tests produce envelopes to
``recordings.raw`` and read ``recordings.masked`` with aiokafka. Each test uses
its own site id and faust app id, so maskers of different tests never share
state or partitions, and each test reads back only its own sessions.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.dev.stack import LocalStack
from services.shared import topics
from services.shared.envelope import BatchEnvelope, RrwebEvent
from services.shared.kafka import KafkaSettings
from services.shared.site_feed import publish_site_settings
from services.shared.site_settings import SiteSettings
from tests.conftest import make_stack, start_broker
from tests.unit.masker_pages import (
    CITY_INPUT_ID,
    HEADING_TEXT_ID,
    PASSWORD_INPUT_ID,
    START_MS,
    envelope,
    raw_with_custom_payload_nested,
    small_page,
    typed_values,
    typing_batch,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """A broker of this module's own, so the shared stack's masker never sees this data."""
    broker = start_broker(tmp_path_factory.mktemp("masker-kafka"))
    yield broker
    broker.stop()


@dataclass
class Masker:
    """One masker process (restartable) and its ops port."""

    stack: LocalStack

    def start(self) -> None:
        self.stack.start_service("masker")
        self.stack.wait_ready("masker", self.stack.masker_port)

    def kill(self) -> None:
        self.stack.stop_service("masker", signal.SIGKILL)

    def stop(self) -> None:
        self.stack.stop_service("masker")

    @property
    def pid(self) -> int:
        return self.stack.processes["masker"].pid

    def metric_lines(self, name: str) -> list[str]:
        with urlopen(f"http://127.0.0.1:{self.stack.masker_port}/metrics", timeout=5) as response:
            body: bytes = response.read()
        return [line for line in body.decode().splitlines() if line.startswith(name)]

    def metric(self, name: str) -> float:
        lines = self.metric_lines(name + " ")
        return float(lines[0].split()[-1]) if lines else 0.0


@pytest.fixture
def masker_factory(
    broker: LocalKafkaBroker, tmp_path: Path
) -> Iterator[Callable[[str, dict[str, str]], Masker]]:
    """Build maskers on the module broker; every one is stopped after the test."""
    made: list[Masker] = []

    def make(name: str, env: dict[str, str] | None = None) -> Masker:
        stack = make_stack(broker, tmp_path / name, name, {"LOG_LEVEL": "INFO", **(env or {})})
        masker = Masker(stack)
        made.append(masker)
        return masker

    yield make
    for masker in made:
        masker.stop()


def produce(bootstrap: str, envelopes: list[BatchEnvelope]) -> None:
    """Publish envelopes to ``recordings.raw`` keyed by session, acknowledged by the broker."""

    async def run() -> None:
        producer = envelope_producer(bootstrap)
        await producer.start()
        try:
            await send_envelopes(producer, envelopes)
        finally:
            await producer.stop()

    asyncio.run(run())


def envelope_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer for ``send_envelopes``: every batch acknowledged by all replicas."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=10 << 20
    )


async def send_envelopes(producer: AIOKafkaProducer, envelopes: list[BatchEnvelope]) -> None:
    """Publish envelopes to ``recordings.raw`` keyed by session; return once all are acked."""
    futures = [
        await producer.send(
            topics.RAW, env.to_json(), key=topics.session_key(env.site_id, env.session_id)
        )
        for env in envelopes
    ]
    await asyncio.gather(*futures)


def consume_masked(
    bootstrap: str,
    site: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 90.0,
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Read ``recordings.masked`` from the start until ``done(site's envelopes)``.

    Returns the site's decoded envelopes and the raw values of every message read.
    """

    async def run() -> tuple[list[dict[str, Any]], list[bytes]]:
        consumer = AIOKafkaConsumer(
            topics.MASKED,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=20 << 20,
            fetch_max_bytes=50 << 20,
        )
        await consumer.start()
        found: list[dict[str, Any]] = []
        raw: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while not done(found):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"recordings.masked did not reach the expected state in {timeout:.0f}s; "
                        f"{len(found)} batches of site {site!r} seen"
                    )
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        assert record.value is not None
                        raw.append(record.value)
                        doc = orjson.loads(record.value)
                        if doc["site_id"] == site:
                            found.append(doc)
        finally:
            await consumer.stop()
        return found, raw

    return asyncio.run(run())


def batch_ids(docs: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(doc["session_id"], doc["seq"]) for doc in docs}


def changelog_reader(bootstrap: str, app_id: str) -> AIOKafkaConsumer:
    """A group-less consumer of the masker's state-table changelog, from the beginning."""
    return AIOKafkaConsumer(
        f"{app_id}-session-mask-state-changelog",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )


def wait_for_changelog_key(bootstrap: str, app_id: str, key: bytes, timeout: float = 60) -> None:
    """Wait until the masker's state table changelog holds ``key`` (state is durable)."""

    async def run() -> None:
        consumer = changelog_reader(bootstrap, app_id)
        await consumer.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    if any(r.key == key and r.value for r in records):
                        return
            raise AssertionError(f"session state not in the changelog after {timeout:.0f}s")
        finally:
            await consumer.stop()

    asyncio.run(run())


def changelog_tombstones(bootstrap: str, app_id: str) -> set[bytes]:
    """Keys whose latest record in the masker's state changelog is a tombstone."""

    async def run() -> set[bytes]:
        consumer = changelog_reader(bootstrap, app_id)
        await consumer.start()
        latest: dict[bytes, bytes | None] = {}
        try:
            end = await consumer.end_offsets(list(consumer.assignment()))
            while [tp for tp, offset in end.items() if await consumer.position(tp) < offset]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    latest.update((r.key, r.value) for r in records if r.key is not None)
        finally:
            await consumer.stop()
        return {key for key, value in latest.items() if value is None}

    return asyncio.run(run())


def poll(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until ``check()`` holds (no timing assertion: only a generous deadline)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:.0f}s")
        time.sleep(0.2)


# --- state ---------------------------------------------------------------------------


def test_session_state_survives_a_sigkill_and_keeps_inputs_masked(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("state-kill")
    masker.start()
    produce(bootstrap, [small_page("recover", "s1")])
    consume_masked(bootstrap, "recover", lambda docs: len(docs) >= 1)
    wait_for_changelog_key(bootstrap, "masker-state-kill", b"recover:s1")

    masker.kill()
    masker.start()
    produce(bootstrap, [typing_batch("recover", "s1", 1, "Prague", "hunter2-secret")])
    docs, raw = consume_masked(bootstrap, "recover", lambda docs: ("s1", 1) in batch_ids(docs))

    after = typed_values(next(d for d in docs if d["seq"] == 1))
    assert after[PASSWORD_INPUT_ID] == "*" * len("hunter2-secret")
    # The heading is known plain text only thanks to the recovered snapshot state.
    assert after[HEADING_TEXT_ID] == "Welcome"
    assert not any(b"hunter2-secret" in value for value in raw)


def test_batch_of_a_session_without_state_is_masked_conservatively(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("no-state")
    masker.start()
    # No full snapshot was ever seen for this session: every id-addressed value is masked.
    produce(bootstrap, [typing_batch("nostate", "s1", 3, "Prague", "hunter2-secret")])
    docs, raw = consume_masked(bootstrap, "nostate", lambda docs: len(docs) >= 1)

    values = typed_values(docs[0])
    assert values[PASSWORD_INPUT_ID] == "*" * len("hunter2-secret")
    assert values[CITY_INPUT_ID] == "******"
    assert values[HEADING_TEXT_ID] == "*******"
    assert not any(b"hunter2-secret" in value or b"Prague" in value for value in raw)


# --- live settings -------------------------------------------------------------------


def test_site_settings_published_to_sites_config_apply_without_restart(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("live")
    masker.start()
    pid = masker.pid
    produce(
        bootstrap, [small_page("live", "before"), typing_batch("live", "before", 1, "Oslo", "x")]
    )
    docs, _ = consume_masked(bootstrap, "live", lambda docs: ("before", 1) in batch_ids(docs))
    assert typed_values(next(d for d in docs if d["seq"] == 1))[CITY_INPUT_ID] == "****"

    live = SiteSettings(site_id="live", record_inputs=True)
    asyncio.run(publish_site_settings(KafkaSettings(bootstrap), live))

    # Keep sending fresh sessions until one is masked with the new settings.
    attempt = 0

    def city_recorded() -> bool:
        nonlocal attempt
        attempt += 1
        session = f"after{attempt}"
        produce(
            bootstrap, [small_page("live", session), typing_batch("live", session, 1, "Oslo", "pw")]
        )
        found, _ = consume_masked(bootstrap, "live", lambda d: (session, 1) in batch_ids(d))
        doc = next(d for d in found if d["session_id"] == session and d["seq"] == 1)
        values = typed_values(doc)
        assert values[PASSWORD_INPUT_ID] == "**"  # a password stays masked whatever the site says
        return bool(values[CITY_INPUT_ID] == "Oslo")

    poll(city_recorded, "the record_inputs update")
    assert masker.pid == pid  # the same process: no restart


def test_site_switched_to_required_consent_drops_events_without_consent(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("consent")
    masker.start()
    asyncio.run(
        publish_site_settings(
            KafkaSettings(bootstrap), SiteSettings(site_id="consent", consent_mode="required")
        )
    )
    attempt = 0

    def dropped() -> bool:
        nonlocal attempt
        attempt += 1
        # A session without consent, then a marker session that a consent site still
        # publishes (the visitor consented), so we know the first one was processed.
        quiet, marker = f"quiet{attempt}", f"marker{attempt}"
        consenting = small_page("consent", marker)
        consenting.consent = True
        produce(bootstrap, [small_page("consent", quiet), consenting])
        found, _ = consume_masked(bootstrap, "consent", lambda d: (marker, 0) in batch_ids(d))
        return all(d["session_id"] != quiet for d in found)

    poll(dropped, "the consent_mode update")


# --- eviction and metrics --------------------------------------------------------------


def test_idle_sessions_are_evicted_from_state_and_the_gauge_follows(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory(
        "evict",
        {
            "MASKER_SESSION_IDLE_TIMEOUT_S": "5",
            "MASKER_EVICTION_INTERVAL_S": "0.5",
            "MASKER_LAG_INTERVAL_S": "0.5",
        },
    )
    masker.start()
    keys = [topics.session_key("evict", f"s{i}") for i in range(5)]
    produce(bootstrap, [small_page("evict", f"s{i}") for i in range(5)])
    consume_masked(bootstrap, "evict", lambda docs: len(docs) >= 5)
    poll(lambda: masker.metric("replaypipe_masker_sessions_in_state") >= 5, "sessions in state")

    # These 5 sessions and every other session this masker read go idle and are evicted.
    poll(lambda: masker.metric("replaypipe_masker_sessions_in_state") == 0, "eviction")
    # Tombstones in the changelog: a worker recovering the table forgets them too.
    assert changelog_tombstones(bootstrap, "masker-evict") >= set(keys)
    lag = masker.metric_lines("replaypipe_masker_consumer_lag{")
    assert {line.split('"')[1] for line in lag} == {"0", "1", "2", "3"}
    poll(
        lambda: all(
            float(line.split()[-1]) == 0
            for line in masker.metric_lines("replaypipe_masker_consumer_lag{")
        ),
        "lag back to 0",
    )

    # An evicted session is forgotten: its next inputs are masked conservatively.
    produce(bootstrap, [typing_batch("evict", "s0", 1, "Prague", "pw")])
    docs, _ = consume_masked(bootstrap, "evict", lambda d: ("s0", 1) in batch_ids(d))
    values = typed_values(next(d for d in docs if d["session_id"] == "s0" and d["seq"] == 1))
    assert values[HEADING_TEXT_ID] == "*******"


# --- processing guarantee ----------------------------------------------------------------


def test_sigkill_mid_stream_loses_no_event_and_leaks_no_secret(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    rng = random.Random(4)
    sessions = [generate_session(rng, site_id="crash", start_ms=START_MS) for _ in range(1500)]
    envelopes = [env for session in sessions for env in session.envelopes(START_MS)]
    produce(bootstrap, envelopes)
    expected = {(env.session_id, env.seq): env for env in envelopes}

    masker = masker_factory("crash")
    masker.start()
    poll(lambda: masker.metric("replaypipe_masker_batches_total") >= 200, "first batches")
    masked_before_kill = masker.metric("replaypipe_masker_batches_total")
    masker.kill()
    assert masked_before_kill < len(envelopes), "the kill came after the stream; send more"
    masker.start()
    docs, raw = consume_masked(
        bootstrap, "crash", lambda docs: batch_ids(docs) >= expected.keys(), timeout=180
    )

    # Every input event, by (session, window, seq, idx), is published at least once.
    for doc in docs:
        source = expected[(doc["session_id"], doc["seq"])]
        assert doc["window_id"] == source.window_id
        assert [e["timestamp"] for e in doc["events"]] == [e["timestamp"] for e in source.events]
    copies = Counter((doc["session_id"], doc["seq"]) for doc in docs)
    assert set(copies) == set(expected)
    # No secret typed into any session appears in anything published downstream.
    secrets = {session.session_id: [s.encode() for s in session.secrets] for session in sessions}
    leaks = [
        doc_session
        for value in raw
        if (doc_session := orjson.loads(value)["session_id"]) in secrets
        and any(secret in value for secret in secrets[doc_session])
    ]
    assert not leaks, f"secrets leaked in {len(leaks)} masked batches"


# --- batches the masker cannot mask ----------------------------------------------------


def produce_raw(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    """Publish (key, value) records to ``recordings.raw`` as they are, in order."""

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=10 << 20
        )
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topics.RAW, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(run())


def consume_dlq(
    bootstrap: str, key: bytes, count: int, timeout: float = 60.0
) -> list[tuple[dict[str, bytes], bytes]]:
    """The first ``count`` ``recordings.dlq`` records with ``key``: (headers, value)."""

    async def run() -> list[tuple[dict[str, bytes], bytes]]:
        consumer = AIOKafkaConsumer(
            topics.DLQ, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        found: list[tuple[dict[str, bytes], bytes]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(found) < count:
                assert time.monotonic() < deadline, f"{len(found)}/{count} DLQ records for {key!r}"
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(
                        (dict(record.headers), record.value or b"")
                        for record in records
                        if record.key == key
                    )
        finally:
            await consumer.stop()
        return found[:count]

    return asyncio.run(run())


def probe(masker: Masker, path: str) -> int:
    """HTTP status of one of the masker's ops endpoints."""
    try:
        with urlopen(f"http://127.0.0.1:{masker.stack.masker_port}{path}", timeout=5) as reply:
            return int(reply.status)
    except HTTPError as exc:
        return exc.code


def test_a_batch_nested_too_deep_goes_to_the_dlq_and_its_partition_moves_on(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("deep", {"MASKER_LAG_INTERVAL_S": "1"})
    masker.start()
    key = topics.session_key("deepsite", "s1")
    deep = raw_with_custom_payload_nested(300, site="deepsite", session="s1")
    after = typing_batch("deepsite", "s1", 1, "Prague", "hunter2-secret").to_json()

    produce_raw(bootstrap, [(key, deep), (key, after)])
    docs, _ = consume_masked(bootstrap, "deepsite", lambda docs: len(docs) >= 1)
    [(headers, pointer)] = consume_dlq(bootstrap, key, 1)

    assert [doc["seq"] for doc in docs] == [1]  # the batch after the poison one is masked
    assert headers["reason"] == b"too_deep" and headers["stage"] == b"masker"
    assert orjson.loads(pointer)["reason"] == "too_deep"
    assert b"[[[" not in pointer
    assert masker.metric('replaypipe_masker_dlq_total{reason="too_deep"}') == 1
    partition = orjson.loads(pointer)["partition"]
    poll(
        lambda: masker.metric(f'replaypipe_masker_consumer_lag{{partition="{partition}"}}') == 0,
        "the partition's committed offset to pass the poison batch",
    )
    assert probe(masker, "/readyz") == 200 and probe(masker, "/healthz") == 200
    started = time.monotonic()
    masker.stop()
    assert time.monotonic() - started < 25
    assert masker.stack.processes["masker"].returncode == 0


def test_a_batch_over_its_time_budget_goes_to_the_dlq_and_nothing_of_it_is_published(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    # A budget no batch can meet: every batch is over it.
    masker = masker_factory("budget", {"MASKER_BATCH_BUDGET_S": "0.000001"})
    masker.start()
    key = topics.session_key("budgetsite", "s1")

    produce(bootstrap, [typing_batch("budgetsite", "s1", 1, "Prague", "hunter2-secret")])
    [(headers, pointer)] = consume_dlq(bootstrap, key, 1)

    assert headers["reason"] == b"over_budget"
    assert b"hunter2" not in pointer and b"Prague" not in pointer
    assert masker.metric('replaypipe_masker_dlq_total{reason="over_budget"}') >= 1
    assert probe(masker, "/readyz") == 200  # the batch is over; the worker is fine


def test_healthz_answers_while_a_big_batch_is_being_masked(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    masker = masker_factory("bigbatch", {"MASKER_BATCH_BUDGET_S": "120"})
    masker.start()
    # Eight batches of ~4 MB of the card detector's slowest text: a few hundred
    # ms of masking each in the compiled core, which hands the GIL to the event
    # loop while it walks (as Python code would).
    slow_text = "4111 " * 20_000
    events: list[RrwebEvent] = [
        {"type": 5, "timestamp": START_MS + i, "data": {"tag": "log", "payload": slow_text}}
        for i in range(40)
    ]
    batches = 8
    published_before = masker.metric("replaypipe_masker_batches_total")

    produce(bootstrap, [envelope("bigsite", f"s{n}", 0, events) for n in range(batches)])
    answered: list[float] = []
    busy_seen = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert probe(masker, "/healthz") == 200
        answered.append(time.monotonic() - started)
        busy_seen = busy_seen or masker.metric("replaypipe_masker_batch_running_seconds") > 0
        # The module's earlier tests left batches on the topic too (they count in
        # batches_total): wait until a big one was published and as many as ours were.
        if (
            masker.metric('replaypipe_masker_last_event_timestamp_seconds{site="bigsite"}') > 0
            and masker.metric("replaypipe_masker_batches_total") >= published_before + batches
        ):
            break
        time.sleep(0.05)
    docs, _ = consume_masked(bootstrap, "bigsite", lambda docs: len(docs) >= batches)

    assert busy_seen, "the probe never ran while a batch was being masked"
    assert max(answered) < 2.0
    assert docs[0]["events"][0]["data"]["payload"] == slow_text  # no card in it: kept
