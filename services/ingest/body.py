"""Decoding a request body: content type, content encoding, bounded decompression.

Pure functions of the request facts (headers, query, raw bytes); no aiohttp here.

Browsers reach us in three ways, all accepted:

- ``fetch`` with ``Content-Type: application/json`` (plain or with
  ``Content-Encoding: gzip|deflate``);
- ``fetch`` with a gzip body from ``CompressionStream`` sent as
  ``application/octet-stream`` or ``text/plain`` (browsers do not reliably let
  a page set ``Content-Encoding``): recognised by ``?enc=gzip|deflate`` or by
  the gzip magic bytes ``1f 8b``, which no JSON text can start with;
- ``navigator.sendBeacon`` on page unload with a ``text/plain`` string (the only
  type a beacon may send cross-origin without a preflight).
"""

from __future__ import annotations

import zlib
from typing import cast

from isal import isal_zlib

from services.ingest.batch import Rejection

ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain", "application/octet-stream")
ENCODINGS = ("identity", "gzip", "deflate")
GZIP_MAGIC = b"\x1f\x8b"
# Inflate in slices of this many output bytes, so a bomb is noticed after at
# most one slice past the limit instead of after allocating all of it.
_INFLATE_SLICE = 256 * 1024
# isal's stub types its error class as an instance.
_INFLATE_ERRORS = (zlib.error, cast(type[Exception], isal_zlib.error))


def check_content_type(content_type: str) -> None:
    """Refuse media types other than JSON, beacon text and octet-stream (415)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_CONTENT_TYPES:
        # The header's value is not repeated back: the client knows what it sent.
        raise Rejection(
            415,
            "unsupported_media_type",
            "The Content-Type is missing or not accepted; send application/json, text/plain "
            "(sendBeacon) or application/octet-stream (compressed).",
        )


def body_encoding(content_encoding: str, enc_param: str, body: bytes) -> str:
    """Which encoding the body is in: the header, else ``?enc=``, else sniffed gzip."""
    declared = (content_encoding or enc_param).strip().lower()
    if declared in ("", "identity"):
        return "gzip" if body.startswith(GZIP_MAGIC) else "identity"
    if declared not in ENCODINGS:
        raise Rejection(
            415,
            "unsupported_encoding",
            "The Content-Encoding (or ?enc=) is not accepted; use gzip, deflate or none.",
        )
    return declared


def decode_body(body: bytes, encoding: str, max_decoded_bytes: int) -> bytes:
    """The body after decompression, or a 400/413 :class:`Rejection`.

    Decompression is incremental and stops as soon as the output passes
    ``max_decoded_bytes``, so a small body that inflates to gigabytes costs at
    most one slice of memory beyond the limit.
    """
    if encoding == "identity":
        if len(body) > max_decoded_bytes:
            raise _too_large(max_decoded_bytes)
        return body
    # ISA-L's inflate (zlib's API and formats) takes ~10 µs where zlib takes ~25 µs
    # for a typical 2.5 KiB gzip batch: most batches from the recorder are gzip.
    if encoding == "gzip":
        inflater = isal_zlib.decompressobj(16 + zlib.MAX_WBITS)
    else:
        # HTTP "deflate" is the zlib format; some clients send raw deflate.
        wbits = zlib.MAX_WBITS if _has_zlib_header(body) else -zlib.MAX_WBITS
        inflater = isal_zlib.decompressobj(wbits)
    parts: list[bytes] = []
    size = 0
    pending = body
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_SLICE)
            size += len(chunk)
            if size > max_decoded_bytes:
                raise _too_large(max_decoded_bytes)
            parts.append(chunk)
            pending = inflater.unconsumed_tail
            # A full slice with no input left may still have output buffered in zlib.
            if inflater.eof or (not pending and len(chunk) < _INFLATE_SLICE):
                break
    except _INFLATE_ERRORS:
        raise Rejection(
            400, f"invalid_{encoding}", f"The body is not valid {encoding} data."
        ) from None
    if not inflater.eof:
        raise Rejection(400, f"invalid_{encoding}", f"The {encoding} body is truncated.")
    if inflater.unused_data:
        # A second gzip member (or anything) after the end: refused rather than
        # dropped, and rather than read on, so no decoder in front of us (a proxy,
        # a WAF) can see a different batch than we do.
        raise Rejection(
            400,
            f"invalid_{encoding}",
            f"The body goes on after the end of its {encoding} data (a second gzip "
            f"member?); send the batch as one {encoding} stream.",
        )
    return b"".join(parts)


def _too_large(limit: int) -> Rejection:
    return Rejection(
        413,
        "decoded_body_too_large",
        f"The body is over {limit} bytes once decompressed; send smaller batches.",
    )


def _has_zlib_header(body: bytes) -> bool:
    return len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0
