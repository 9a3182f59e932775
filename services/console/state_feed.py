"""``console.state`` on Kafka: create the topic, follow it into a ConsoleState, write to it.

Every replica reads the whole compacted topic from the beginning (no consumer
group), like ``sites.config``; a write is applied locally as soon as Kafka
acknowledges it, so the replica that wrote reads its own write at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from services.console.state import ConsoleState, Entity, StateRecordError, record_key, record_value
from services.shared import topics
from services.shared.compacted_topic import follow_compacted_topic
from services.shared.kafka import KafkaSettings
from services.shared.kafka_security import aiokafka_client_kwargs
from services.shared.site_settings import SiteSettings

log = logging.getLogger("replaypipe.console.state")

STATE_TOPIC = "console.state"
AUDIT_TOPIC = "console.audit"
# One partition: a total order of every change, and offsets comparable across keys.
STATE_TOPIC_CONFIGS = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
AUDIT_RETENTION_MS = 7 * 86_400_000


async def ensure_console_topics(kafka: KafkaSettings) -> list[str]:
    """Create ``console.state`` (compacted) and ``console.audit`` if missing."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**aiokafka_client_kwargs(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(STATE_TOPIC, 1, kafka.replication_factor, topic_configs=STATE_TOPIC_CONFIGS),
            NewTopic(
                AUDIT_TOPIC,
                1,
                kafka.replication_factor,
                topic_configs={"retention.ms": str(AUDIT_RETENTION_MS)},
            ),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()


class StateStore:
    """The shared state of every console replica: follow ``console.state``, write to it."""

    def __init__(self, kafka: KafkaSettings, state: ConsoleState | None = None) -> None:
        self.kafka = kafka
        self.state = state or ConsoleState()
        self.caught_up = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Create the topics and start the producer."""
        await ensure_console_topics(self.kafka)
        self._producer = AIOKafkaProducer(
            **aiokafka_client_kwargs(self.kafka), acks="all", enable_idempotence=True
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Stop the producer."""
        if self._producer is not None:
            await self._producer.stop()

    async def put(self, entity: Entity) -> None:
        """Write one entity (acknowledged by Kafka) and apply it here."""
        await self._send(record_key(entity), record_value(entity, self.state.totp_sealer))

    async def delete(self, key: str) -> None:
        """Write a tombstone for ``key`` and apply it here."""
        await self._send(key, None)

    async def publish_site_settings(self, settings: SiteSettings) -> None:
        """Publish a site's settings to ``sites.config`` (every service applies them live)."""
        assert self._producer is not None, "StateStore.start() first"
        await self._producer.send_and_wait(
            topics.SITES_CONFIG, orjson.dumps(settings.to_dict()), key=settings.site_id.encode()
        )

    async def publish_audit(self, event: dict[str, Any]) -> None:
        """Publish one audit event to ``console.audit`` (the sink stores it in ``audit_log``)."""
        assert self._producer is not None, "StateStore.start() first"
        await self._producer.send_and_wait(
            AUDIT_TOPIC, orjson.dumps(event), key=str(event.get("site_id", "")).encode()
        )

    async def _send(self, key: str, value: bytes | None) -> None:
        assert self._producer is not None, "StateStore.start() first"
        meta = await self._producer.send_and_wait(STATE_TOPIC, value, key=key.encode())
        self.state.apply(key, value, meta.offset)

    async def follow(self, stop: asyncio.Event | None = None) -> None:
        """Apply every record of the topic until cancelled; sets ``caught_up`` at the end of it.

        Kafka going away is waited for (with backoff) and the topic read again.
        """
        await follow_compacted_topic(
            STATE_TOPIC,
            self.kafka,
            self._apply_record,
            stop=stop,
            on_caught_up=self.caught_up.set,
            logger=log,
            poll_ms=200,
        )

    def _apply_record(self, key: bytes, value: bytes | None, offset: int) -> None:
        try:
            self.state.apply(key.decode(), value, offset)
        except StateRecordError as exc:
            log.error(
                "ignored bad console.state record", extra={"offset": offset, "reason": str(exc)}
            )


async def load_state(kafka: KafkaSettings) -> ConsoleState:
    """Read ``console.state`` to its current end (for the CLI) and return the state."""
    store = StateStore(kafka)
    await ensure_console_topics(kafka)
    stop = asyncio.Event()
    task = asyncio.create_task(store.follow(stop))
    try:
        await asyncio.wait_for(store.caught_up.wait(), timeout=60)
    finally:
        stop.set()
        await task
    return store.state
