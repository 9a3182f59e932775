"""Ingest serves HTTPS itself, and takes a renewed certificate without a restart.

Certificates are made by the test (``tests/tls_certs.py``); the client trusts only
the test CA and checks the host name, as a browser would. No Kafka is needed to
see which certificate is served: the gateway starts without one (posts get 503).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from services.dev.kafka_broker import free_port
from services.ingest.app import start_gateway
from services.ingest.settings import IngestSettings
from services.ingest.tls import ReloadingCertificate
from services.shared.env import SettingError
from services.shared.kafka import KafkaSettings
from services.shared.site_settings import SiteRegistry
from tests.tls_certs import CertificateAuthority, Identity, new_ca

pytestmark = pytest.mark.integration

RELOAD_S = 0.2


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return new_ca(tmp_path / "ca")


def served_files(tmp_path: Path, identity: Identity) -> tuple[Path, Path]:
    """Copy ``identity`` to the paths ingest is configured with (as a renewal writes them)."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(identity.cert_file.read_bytes())
    key.write_bytes(identity.key_file.read_bytes())
    return cert, key


async def served_serial(port: int, ca: CertificateAuthority) -> int:
    """The serial number of the certificate a new TLS connection to ``port`` is shown."""
    client = ssl.create_default_context(cafile=str(ca.cert_file))  # checks the host name too
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def https_gateway(
    tmp_path: Path, ca: CertificateAuthority
) -> AsyncIterator[tuple[int, Path, Path]]:
    cert, key = served_files(tmp_path, ca.issue("ingest", serial=1001))
    port = free_port()
    settings = IngestSettings(
        host="127.0.0.1",
        port=port,
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        tls_reload_s=RELOAD_S,
        publish_timeout_s=0.5,
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
    )
    runner = await start_gateway(settings, SiteRegistry([]))
    try:
        yield port, cert, key
    finally:
        await runner.cleanup()


async def test_ingest_serves_https_with_the_configured_certificate(
    https_gateway: tuple[int, Path, Path], ca: CertificateAuthority
) -> None:
    port, _, _ = https_gateway
    assert await served_serial(port, ca) == 1001
    client = ssl.create_default_context(cafile=str(ca.cert_file))
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"https://127.0.0.1:{port}/healthz", ssl=client) as response,
    ):
        assert response.status == 200


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    https_gateway: tuple[int, Path, Path], ca: CertificateAuthority, tmp_path: Path
) -> None:
    port, cert, key = https_gateway
    assert await served_serial(port, ca) == 1001
    renewed = ca.issue("ingest-renewed", serial=2002)
    served_files(tmp_path, renewed)
    # mtime granularity: make sure the change is visible even within one tick.
    later = os.stat(cert).st_mtime_ns + 1_000_000_000
    os.utime(cert, ns=(later, later))
    os.utime(key, ns=(later, later))
    for _ in range(50):
        if await served_serial(port, ca) == 2002:
            return
        await asyncio.sleep(RELOAD_S)
    raise AssertionError("the renewed certificate was not served")


async def test_a_broken_renewal_keeps_the_previous_certificate(
    https_gateway: tuple[int, Path, Path], ca: CertificateAuthority
) -> None:
    port, cert, _ = https_gateway
    cert.write_text("-----BEGIN CERTIFICATE-----\nhalf written")
    await asyncio.sleep(RELOAD_S * 3)
    assert await served_serial(port, ca) == 1001


def test_an_unloadable_certificate_stops_ingest_at_startup_naming_the_variables(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    one, other = ca.issue("one"), ca.issue("other")
    with pytest.raises(SettingError, match="INGEST_TLS_CERT_FILE/INGEST_TLS_KEY_FILE"):
        ReloadingCertificate(str(one.cert_file), str(other.key_file))


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(SettingError, match="INGEST_TLS_CERT_FILE and INGEST_TLS_KEY_FILE"):
        IngestSettings(tls_cert_file="/tls.crt")
