"""``replaypipe demo``: send generated sessions to a running stack and list what is stored."""

from __future__ import annotations

import argparse
import json
import random
import ssl
import time
import urllib.error
import urllib.request

import orjson

from services.dev.rrweb_gen import generate_session


def post_json(
    url: str,
    doc: object,
    headers: dict[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """POST a JSON document; returns (status, body) also for error statuses.

    ``context``: how an ``https`` URL's certificate is checked (default: the system store).
    """
    request = urllib.request.Request(
        url,
        data=orjson.dumps(doc),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get(url: str, token: str) -> tuple[int, bytes]:
    """GET with a bearer token; returns (status, body) also for error statuses."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main(argv: list[str]) -> int:
    """Send ``--sessions`` generated sessions, wait for them, print the session list."""
    parser = argparse.ArgumentParser(prog="replaypipe demo")
    parser.add_argument("--ingest", default="http://127.0.0.1:8080")
    parser.add_argument("--read", default="http://127.0.0.1:8082")
    parser.add_argument("--key", default="pk_demo_local")
    parser.add_argument("--token", default="rt_demo_local")
    parser.add_argument("--site", default="demo")
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args(argv)
    rng = random.Random()
    sent = []
    for _ in range(args.sessions):
        session = generate_session(rng, site_id=args.site, start_ms=int(time.time() * 1000))
        for seq, batch in enumerate(session.batches):
            status, body = post_json(
                f"{args.ingest}/v1/recordings?key={args.key}",
                {
                    "session_id": session.session_id,
                    "window_id": session.window_id,
                    "visitor_id": session.visitor_id,
                    "seq": seq,
                    "events": batch,
                },
            )
            print(f"POST session {session.session_id} batch {seq}: {status} {body.decode()}")
        sent.append(session)
    deadline = time.monotonic() + 60
    for session in sent:
        url = f"{args.read}/v1/sites/{args.site}/sessions/{session.session_id}/events"
        while time.monotonic() < deadline:
            status, body = get(url, args.token)
            if status == 200 and body.count(b"\n") >= len(session.events):
                break
            time.sleep(0.5)
    status, body = get(f"{args.read}/v1/sites/{args.site}/sessions", args.token)
    print(json.dumps(json.loads(body), indent=2))
    return 0
