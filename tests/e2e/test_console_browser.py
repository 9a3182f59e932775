"""The site owners' console in a real Chromium, on the whole stack.

A first login with the one-time password, choosing a password; form-input
recording switched on in the settings page, a visit typed into the test page
and stored as typed; switched off, the next visit stored masked (the masker
followed the page); the first session opened from the session list and found
in the audit log; after logout the console refuses the session list; a token
made in the console opens the read API; an erasure leaves its audit trail.
Screenshots of the settings page and the audit log go to test-output/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from services.console.cli_commands import create_user
from services.console.dev_stack import console_env, start_console
from services.dev.demo import get
from services.dev.kafka_broker import free_port
from services.dev.stack import LocalStack
from services.shared.kafka import KafkaSettings
from services.sink.viewer import bundles_built
from tests.conftest import PROJECT_ROOT, _dump_logs, make_stack, start_broker
from tests.e2e.test_browser_replay import _PageHandler

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
WEB_DIR = PROJECT_ROOT / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# docs/console-*.png are copies of these (refresh by hand after a UI change).
OUTPUT_DIR = PROJECT_ROOT / "test-output" / "e2e"
SITE_ID = "console-shop"
SITE_KEY = "pk_console_shop"
ADMIN_TOKEN = "admin-test-token"  # what make_stack gives the sink
OWNER = "owner@console-shop.test"
PASSWORD = "quokka lantern marmalade 2026"
TYPED_ON = "typed-while-recording-on-4417"
TYPED_OFF = "typed-while-recording-off-9023"


@dataclass
class ConsoleEnv:
    """The running stack with its console, the page server, and the owner's one-time password."""

    stack: LocalStack
    console_url: str
    pages_url: str
    one_time_password: str

    def masker_updates(self) -> int:
        log = (self.stack.var_dir / "logs" / "masker.log").read_text()
        return sum(
            1
            for line in log.splitlines()
            if '"site settings updated"' in line and f'"site":"{SITE_ID}"' in line
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEnv]:
    setup = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "setup_browser.sh")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, f"scripts/setup_browser.sh failed:\n{setup.stderr[-3000:]}"
    assert bundles_built() and Path(CHROMIUM).exists()

    class Handler(_PageHandler):
        substitutions: ClassVar[dict[str, str]] = {}

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    pages_url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path_factory.mktemp("console-e2e")
    broker = start_broker(root / "kafka", partitions=2)
    stack = make_stack(broker, root / "stack", "console-e2e")
    stack.sites_file = root / "sites.json"
    site = {
        "site_id": SITE_ID,
        "public_keys": [SITE_KEY],
        "allowed_origins": [pages_url],
        "record_inputs": False,
    }
    stack.sites_file.write_bytes(orjson.dumps({"sites": [site]}))
    console_port = free_port()
    extra = console_env(root / "stack", stack.sink_port, stack.ingest_port, console_port)
    extra.pop("SINK_ADMIN_TOKEN", None)  # make_stack's token is the service credential here
    stack.extra_env.update(extra)
    Handler.substitutions.update(
        {"SITE_KEY": SITE_KEY, "INGEST": f"http://127.0.0.1:{stack.ingest_port}"}
    )
    try:
        stack.start_services()
        start_console(stack)
        one_time = asyncio.run(
            create_user(
                KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
                OWNER,
                False,
                SITE_ID,
                "owner",
            )
        )
        assert one_time is not None
        yield ConsoleEnv(stack, f"http://127.0.0.1:{console_port}", pages_url, one_time)
    except Exception:
        _dump_logs(root / "stack")
        raise
    finally:
        stack.stop()
        broker.stop()
        server.shutdown()


def drive(step: str, env: ConsoleEnv, **config: Any) -> dict[str, Any]:
    """Run one step of drive_console.mjs and return its JSON result."""
    full = {
        "web_dir": str(WEB_DIR),
        "chromium": CHROMIUM,
        "console": env.console_url,
        "pages": env.pages_url,
        "site": SITE_ID,
        "email": OWNER,
        "password": PASSWORD,
        **config,
    }
    proc = subprocess.run(
        ["node", str(HERE / "drive_console.mjs"), step, json.dumps(full)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"browser step {step!r} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def stored_events(env: ConsoleEnv, session_id: str, needle: str, timeout: float = 60) -> str:
    """The session's stored events once they contain ``needle`` (or what is there at timeout)."""
    url = f"http://127.0.0.1:{env.stack.sink_port}/v1/sites/{SITE_ID}/sessions/{session_id}/events"
    deadline = time.monotonic() + timeout
    body = b""
    while time.monotonic() < deadline:
        status, body = get(url, ADMIN_TOKEN)
        if status == 200 and needle.encode() in body:
            break
        time.sleep(0.5)
    return body.decode()


def wait_for_masker_update(env: ConsoleEnv, seen: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while env.masker_updates() <= seen:
        assert time.monotonic() < deadline, "the masker did not apply the saved settings"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sessions(env: ConsoleEnv) -> dict[str, str]:
    """Log in for the first time, then record one visit with inputs on and one with them off."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    first = drive("first-login", env, one_time_password=env.one_time_password)
    assert first["after_login"] == "/account/password" and first["after_change"] == "/"

    seen = env.masker_updates()
    drive(
        "set-inputs", env, record_inputs=True, screenshot=str(OUTPUT_DIR / "console-settings.png")
    )
    wait_for_masker_update(env, seen)
    on = drive("record", env, typed=TYPED_ON)["session_id"]

    seen = env.masker_updates()
    drive("set-inputs", env, record_inputs=False)
    wait_for_masker_update(env, seen)
    off = drive("record", env, typed=TYPED_OFF)["session_id"]
    return {"on": on, "off": off}


def test_with_form_inputs_on_the_typed_text_is_stored(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    assert TYPED_ON in stored_events(env, sessions["on"], TYPED_ON)


def test_with_form_inputs_off_the_masker_follows_and_masks_the_typing(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    # The last keystroke's value, masked, is as long as the typed text.
    masked = "*" * len(TYPED_OFF)
    events = stored_events(env, sessions["off"], masked)
    assert masked in events
    assert TYPED_OFF not in events


def test_replay_opened_from_the_console_is_in_the_audit_log_and_logout_refuses(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    result = drive(
        "replay-and-audit",
        env,
        session=sessions["on"],
        screenshot=str(OUTPUT_DIR / "console-audit.png"),
    )
    assert result["replayed_events"] > 0
    opened = [r for r in result["audit_rows"] if "replay_opened" in r and sessions["on"] in r]
    assert opened and OWNER in opened[0]
    assert result["after_logout"] == "/login"


def test_logins_are_in_the_instance_audit_log(env: ConsoleEnv, sessions: dict[str, str]) -> None:
    status, body = get(f"http://127.0.0.1:{env.stack.sink_port}/v1/audit", ADMIN_TOKEN)
    assert status == 200
    logins = [e for e in orjson.loads(body)["events"] if e["action"] == "login_succeeded"]
    assert logins and all(e["actor"] == OWNER for e in logins)


def test_a_token_created_in_the_console_opens_the_read_api(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    token = drive("create-token", env, token_name="dashboards")["token"]
    url = f"http://127.0.0.1:{env.stack.sink_port}/v1/sites/{SITE_ID}/sessions"
    deadline = time.monotonic() + 15
    status = 0
    while time.monotonic() < deadline:  # the sink follows sites.config
        status, _ = get(url, token)
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200


def test_erasure_from_the_console_removes_the_session_but_not_its_audit_trail(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    result = drive("erase", env, session=sessions["off"])
    assert "1 session(s)" in result["message"]
    events_url = f"http://127.0.0.1:{env.stack.sink_port}/v1/sites/{SITE_ID}/sessions/{sessions['off']}/events"
    assert get(events_url, ADMIN_TOKEN)[0] == 404
    audit_url = f"http://127.0.0.1:{env.stack.sink_port}/v1/sites/{SITE_ID}/audit"
    deadline = time.monotonic() + 15
    actions: set[str] = set()
    while "session_erased" not in actions and time.monotonic() < deadline:
        time.sleep(0.3)
        actions = {e["action"] for e in orjson.loads(get(audit_url, ADMIN_TOKEN)[1])["events"]}
    assert {"session_erased", "replay_opened", "settings_changed"} <= actions


def test_sql_from_the_console_sees_only_this_site(
    env: ConsoleEnv, sessions: dict[str, str]
) -> None:
    rows = drive("run-sql", env, sql="SELECT DISTINCT site_id FROM events")["rows"]
    assert [r.strip() for r in rows] == [SITE_ID]
