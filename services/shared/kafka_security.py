"""How every Kafka client of the project connects: TLS and SASL from ``KafkaSettings``.

The project has three kinds of Kafka client — aiokafka (the sink, the console,
the key and settings feeds, the CLI), librdkafka (ingest's producer) and faust
(the masker) — and each spells the same connection differently. The settings
(``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``) are turned into
each spelling here and nowhere else, so a hop cannot be left in clear by a
client that was forgotten.

Passwords are read from their file each time a client is built (a rotated
Secret is picked up by the next client) and never logged; a missing or
unreadable file is a :class:`~services.shared.env.SettingError` naming the
variable, not the content.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final

from services.shared.env import SettingError, read_secret_file

if TYPE_CHECKING:
    from services.shared.kafka import KafkaSettings

SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def sasl_password(kafka: KafkaSettings) -> str:
    """The SASL password, read from ``KAFKA_SASL_PASSWORD_FILE``."""
    return read_secret_file("KAFKA_SASL_PASSWORD_FILE", kafka.sasl_password_file)


def client_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of a client (None without TLS): broker certificates checked
    against ``KAFKA_SSL_CA_FILE`` (or the system store), host names checked, and the
    client certificate of ``KAFKA_SSL_CERT_FILE``/``KAFKA_SSL_KEY_FILE`` for mTLS."""
    if not kafka.uses_tls:
        return None
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=kafka.ssl_ca_file or None
        )
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(
            f"KAFKA_SSL_CA_FILE: cannot load {kafka.ssl_ca_file} ({_reason(exc)})"
        ) from None
    if kafka.ssl_cert_file:
        try:
            context.load_cert_chain(kafka.ssl_cert_file, kafka.ssl_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(
                "KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE: cannot load"
                f" {kafka.ssl_cert_file} with {kafka.ssl_key_file} ({_reason(exc)})"
            ) from None
    return context


def aiokafka_client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin):
    ``bootstrap_servers`` and the connection's security."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    context = client_ssl_context(kafka)
    if context is not None:
        kwargs["ssl_context"] = context
    if kafka.uses_sasl:
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = sasl_password(kafka)
    return kwargs


def librdkafka_config(kafka: KafkaSettings) -> dict[str, object]:
    """librdkafka (confluent-kafka) settings: ``bootstrap.servers`` and the security."""
    config: dict[str, object] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol.lower(),
    }
    if kafka.uses_tls:
        # librdkafka reads the files itself; loading them here first turns a bad
        # path into the same startup error the other clients give.
        client_ssl_context(kafka)
        # "probe": the wheel's bundled OpenSSL does not know this system's CA paths.
        config["ssl.ca.location"] = kafka.ssl_ca_file or "probe"
        config["ssl.endpoint.identification.algorithm"] = "https"
        if kafka.ssl_cert_file:
            config["ssl.certificate.location"] = kafka.ssl_cert_file
            config["ssl.key.location"] = kafka.ssl_key_file
    if kafka.uses_sasl:
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = sasl_password(kafka)
    return config


def faust_broker_settings(kafka: KafkaSettings) -> dict[str, Any]:
    """``broker`` (the URL list) and ``broker_credentials`` for ``faust.App``."""
    import faust

    urls = ";".join(f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(","))
    context = client_ssl_context(kafka)
    credentials: Any = None
    if kafka.uses_sasl:
        # With an ssl_context faust speaks SASL_SSL, without one SASL_PLAINTEXT.
        credentials = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=sasl_password(kafka),
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    elif context is not None:
        credentials = faust.SSLCredentials(context)
    return {"broker": urls, "broker_credentials": credentials}


def _reason(exc: OSError | ssl.SSLError) -> str:
    # The library's reason (e.g. "No such file or directory", "PEM lib"), not a path's content.
    return exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
