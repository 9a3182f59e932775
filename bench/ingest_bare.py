"""The benchmark's baseline: a bare aiohttp handler that reads the body, parses it
with orjson and answers 202 — the floor any real gateway is compared against.
A body sent with ``?enc=gzip`` (as the browser recorder sends every batch) is
decompressed first with one ``decompress`` call, as any handler must to parse
it (no size limit: the floor, not a safe server). ``BARE_INFLATE=isal`` (the
default) uses the same ISA-L inflater as the gateway, for a like-for-like
comparison; ``BARE_INFLATE=zlib`` uses the standard library.

Run: ``python -m bench.ingest_bare PORT [uvloop|asyncio]`` (the gateway's event loop
choice, ``INGEST_EVENT_LOOP``, for a like-for-like comparison).
"""

from __future__ import annotations

import asyncio
import os
import sys
import zlib

import orjson
import uvloop
from aiohttp import web
from isal import isal_zlib

INFLATE = (
    isal_zlib.decompress if os.environ.get("BARE_INFLATE", "isal") == "isal" else zlib.decompress
)

ACCEPTED = b'{"status":"accepted"}'


async def handle(request: web.Request) -> web.Response:
    """Read (and inflate) and parse the batch, answer 202; no checks, no Kafka."""
    body = await request.read()
    if request.query.get("enc") == "gzip":
        body = INFLATE(body, 16 + zlib.MAX_WBITS)
    orjson.loads(body)
    return web.Response(status=202, body=ACCEPTED, content_type="application/json")


async def serve(port: int) -> None:
    """Serve until killed, on the same kind of socket as the gateway."""
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/v1/recordings", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    loop_name = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    if loop_name == "uvloop":
        uvloop.run(serve(int(sys.argv[1])))
    else:
        asyncio.run(serve(int(sys.argv[1])))
