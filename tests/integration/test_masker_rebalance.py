"""Two maskers in one group on a real broker: partitions move under a backlog, nothing is lost.

The soak's masker fault on one broker (issue 16 item 3): masker ``a`` works
through a backlog, masker ``b`` joins (a rebalance while ``a``'s buffers are
full), ``b`` is killed with -9 and started again (two more rebalances), while
new batches keep arriving. Every batch on ``recordings.raw`` must reach
``recordings.masked``. (On one broker
and a quiet machine this passed before the in-order acks too: it specifies the
behaviour, it did not reproduce the soak's loss.)
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from services.dev.kafka_broker import LocalKafkaBroker
from services.dev.rrweb_gen import generate_session
from services.shared.envelope import BatchEnvelope
from tests.integration.test_masker_app import (
    Masker,
    batch_ids,
    broker,
    consume_masked,
    envelope_producer,
    masker_factory,
    poll,
    produce,
    send_envelopes,
)
from tests.unit.masker_pages import START_MS

__all__ = ["broker", "masker_factory"]  # the fixtures, imported so pytest finds them here

pytestmark = pytest.mark.integration

GROUP = {"MASKER_APP_ID": "masker-rebalance"}


def test_partitions_moving_between_maskers_under_a_backlog_lose_no_batch(
    broker: LocalKafkaBroker, masker_factory: Callable[..., Masker]
) -> None:
    bootstrap = broker.bootstrap_servers
    rng = random.Random(16)
    sessions = [generate_session(rng, site_id="moves", start_ms=START_MS) for _ in range(6000)]
    envelopes = [env for session in sessions for env in session.envelopes(START_MS)]
    backlog, stream = envelopes[: len(envelopes) // 2], envelopes[len(envelopes) // 2 :]
    produce(bootstrap, backlog)

    a = masker_factory("moves-a", GROUP)
    b = masker_factory("moves-b", GROUP)
    a.start()
    poll(lambda: a.metric("replaypipe_masker_batches_total") >= 100, "a's first batches")
    # New batches keep arriving through every fault, however fast the maskers
    # work through the backlog: each rebalance moves partitions with work on them.
    feed = Trickle(bootstrap, stream)
    feed.start()
    b.start()  # a rebalance while a has a backlog buffered
    poll(lambda: b.metric("replaypipe_masker_batches_total") >= 1, "b's first batch", 120)
    time.sleep(2.0)
    b.kill()
    time.sleep(12.0)  # past the 10 s session timeout: a takes b's partitions over
    b.start()
    time.sleep(3.0)  # the third rebalance, with batches still arriving
    sent = feed.stop()
    assert sent < len(stream), "the stream ran out before the faults ended; make it longer"

    expected = {(env.session_id, env.seq) for env in backlog + stream[:sent]}
    docs, _ = consume_masked(bootstrap, "moves", all_or_after(expected, 240.0), timeout=300)
    missing = expected - batch_ids(docs)
    assert not missing, f"{len(missing)} of {len(expected)} batches never masked"


class Trickle:
    """Publishes envelopes in small acknowledged chunks from a thread until stopped."""

    CHUNK = 50
    PAUSE_S = 0.25

    def __init__(self, bootstrap: str, envelopes: list[BatchEnvelope]) -> None:
        self._bootstrap = bootstrap
        self._envelopes = envelopes
        self._stop = threading.Event()
        self._sent = 0
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop after the chunk in flight; the number of envelopes acknowledged, in order."""
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the trickle did not stop"
        return self._sent

    def _run(self) -> None:
        asyncio.run(self._publish())

    async def _publish(self) -> None:
        producer = envelope_producer(self._bootstrap)
        await producer.start()
        try:
            while not self._stop.is_set() and self._sent < len(self._envelopes):
                chunk = self._envelopes[self._sent : self._sent + self.CHUNK]
                await send_envelopes(producer, chunk)
                self._sent += len(chunk)
                await asyncio.sleep(self.PAUSE_S)
        finally:
            await producer.stop()


def all_or_after(
    expected: set[tuple[str, int]], wait_s: float
) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``consume_masked`` condition: every expected batch seen, or ``wait_s`` passed."""
    deadline = time.monotonic() + wait_s
    return lambda docs: batch_ids(docs) >= expected or time.monotonic() > deadline
