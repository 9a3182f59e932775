"""The sink's dead-letter sender: messages it can never store go to ``recordings.dlq``.

Two shapes, both with headers ``reason``, ``detail``, ``stage=sink`` and
``source`` (topic/partition/offset), both counted in
``replaypipe_sink_dlq_total{reason}``:

- a **copy** (the value as it was on ``recordings.masked``) for a message
  that is not a valid envelope: it is small, already masked, and can be
  fixed and replayed from the DLQ itself;
- a **pointer** (where it is, not what it is: :func:`dlq_pointer`) for a
  message ClickHouse refused to store (a data error, or too costly even
  alone): such a message can be large, and it stays in
  ``recordings.masked`` for that topic's retention for anyone to read.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from services.shared.kafka import KafkaSettings
from services.shared.kafka_security import aiokafka_client_kwargs
from services.sink import metrics

log = logging.getLogger("replaypipe.sink.dlq")

MAX_DETAIL_CHARS = 500


def dlq_pointer(topic: str, partition: int, offset: int, reason: str) -> bytes:
    """The DLQ value that names a message instead of copying it."""
    return orjson.dumps(
        {
            "stage": "sink",
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "reason": reason,
        }
    )


class DeadLetters:
    """Publishes to the DLQ topic (acks=all, idempotent) and counts by reason."""

    def __init__(self, kafka: KafkaSettings, topic: str, *, max_request_size: int) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            **aiokafka_client_kwargs(kafka),
            acks="all",
            enable_idempotence=True,
            max_request_size=max_request_size,
        )

    async def start(self) -> None:
        """Connect the producer."""
        await self._producer.start()

    async def close(self) -> None:
        """Flush and close the producer."""
        await self._producer.stop()

    async def send_copy(self, record: Any, reason: str, detail: str) -> None:
        """Send the consumed ``record``'s value itself (a message that is not a valid envelope)."""
        await self._send(record, record.value, reason, detail)

    async def send_pointer(self, record: Any, reason: str, detail: str) -> None:
        """Send where ``record`` is (topic, partition, offset), not its value."""
        pointer = dlq_pointer(record.topic, record.partition, record.offset, reason)
        await self._send(record, pointer, reason, detail)

    async def _send(self, record: Any, value: bytes | None, reason: str, detail: str) -> None:
        await self._producer.send_and_wait(
            self.topic,
            value,
            key=record.key,
            headers=[
                ("reason", reason.encode()),
                ("detail", detail[:MAX_DETAIL_CHARS].encode()),
                ("stage", b"sink"),
                ("source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ],
        )
        metrics.DLQ.labels(reason).inc()
        log.warning(
            "message sent to the DLQ",
            extra={"reason": reason, "partition": record.partition, "offset": record.offset},
        )
