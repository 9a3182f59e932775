"""Kafka settings shared by the services, and the topic layout the project creates."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from services.shared import topics
from services.shared.env import env_int, env_str
from services.shared.keyring import KEYS_TOPIC, KEYS_TOPIC_CONFIGS

# rrweb full snapshots are often larger than Kafka's 1 MiB default.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how topics are laid out (``KAFKA_*`` variables)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = 4
    replication_factor: int = 1
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def from_env(cls) -> KafkaSettings:
        """Read ``KAFKA_BOOTSTRAP_SERVERS``, ``KAFKA_PARTITIONS``, ``KAFKA_REPLICATION_FACTOR``."""
        return cls(
            bootstrap_servers=env_str("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers),
            partitions=env_int("KAFKA_PARTITIONS", cls.partitions),
            replication_factor=env_int("KAFKA_REPLICATION_FACTOR", cls.replication_factor),
            max_message_bytes=env_int("KAFKA_MAX_MESSAGE_BYTES", cls.max_message_bytes),
        )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the project owns: name, partitions and topic-level configs."""

    name: str
    partitions: int
    configs: dict[str, str]


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics of the pipeline with explicit partition counts and configs."""
    big = {"max.message.bytes": str(settings.max_message_bytes)}
    return [
        TopicSpec(topics.RAW, settings.partitions, {**big, "retention.ms": str(7 * 86_400_000)}),
        TopicSpec(topics.MASKED, settings.partitions, {**big, "retention.ms": str(7 * 86_400_000)}),
        TopicSpec(topics.DLQ, 1, {**big, "retention.ms": str(30 * 86_400_000)}),
        TopicSpec(topics.SITES_CONFIG, 1, {"cleanup.policy": "compact"}),
        TopicSpec(KEYS_TOPIC, 1, KEYS_TOPIC_CONFIGS),
    ]


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create the pipeline's topics if missing; returns the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            s.name,
                            s.partitions,
                            settings.replication_factor,
                            topic_configs=s.configs,
                        )
                        for s in wanted
                    ]
                )
        return [s.name for s in wanted]
    finally:
        await admin.close()
