"""The KAFKA_SECURITY_* settings become the same connection for aiokafka, librdkafka and faust."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from services.shared.env import SettingError, from_env
from services.shared.kafka import KafkaSettings
from services.shared.kafka_security import (
    aiokafka_client_kwargs,
    faust_broker_settings,
    librdkafka_config,
)
from tests.tls_certs import CertificateAuthority, new_ca

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return new_ca(tmp_path / "certs")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")  # as `echo` writes it
    return path


def sasl_ssl(ca: CertificateAuthority, password_file: Path) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="kafka-0:9093,kafka-1:9093",
        security_protocol="SASL_SSL",
        sasl_username="replaypipe-sink",
        sasl_password_file=str(password_file),
        ssl_ca_file=str(ca.cert_file),
    )


def test_plaintext_is_the_default_and_adds_no_tls_or_sasl() -> None:
    kwargs = aiokafka_client_kwargs(KafkaSettings(bootstrap_servers="127.0.0.1:9092"))
    assert kwargs == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_aiokafka_scram_credentials_and_a_verifying_context(
    ca: CertificateAuthority, password_file: Path
) -> None:
    kwargs = aiokafka_client_kwargs(sasl_ssl(ca, password_file))
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "replaypipe-sink"
    assert kwargs["sasl_plain_password"] == PASSWORD  # the trailing line break dropped
    context = kwargs["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_mtls_loads_the_client_certificate(ca: CertificateAuthority) -> None:
    client = ca.issue("replaypipe-ingest", client=True)
    kafka = KafkaSettings(
        security_protocol="SSL",
        ssl_ca_file=str(ca.cert_file),
        ssl_cert_file=str(client.cert_file),
        ssl_key_file=str(client.key_file),
    )
    kwargs = aiokafka_client_kwargs(kafka)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_librdkafka_gets_the_same_connection_as_file_locations(
    ca: CertificateAuthority, password_file: Path
) -> None:
    config = librdkafka_config(sasl_ssl(ca, password_file))
    assert config == {
        "bootstrap.servers": "kafka-0:9093,kafka-1:9093",
        "security.protocol": "sasl_ssl",
        "ssl.ca.location": str(ca.cert_file),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "replaypipe-sink",
        "sasl.password": PASSWORD,
    }


def test_librdkafka_without_a_ca_file_probes_the_system_trust_store() -> None:
    config = librdkafka_config(KafkaSettings(security_protocol="SSL"))
    assert config["ssl.ca.location"] == "probe"


def test_faust_gets_sasl_ssl_credentials_and_one_url_per_broker(
    ca: CertificateAuthority, password_file: Path
) -> None:
    settings = faust_broker_settings(sasl_ssl(ca, password_file))
    assert settings["broker"] == "kafka://kafka-0:9093;kafka://kafka-1:9093"
    credentials = settings["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert PASSWORD not in repr(credentials)


def test_faust_gets_ssl_credentials_for_tls_without_sasl(ca: CertificateAuthority) -> None:
    settings = faust_broker_settings(
        KafkaSettings(security_protocol="SSL", ssl_ca_file=str(ca.cert_file))
    )
    assert isinstance(settings["broker_credentials"], faust.SSLCredentials)


def test_faust_gets_no_credentials_in_plaintext() -> None:
    assert faust_broker_settings(KafkaSettings())["broker_credentials"] is None


def test_a_missing_password_file_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="u",
        sasl_password_file=str(tmp_path / "nope"),
    )
    with pytest.raises(SettingError, match=r"KAFKA_SASL_PASSWORD_FILE: cannot read .*nope"):
        aiokafka_client_kwargs(kafka)


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "password"
    empty.write_text("\n")
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password_file=str(empty)
    )
    with pytest.raises(SettingError, match=r"KAFKA_SASL_PASSWORD_FILE: .* is empty"):
        librdkafka_config(kafka)


def test_an_unreadable_ca_file_is_an_error_naming_the_variable_not_the_content(
    tmp_path: Path,
) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate: hunter2")
    with pytest.raises(SettingError, match="KAFKA_SSL_CA_FILE") as refused:
        aiokafka_client_kwargs(KafkaSettings(security_protocol="SSL", ssl_ca_file=str(bogus)))
    assert "hunter2" not in str(refused.value)


def test_a_client_key_that_does_not_match_its_certificate_is_refused(
    ca: CertificateAuthority,
) -> None:
    one, other = ca.issue("one", client=True), ca.issue("other", client=True)
    kafka = KafkaSettings(
        security_protocol="SSL", ssl_cert_file=str(one.cert_file), ssl_key_file=str(other.key_file)
    )
    with pytest.raises(SettingError, match="KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE"):
        aiokafka_client_kwargs(kafka)


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME and"),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_PASSWORD_FILE": "/p",
                "KAFKA_SASL_MECHANISM": "GSSAPI",
            },
            "KAFKA_SASL_MECHANISM must be one of",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/c"},
            "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together",
        ),
        ({"KAFKA_SSL_CA_FILE": "/ca.crt"}, "does not use TLS"),
    ],
)
def test_inconsistent_security_settings_are_refused_at_startup(
    environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SettingError, match=complaint):
        from_env(KafkaSettings, environ)


def test_the_password_is_never_part_of_the_settings(
    ca: CertificateAuthority, password_file: Path
) -> None:
    kafka = sasl_ssl(ca, password_file)
    assert PASSWORD not in repr(kafka)


def test_the_masker_faust_app_connects_with_the_kafka_settings(
    ca: CertificateAuthority, password_file: Path
) -> None:
    from services.masker.app import faust_app
    from services.masker.settings import MaskerSettings

    app = faust_app(MaskerSettings(kafka=sasl_ssl(ca, password_file)))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "replaypipe-sink"
    assert [str(url) for url in app.conf.broker] == ["kafka://kafka-0:9093", "kafka://kafka-1:9093"]
