"""The gateway's Kafka producer: librdkafka (confluent-kafka) with asyncio futures.

Why not aiokafka here (the rest of the project uses it): every accepted batch
is compressed, framed and sent by the producer, and aiokafka does all of that
in Python on the event loop's thread — about 60 µs of a ~200 µs request.
librdkafka does it in its own C threads, outside the GIL, on the machine's
other cores; the event loop only hands over the bytes (``produce``) and later
resolves a future. See docs/benchmarks.md (ingest) for the measurement.

Delivery reports are served by ``poll()`` on the event loop's own thread:
right after each ``produce`` (under load a report is usually ready by the next
request) and on a short timer while records wait. A separate poll thread was
tried and was slower: each report then needs the GIL back from the busy event
loop, which only lets go of it every few milliseconds. Durability is
unchanged: ``acks=all`` and the idempotent producer (no duplicate on
librdkafka's retries, order kept per partition), murmur2 partitioning as the
Java client and aiokafka (a session's key keeps its partition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger("replaypipe.ingest.kafka")

# Poll timer while records wait for their ack (the latency it may add), and
# while none do (client errors and logs are still served).
BUSY_POLL_S = 0.001
IDLE_POLL_S = 0.1


class PublishError(Exception):
    """Kafka did not take a record; ``too_large`` when it can never take it."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


def _error(err: KafkaError) -> PublishError:
    return PublishError(err.name(), too_large=err.code() == KafkaError.MSG_SIZE_TOO_LARGE)


class AsyncProducer:
    """A librdkafka producer whose ``send`` returns an asyncio future of the ack.

    ``config`` is librdkafka's (``bootstrap.servers``, ``acks``, ...). Create,
    ``start()`` and ``stop()`` it on the event loop that awaits the futures;
    every method but ``metadata_ok``'s request runs on that loop's thread.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**config, "logger": log}
        self._generation = 0  # which producer is current (a failed one is replaced)
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting = 0  # records sent whose delivery report has not come yet
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Create the client (it connects in the background) and the poll timer."""
        self._loop = asyncio.get_running_loop()
        self._producer = self._new_producer()
        self._schedule(self._loop, IDLE_POLL_S)

    def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        """Queue one record; the future is done when Kafka acknowledged it (or failed).

        Raises :class:`PublishError` at once when the record cannot even be
        queued: the local buffer is full, or the record is over the size limit.
        """
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            raise PublishError("producer not started")
        future: asyncio.Future[None] = loop.create_future()
        try:
            producer.produce(
                topic, value, key, on_delivery=lambda err, _msg: self._delivered(future, err)
            )
        except BufferError:
            raise PublishError("local queue full") from None
        except KafkaException as exc:
            raise _error(exc.args[0]) from None
        self._waiting += 1
        producer.poll(0)  # reports of earlier records, ready by now under load
        if self._waiting == 1:  # none waited: the idle timer would leave this report waiting
            self._schedule(loop, BUSY_POLL_S)
        return future

    def queued(self) -> int:
        """Records (and requests) librdkafka holds that Kafka has not acknowledged."""
        producer = self._producer
        return len(producer) if producer is not None else 0

    async def metadata_ok(self, topic: str, timeout_s: float) -> bool:
        """Whether the cluster answers now with a leader for every partition of ``topic``."""
        producer = self._producer
        if producer is None:
            return False
        try:
            cluster = await asyncio.to_thread(producer.list_topics, topic, timeout_s)
        except KafkaException:
            return False
        found = cluster.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return False
        return all(p.leader >= 0 for p in found.partitions.values())

    async def stop(self, timeout_s: float) -> int:
        """Deliver every queued record (waiting up to ``timeout_s``), then close.

        Returns how many records were still undelivered at the deadline (their
        clients were answered 503 or are answered now).
        """
        producer = self._producer
        if producer is None:
            return 0
        deadline = time.monotonic() + timeout_s
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(0.01)
        left = int(producer.flush(0))
        if self._timer is not None:
            self._timer.cancel()
        self._producer = None
        if left:
            log.warning("kafka records undelivered at shutdown", extra={"count": left})
        return left

    # --- delivery reports --------------------------------------------------------

    def _tick(self) -> None:
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            return
        producer.poll(0)
        self._schedule(loop, BUSY_POLL_S if self._waiting else IDLE_POLL_S)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(delay_s, self._tick)

    def _delivered(self, future: asyncio.Future[None], err: KafkaError | None) -> None:
        self._waiting -= 1
        if future.done():  # the POST gave up waiting (timeout): nothing to tell
            return
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(_error(err))

    def _new_producer(self) -> Producer:
        self._generation += 1
        generation = self._generation
        return Producer({**self._config, "error_cb": lambda err: self._on_error(err, generation)})

    def _on_error(self, err: KafkaError, generation: int) -> None:
        """Client-wide errors, served by ``poll`` on the event loop's thread."""
        if err.fatal():
            if generation != self._generation:
                return  # the old producer, already being replaced
            # The idempotent producer can no longer guarantee order or no-duplicates
            # (e.g. the broker lost its state): librdkafka refuses every record from
            # now on. Start a new producer instead of answering 503 forever.
            log.error("kafka producer failed; starting a new one", extra={"reason": err.name()})
            if self._loop is not None:
                self._loop.call_soon(self._renew)
            return
        if err.code() == KafkaError._AUTHENTICATION:
            # Not an outage: retrying will not help until the credentials are fixed.
            log.error(
                "kafka refused the credentials (KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD_FILE"
                " or the client certificate); retrying",
                extra={"reason": err.name()},
            )
            return
        # All brokers down, a broker restarting...: librdkafka keeps retrying;
        # records still wait for their own deadline.
        log.warning("kafka client error", extra={"reason": err.name()})

    def _renew(self) -> None:
        """Replace a failed producer; the records it held fail (their clients get 503)."""
        old = self._producer
        if old is None:
            return
        self._producer = self._new_producer()
        old.purge()  # queued and in-flight records: reported as purged at once
        old.poll(0)  # serve those reports now, failing their futures
