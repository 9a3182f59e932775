"""Kafka settings shared by the services, and the topic layout the project creates."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from services.shared import topics
from services.shared.env import SettingError, from_env, setting
from services.shared.kafka_security import (
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    aiokafka_client_kwargs,
)
from services.shared.keyring import KEYS_TOPIC, KEYS_TOPIC_CONFIGS

# rrweb full snapshots are often larger than Kafka's 1 MiB default.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class KafkaSettings:
    """Where the brokers are, how clients authenticate, how topics are laid out (``KAFKA_*``).

    Every Kafka client of the project is built from these settings through
    :mod:`services.shared.kafka_security` (aiokafka, librdkafka and faust alike),
    so TLS and SASL apply to every hop at once.
    """

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
    security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "`PLAINTEXT`, `SSL` (TLS; mTLS with `KAFKA_SSL_CERT_FILE`), `SASL_PLAINTEXT` or"
        " `SASL_SSL` (docs/security.md)",
    )
    sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM",
        "SCRAM-SHA-512",
        "SASL mechanism: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`",
    )
    sasl_username: str = setting(
        "KAFKA_SASL_USERNAME", "", "SASL user (required with `SASL_*`)", shown_default="empty"
    )
    sasl_password_file: str = setting(
        "KAFKA_SASL_PASSWORD_FILE",
        "",
        "file holding the SASL password (required with `SASL_*`; never a variable)",
        shown_default="empty",
    )
    ssl_ca_file: str = setting(
        "KAFKA_SSL_CA_FILE",
        "",
        "PEM CA bundle the brokers' certificates are checked against",
        shown_default="empty (system trust store)",
    )
    ssl_cert_file: str = setting(
        "KAFKA_SSL_CERT_FILE",
        "",
        "PEM client certificate (chain) for mTLS; with `KAFKA_SSL_KEY_FILE`",
        shown_default="empty (no client certificate)",
    )
    ssl_key_file: str = setting(
        "KAFKA_SSL_KEY_FILE",
        "",
        "PEM private key of `KAFKA_SSL_CERT_FILE`",
        shown_default="empty",
    )

    def __post_init__(self) -> None:
        protocol = self.security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise SettingError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)},"
                f" got {protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise SettingError(
                    f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)},"
                    f" got {self.sasl_mechanism!r}"
                )
            if not self.sasl_username or not self.sasl_password_file:
                raise SettingError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and"
                    " KAFKA_SASL_PASSWORD_FILE"
                )
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise SettingError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        tls_files = self.ssl_ca_file or self.ssl_cert_file
        if tls_files and not self.uses_tls:
            # Refuse rather than connect in clear while the operator thinks TLS is on.
            raise SettingError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} does not"
                " use TLS: set it to SSL or SASL_SSL"
            )

    @property
    def uses_tls(self) -> bool:
        """Whether connections to the brokers are TLS (``SSL`` / ``SASL_SSL``)."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL (``SASL_PLAINTEXT`` / ``SASL_SSL``)."""
        return self.security_protocol.startswith("SASL_")

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

    admin = AIOKafkaAdminClient(**aiokafka_client_kwargs(settings))
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
