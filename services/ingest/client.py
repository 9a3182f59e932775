"""Facts about the sending browser: its origin (CORS) and its IP address (pure)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from services.shared.site_settings import IpMode

CORS_ALLOWED_HEADERS = "Content-Type, Content-Encoding, X-Replaypipe-Key"
CORS_ALLOWED_METHODS = "POST, OPTIONS"
MAX_USER_AGENT_CHARS = 512


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether ``origin`` matches one of a site's ``allowed_origins``.

    An entry is an exact origin (``https://shop.example``), ``*`` (any origin),
    or a subdomain wildcard (``https://*.example.com`` matches
    ``https://a.example.com`` but not ``https://example.com``).
    """
    wanted = normalise_origin(origin)
    if not wanted or wanted == "null":
        # Opaque origins (sandboxed iframes, file://) are only let in by "*".
        return any(entry.strip() == "*" for entry in allowed)
    for entry in allowed:
        pattern = normalise_origin(entry)
        if pattern in ("*", wanted):
            return True
        if "://*." in pattern:
            scheme, _, suffix = pattern.partition("://*.")
            prefix = f"{scheme}://"
            if wanted.startswith(prefix) and wanted.endswith(f".{suffix}"):
                return True
    return False


def cors_headers(origin: str, max_age_s: int | None = None) -> dict[str, str]:
    """Response headers that let a browser page at ``origin`` send (and read) a batch."""
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Expose-Headers": "Retry-After",
        "Vary": "Origin",
    }
    if max_age_s is not None:
        headers["Access-Control-Allow-Methods"] = CORS_ALLOWED_METHODS
        headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
        headers["Access-Control-Max-Age"] = str(max_age_s)
    return headers


def user_agent(header: str) -> str:
    """The ``User-Agent`` to publish: its first 512 characters, valid UTF-8.

    aiohttp hands header bytes that are not UTF-8 over as lone surrogates, which
    orjson refuses to serialise (the envelope would fail, a 500): they become "?".
    """
    cut = header[:MAX_USER_AGENT_CHARS]
    if cut.isascii():
        return cut
    return cut.encode("utf-8", "replace").decode("utf-8")


def client_address(peer: str | None, forwarded_for: str, trusted_hops: int) -> str | None:
    """The browser's address: the peer, or the entry ``trusted_hops`` from the right
    of ``X-Forwarded-For`` when that many proxies we run sit in front of us."""
    if trusted_hops <= 0:
        return peer
    hops = [part.strip() for part in forwarded_for.split(",") if part.strip()]
    if len(hops) < trusted_hops:
        return hops[0] if hops else peer
    return hops[-trusted_hops]


@functools.lru_cache(maxsize=8192)
def anonymise_ip(address: str | None, mode: IpMode) -> str | None:
    """The address to publish: IPv4 cut to its /24, IPv6 to its /48, or nothing.

    The raw address never leaves this function; an address that does not parse
    is dropped rather than passed on.
    """
    if mode == "drop" or not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
