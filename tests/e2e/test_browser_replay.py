"""A real browser end to end: the rrweb recorder in Chromium → ingest → masker → sink
→ ClickHouse, then the stored session replayed in the viewer page.

Chromium is Debian's (``/usr/bin/chromium``), driven by npm ``playwright-core``
through ``drive_browser.mjs``; both, and the recorder/viewer bundles, come from
``scripts/setup_browser.sh``. The recorder runs with its client-side masking off,
so what is proven is that the server alone keeps every secret out of storage.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from services.dev.demo import get, post_json
from services.dev.stack import LocalStack
from services.shared import topics
from services.shared.kafka import KafkaSettings
from services.shared.keyring import read_raw_in_clear
from services.sink.viewer import BUNDLE_DIR, bundles_built
from tests.conftest import PROJECT_ROOT, _dump_logs, make_stack, start_broker

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
WEB_DIR = PROJECT_ROOT / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUTPUT_DIR = PROJECT_ROOT / "test-output" / "e2e"

SITE_ID = "e2e-shop"
SITE_KEY = "pk_e2e_shop"
READ_TOKEN = "rt_e2e_shop_viewer"
ADMIN_TOKEN = "admin-test-token"  # what make_stack gives the sink
VISIBLE_EMAIL = "help.desk.private@example.org"
BLOCKED_TEXT = "Members code BLOCKED-7731-ZETA for you"
SECRETS = {
    "email": "jane.roe.e2e@example.org",
    "password": "Hunter2-Sup3rSecret!",
    "security_word": "FlipSecret-8842-Quokka",
    "card_name": "Janet Quill Roe",
    "card_number": "4111 1111 1111 1111",
    "card_expiry": "12/29",
    "card_csc": "737",
    "gift_note": "Happy birthday Marisol Xander",
}
# Values as they could appear in stored JSON: every secret, the card digits without
# spaces, text visible on the page that the PII detectors must catch, and the text
# inside the blocked element. Short ones (csc, expiry) are looked for as whole JSON
# strings, since three digits occur in any timestamp.
LONG_SECRETS = [
    SECRETS["email"],
    SECRETS["password"],
    SECRETS["security_word"],
    SECRETS["card_name"],
    SECRETS["card_number"],
    SECRETS["card_number"].replace(" ", ""),
    SECRETS["gift_note"],
    VISIBLE_EMAIL,
    "BLOCKED-7731-ZETA",
]
SHORT_SECRETS = [f'"{SECRETS["card_csc"]}"', f'"{SECRETS["card_expiry"]}"']


def leaked(blob: str) -> list[str]:
    """The secret values found in ``blob`` (compared without JSON escapes of '/')."""
    text = blob.replace("\\/", "/")
    return [s for s in LONG_SECRETS + SHORT_SECRETS if s in text]


@dataclass
class E2EEnv:
    """The running stack and the test page server of this module."""

    stack: LocalStack
    pages_url: str


class _PageHandler(SimpleHTTPRequestHandler):
    """Serves tests/e2e/pages with the ingest address filled in, and the recorder bundle."""

    substitutions: ClassVar[dict[str, str]]  # set on the subclass each fixture makes

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/replaypipe-recorder.min.js":
            self._send(BUNDLE_DIR.joinpath(path[1:]).read_bytes(), "text/javascript")
            return
        page = HERE / "pages" / path.lstrip("/")
        if path.endswith(".html") and page.is_file():
            text = page.read_text()
            for name, value in self.substitutions.items():
                text = text.replace("{{" + name + "}}", value)
            self._send(text.encode(), "text/html; charset=utf-8")
            return
        self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet


def _write_sites_file(path: Path, page_origin: str) -> None:
    site = {
        "site_id": SITE_ID,
        "public_keys": [SITE_KEY],
        "allowed_origins": [page_origin],
        # Typed values are kept unless a rule masks them, so the rules are what is tested.
        "record_inputs": True,
        # Nothing is kept before the visitor clicks "Accept" on the login page.
        "consent_mode": "required",
        "read_token_sha256": [hashlib.sha256(READ_TOKEN.encode()).hexdigest()],
    }
    path.write_bytes(orjson.dumps({"sites": [site]}))


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EEnv]:
    """Own broker + stack with a site for the test pages, and the page server."""
    setup = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "setup_browser.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, f"scripts/setup_browser.sh failed:\n{setup.stderr[-3000:]}"
    assert bundles_built(), "setup_browser.sh ran but the bundles are missing"
    assert Path(CHROMIUM).exists(), "chromium is missing: run ./scripts/setup_browser.sh"

    class Handler(_PageHandler):
        substitutions: ClassVar[dict[str, str]] = {}

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pages_url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()

    root = tmp_path_factory.mktemp("e2e")
    broker = start_broker(root / "kafka", partitions=2)
    stack = make_stack(broker, root / "stack", "e2e")
    stack.sites_file = root / "sites.json"
    _write_sites_file(stack.sites_file, pages_url)
    Handler.substitutions.update(
        {
            "SITE_KEY": SITE_KEY,
            "INGEST": f"http://127.0.0.1:{stack.ingest_port}",
            "VISIBLE_EMAIL": VISIBLE_EMAIL,
            "BLOCKED_TEXT": BLOCKED_TEXT,
        }
    )
    try:
        stack.start_services()
        yield E2EEnv(stack=stack, pages_url=pages_url)
    except Exception:
        _dump_logs(root / "stack")
        raise
    finally:
        stack.stop()
        broker.stop()
        server.shutdown()


def drive(command: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run drive_browser.mjs and return its JSON result."""
    config = {"web_dir": str(WEB_DIR), "chromium": CHROMIUM, **config}
    proc = subprocess.run(
        ["node", str(HERE / "drive_browser.mjs"), command, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"browser step {command!r} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def stored_events(stack: LocalStack, session_id: str) -> str:
    """The session's stored events as NDJSON text ('' while none are stored)."""
    url = f"http://127.0.0.1:{stack.sink_port}/v1/sites/{SITE_ID}/sessions/{session_id}/events"
    status, body = get(url, READ_TOKEN)
    return body.decode() if status == 200 else ""


def wait_for_session(stack: LocalStack, session_id: str, timeout: float = 90) -> str:
    """Poll until both pages' final texts (set after all typing) are stored."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = stored_events(stack, session_id)
        if "Signing in, please wait" in body and "Order placed, thank you" in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"session not fully stored after {timeout:.0f}s ({len(body)} bytes)")


def analyst_sql(stack: LocalStack, sql: str) -> list[list[Any]]:
    """Rows of one read-only query through the sink's admin SQL endpoint."""
    status, body = post_json(
        f"http://127.0.0.1:{stack.sink_port}/v1/sql",
        {"sql": sql},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert status == 200, body
    doc = orjson.loads(body)
    assert not doc["truncated"], f"more rows than the SQL endpoint returns: {sql}"
    rows: list[list[Any]] = doc["rows"]
    return rows


def topic_values(stack: LocalStack, topic: str) -> list[bytes]:
    """Every value on ``topic`` from the beginning (a fresh consumer, no group)."""

    async def read_all() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=f"127.0.0.1:{stack.kafka_port}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            values: list[bytes] = []
            while True:
                batch = await consumer.getmany(timeout_ms=2000)
                if not batch:
                    return values
                values += [m.value for records in batch.values() for m in records if m.value]
        finally:
            await consumer.stop()

    return asyncio.run(read_all())


@pytest.fixture(scope="module")
def recorded(e2e: E2EEnv) -> dict[str, Any]:
    """Type the secrets into the test pages in Chromium and wait until they are stored."""
    result = drive("record", {"pages": e2e.pages_url, "secrets": SECRETS})
    session_id = result["session_ids"][0]
    result["stored"] = wait_for_session(e2e.stack, session_id)
    return result


def test_recorder_keeps_one_session_across_page_loads_and_ingest_accepts_it(
    recorded: dict[str, Any],
) -> None:
    first, second = recorded["session_ids"]
    assert first == second
    assert recorded["ingest"], "the recorder sent nothing"
    refused = [r for r in recorded["ingest"] if r["status"] >= 400]
    assert not refused, f"ingest refused batches: {refused}; console: {recorded['console']}"
    assert recorded["answer_type"] == "password"


def test_no_secret_reaches_clickhouse(e2e: E2EEnv, recorded: dict[str, Any]) -> None:
    stack = e2e.stack
    status, body = get(
        f"http://127.0.0.1:{stack.sink_port}/v1/sites/{SITE_ID}/sessions?limit=1000", READ_TOKEN
    )
    assert status == 200, body
    sessions = orjson.loads(body)["sessions"]
    assert recorded["session_ids"][0] in {s["session_id"] for s in sessions}
    everything = body.decode() + "".join(stored_events(stack, s["session_id"]) for s in sessions)
    assert leaked(everything) == []
    # Every row of every table that stores rows (summaries and states included): the
    # other tables are Null (incoming_batches, parsed_batches, session_batches) or
    # schema_migrations, and analyst SQL reads only these two (and the view).
    stored_rows: list[str] = []
    for table in ("events", "sessions"):
        # Whole rows as JSON text, hex-encoded: aggregate states are binary and the
        # client cannot decode them as columns, but their bytes hold the strings.
        rows = analyst_sql(stack, f"SELECT hex(formatRowNoNewline('JSONEachRow', *)) FROM {table}")
        text = "\n".join(bytes.fromhex(row).decode("utf-8", "replace") for (row,) in rows)
        assert leaked(text) == [], f"a secret is stored in table {table}"
        stored_rows.append(text)
    assert "Order placed, thank you" in "".join(stored_rows)  # the scan saw the session
    # The typing did happen: masked values of the same length are stored.
    assert "*" * len(SECRETS["password"]) in everything
    assert "**** **** **** ****" in everything


def test_secrets_were_recorded_raw_and_removed_by_the_masker(
    e2e: E2EEnv, recorded: dict[str, Any]
) -> None:
    # Sealed at rest (docs/security.md): only the KEK and keys.raw open recordings.raw.
    sealed = b"".join(topic_values(e2e.stack, topics.RAW))
    assert SECRETS["password"].encode() not in sealed
    bootstrap = f"127.0.0.1:{e2e.stack.kafka_port}"
    raw = b"".join(read_raw_in_clear(KafkaSettings(bootstrap), e2e.stack.var_dir / "keys")).decode()
    # The browser really sent them (client masking is off): the masker is what removed them.
    assert SECRETS["password"] in raw
    assert SECRETS["card_number"] in raw
    values = topic_values(e2e.stack, topics.MASKED)
    masked = b"".join(values).decode()
    assert masked, "nothing on recordings.masked"
    assert leaked(masked) == []
    # Kept for bench/bench_storage.py: a real browser's recording, as the sink gets it.
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUTPUT_DIR / "recordings.masked.ndjson").write_bytes(b"\n".join(values) + b"\n")


def test_replay_page_plays_the_masked_session(e2e: E2EEnv, recorded: dict[str, Any]) -> None:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT_DIR / "replay.png"
    session_id = recorded["session_ids"][0]
    viewer_url = f"http://127.0.0.1:{e2e.stack.sink_port}/viewer/{quote(SITE_ID)}/sessions/{quote(session_id)}"
    list_url = f"http://127.0.0.1:{e2e.stack.sink_port}/viewer/{quote(SITE_ID)}"
    result = drive(
        "replay",
        {
            "list_url": list_url,
            "viewer_url": viewer_url,
            "session_id": session_id,
            "token": READ_TOKEN,
            "screenshot": str(screenshot),
        },
    )

    assert "token" not in result["location"], "the read token stayed in the address bar"
    assert session_id in result["listed"]
    replayed = result["replayed"]
    assert replayed is not None, f"the player rendered no page; console: {result['console']}"
    assert replayed["title"] == "Shop · Checkout"
    assert "Order placed, thank you" in replayed["body_text"]
    inputs = replayed["inputs"]
    assert inputs["cc-number"] == "**** **** **** ****"
    assert inputs["cc-csc"] == "***"
    assert set(inputs["gift-note"].replace(" ", "")) == {"*"}
    blocked = replayed["blocked"]
    assert blocked is not None and blocked["text"] == "" and blocked["children"] == 0
    assert blocked["width"] > 100 and blocked["height"] > 50  # an empty box of the right size
    assert leaked(replayed["body_text"]) == []
    pixels = result["pixels"]
    assert screenshot.stat().st_size > 0
    assert pixels["colors"] >= 16 and pixels["dominant_fraction"] < 0.95, pixels


class _StubIngestHandler(_PageHandler):
    """The test pages plus a stand-in ingest that refuses the first batch with 503."""

    substitutions: ClassVar[dict[str, str]]
    received: ClassVar[list[dict[str, Any]]]

    def do_GET(self) -> None:
        if self.path == "/stub-state":
            accepted = sum(1 for r in self.received if r["status"] == 202)
            self._send(orjson.dumps({"accepted": accepted}), "application/json")
            return
        super().do_GET()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = parse_qs(url.query).get("enc", [""])[0]
        body = gzip.decompress(raw) if encoding == "gzip" else raw
        status = 503 if not self.received else 202
        self.received.append({"status": status, "encoding": encoding, "body": body})
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        payload = orjson.dumps({"status": "accepted" if status == 202 else "kafka_unavailable"})
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_recorder_retries_a_refused_batch_and_sends_nothing_once_disabled() -> None:
    class Handler(_StubIngestHandler):
        substitutions: ClassVar[dict[str, str]] = {}
        received: ClassVar[list[dict[str, Any]]] = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    Handler.substitutions.update({"SITE_KEY": SITE_KEY, "INGEST": origin})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = drive("retry", {"pages": origin})
    finally:
        server.shutdown()

    refused, retried = Handler.received[:2]
    assert refused["status"] == 503 and retried["status"] == 202
    assert refused["encoding"] == "gzip"
    assert retried["body"] == refused["body"]  # the same batch (same seq) again
    batches = [orjson.loads(r["body"]) for r in Handler.received]
    assert {b["session_id"] for b in batches} == set(result["session_ids"])
    sent = b"".join(r["body"] for r in Handler.received)
    assert b"before disable" in sent
    assert b"AFTER-DISABLE" not in sent
