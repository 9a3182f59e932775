"""Kafka settings shared by the services, and the topic layout the project creates."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from services.shared import topics
from services.shared.env import from_env, setting
from services.shared.keyring import KEYS_TOPIC, KEYS_TOPIC_CONFIGS

# rrweb full snapshots are often larger than Kafka's 1 MiB default.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are and how topics are laid out (``KAFKA_*`` variables)."""

    bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", "Kafka brokers, comma-separated"
    )
    partitions: int = setting(
        "KAFKA_PARTITIONS",
        4,
        "partitions of `recordings.raw` / `recordings.masked` (created by `replaypipe topics`)",
    )
    replication_factor: int = setting(
        "KAFKA_REPLICATION_FACTOR", 1, "replication factor for created topics"
    )
    max_message_bytes: int = setting(
        "KAFKA_MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES, "largest message (full snapshots are big)"
    )

    @classmethod
    def from_env(cls) -> KafkaSettings:
        """The ``KAFKA_*`` variables, defaults for those unset."""
        return from_env(cls)


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
