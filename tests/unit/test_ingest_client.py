"""Allowed origins, the client address behind proxies, and IP anonymisation."""

from __future__ import annotations

import orjson
import pytest

from services.ingest.client import (
    anonymise_ip,
    client_address,
    cors_headers,
    origin_allowed,
    user_agent,
)

ALLOWED = ("https://shop.example", "https://*.cdn.example", "http://localhost:8000/")


@pytest.mark.parametrize(
    "origin",
    [
        "https://shop.example",
        "HTTPS://Shop.Example",
        "https://a.cdn.example",
        "http://localhost:8000",
    ],
)
def test_listed_and_wildcard_origins_are_allowed(origin: str) -> None:
    assert origin_allowed(origin, ALLOWED)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://shop.example",
        "https://shop.example.evil.example",
        "https://cdn.example",
        "https://evilcdn.example",
        "null",
        "",
    ],
)
def test_other_origins_are_refused(origin: str) -> None:
    assert not origin_allowed(origin, ALLOWED)


def test_star_allows_any_origin_and_no_entry_allows_none() -> None:
    assert origin_allowed("https://any.example", ("*",))
    assert not origin_allowed("https://any.example", ())


def test_preflight_headers_allow_the_recorder_headers() -> None:
    headers = cors_headers("https://shop.example", 600)
    assert headers["Access-Control-Allow-Origin"] == "https://shop.example"
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "content-encoding", "x-replaypipe-key"} <= allowed
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Vary"] == "Origin"


def test_client_address_is_the_peer_unless_proxies_are_trusted() -> None:
    assert client_address("10.0.0.5", "1.2.3.4", 0) == "10.0.0.5"
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", 2) == "1.2.3.4"
    assert client_address("10.0.0.5", "", 1) == "10.0.0.5"


def test_ipv4_is_cut_to_its_24_and_ipv6_to_its_48() -> None:
    assert anonymise_ip("203.0.113.77", "anonymize") == "203.0.113.0"
    assert anonymise_ip("2001:db8:abcd:12:3456::1", "anonymize") == "2001:db8:abcd::"
    assert anonymise_ip("::ffff:198.51.100.9", "anonymize") == "198.51.100.0"


def test_drop_mode_and_unparseable_addresses_publish_nothing() -> None:
    assert anonymise_ip("203.0.113.77", "drop") is None
    assert anonymise_ip("not-an-ip", "anonymize") is None
    assert anonymise_ip(None, "anonymize") is None


def test_a_user_agent_is_cut_to_512_characters() -> None:
    assert user_agent("Mozilla/5.0 " + "x" * 1000) == ("Mozilla/5.0 " + "x" * 1000)[:512]
    assert user_agent("Firefox") == "Firefox"


def test_a_user_agent_with_bytes_that_are_not_utf8_can_be_published() -> None:
    # How aiohttp hands over the header bytes b"Moz\xff\xfe ill\xc3\xa9": surrogates.
    header = b"Moz\xff\xfe ill\xc3\xa9".decode("utf-8", "surrogateescape")
    cleaned = user_agent(header)
    assert cleaned == "Moz?? ill\u00e9"
    assert orjson.loads(orjson.dumps({"user_agent": cleaned})) == {"user_agent": cleaned}
