"""Careless pages recorded in a real Chromium, then masked: no secret survives.

``tests/e2e/pages/careless-*.html`` are what a careless site shows outside its
form fields: reset and magic links with tokens in the path, query and fragment,
signed storage URLs, CSRF meta tags, JSON in ``data-*`` attributes, ``srcdoc``,
credentials printed as text, cards and IBANs in running text, and logs and
custom events full of secrets. Each ``{{NAME}}`` on a page is filled with a
generated secret (seeded: the same on every run, random like real ones).

rrweb (web/node_modules, the version the recorder bundles) records each page
with its console plugin, client-side masking off, in Debian's Chromium driven by
``drive_careless.mjs``; the events and the final ``location.href`` go through the
masker's message path with default settings (:func:`mask_recording`). With
``REPLAYPIPE_WRITE_CARELESS_FIXTURES=1`` the recordings are written to
``tests/fixtures/careless`` for the unit test that replays them without a browser.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import string
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import orjson
import pytest

from tests.conftest import PROJECT_ROOT
from tests.unit.test_masker_careless import (
    FIXTURES,
    MIN_KEPT_SHARE,
    kept_share,
    leaks,
    mask_recording,
)

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
PAGES = HERE / "pages"
WEB_DIR = PROJECT_ROOT / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SEED = 13  # issue 13
# Typed by the driver: into the reset page's password field and the notes contenteditable.
TYPED = {"careless-reset": "Tr0ub4dor&3-Horse", "careless-tokens": "call me: vault code 7781-QX"}
BASE62 = string.ascii_letters + string.digits
BASE64URL = BASE62 + "-_"
UPPER36 = string.ascii_uppercase + string.digits
# On the pages but not a secret: Django's reset link starts with the user id in base64.
NOT_SECRET = frozenset({"DJANGO_UID"})


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = sum(
            int(d) if i % 2 == 0 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d))
            for i, d in enumerate(reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def _group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    parts, pos = [], 0
    for size in sizes:
        parts.append(digits[pos : pos + size])
        pos += size
    return sep.join(parts)


def _iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = "".join(str(int(c, 36)) for c in rearranged)
    return f"{country}{98 - int(number) % 97:02d}{bban}"


def _spaced(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def careless_secrets(seed: int = SEED) -> dict[str, str]:
    """Every ``{{NAME}}`` of the careless pages: generated secrets in real formats."""
    rng = random.Random(seed)
    s: dict[str, str] = {}
    for name in (
        "RESET_PATH", "MAGIC_PATH", "RETURN_TOKEN", "NEXT_API_KEY", "CLIENT_SECRET",
        "X_API_KEY", "SESSION_TOKEN", "DATA_API_KEY", "DATA_REFRESH", "DATA_LATE_TOKEN",
        "SESSION_ATTR", "X_AUTH_ATTR", "SRCDOC_SECRET", "GENERIC_API_KEY", "GENERIC_API_KEY_2",
        "ENV_TOKEN", "BEARER_TOKEN", "LATE_TEXT_TOKEN", "LOG_BEARER", "LOG_X_API_KEY",
        "LOG_KV_KEY", "LOG_URL_TOKEN", "LOG_JSON_KEY", "LOG_COOKIE", "LOG_BARE_TOKEN",
        "FETCH_TOKEN", "FETCH_SIG", "FETCH_BEARER", "CUSTOM_API_TOKEN", "CUSTOM_X_API_KEY",
        "CUSTOM_REDIRECT_SESSION", "CUSTOM_URL_KEY", "CUSTOM_AUTH_HEADER", "KEY_PARAM",
    ):
        s[name] = _pick(rng, BASE62, rng.choice((24, 32, 40)))
    for name in ("RESET_QUERY", "CSRF_META", "FORM_TOKEN", "ID_TOKEN_SIG"):
        s[name] = _b64url(rng.randbytes(32))
    s["DJANGO_UID"] = _b64url(str(rng.randint(10, 99999)).encode())
    base36 = string.ascii_lowercase + string.digits
    s["DJANGO_TOKEN"] = _pick(rng, base36, 6) + "-" + rng.randbytes(16).hex()
    s["VERIFY_UUID"] = str(uuid.UUID(bytes=rng.randbytes(16), version=4))
    s["JSESSIONID"] = rng.randbytes(16).hex().upper()
    s["PHPSESSID"] = _pick(rng, string.ascii_lowercase + string.digits, 26)
    s["PASS_PARAM"] = _pick(rng, string.ascii_letters, 6) + str(rng.randint(10, 99)) + "!"
    s["WEBHOOK_SECRET_HEX"] = "whsec_" + rng.randbytes(24).hex()
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"sub": str(rng.randint(1, 10**6)), "iat": 1700000000, "scope": "orders:write"}
    payload = _b64url(json.dumps(claims).encode())
    s["JWT"] = f"{header}.{payload}.{_b64url(rng.randbytes(32))}"
    email_claim = _b64url(b'{"email":"ann.lee@mail.example"}')
    s["ID_TOKEN"] = f"{header}.{email_claim}.{s.pop('ID_TOKEN_SIG')}"
    s["AWS_KEY_ID"] = "AKIA" + _pick(rng, string.ascii_uppercase + "234567", 16)
    s["AWS_SECRET_KEY"] = base64.b64encode(rng.randbytes(30)).decode()
    s["AWS_SESSION_TOKEN"] = quote(base64.b64encode(rng.randbytes(60)).decode(), safe="")
    s["AWS_SIGNATURE"] = rng.randbytes(32).hex()
    s["AWS_SIGNATURE_LATER"] = rng.randbytes(32).hex()
    s["GCS_SIGNATURE"] = quote(base64.b64encode(rng.randbytes(48)).decode(), safe="")
    s["GCS_V4_SIGNATURE"] = rng.randbytes(64).hex()
    s["AZURE_SIG"] = quote(base64.b64encode(rng.randbytes(32)).decode(), safe="")
    cloudfront = base64.b64encode(rng.randbytes(48)).decode()
    s["CLOUDFRONT_SIG"] = cloudfront.translate(str.maketrans("+=/", "-_~"))
    s["STRIPE_PK"] = "pk_live_" + _pick(rng, BASE62, 24)
    s["STRIPE_SECRET"] = "sk_live_" + _pick(rng, BASE62, 24)
    s["PI_CLIENT_SECRET"] = "pi_" + _pick(rng, BASE62, 24) + "_secret_" + _pick(rng, BASE62, 25)
    s["LOG_CLIENT_SECRET"] = "pi_" + _pick(rng, BASE62, 24) + "_secret_" + _pick(rng, BASE62, 25)
    s["GITHUB_TOKEN"] = "ghp_" + _pick(rng, BASE62, 36)
    bot, team = rng.randint(10**11, 10**12), rng.randint(10**12, 10**13)
    s["SLACK_TOKEN"] = f"xoxb-{bot}-{team}-{_pick(rng, BASE62, 24)}"
    s["SLACK_WEBHOOK"] = (
        "https://hooks.slack.com/services/T" + _pick(rng, UPPER36, 8)
        + "/B" + _pick(rng, UPPER36, 10) + "/" + _pick(rng, BASE62, 24)
    )
    s["GOOGLE_KEY"] = "AIza" + _pick(rng, BASE64URL, 35)
    s["GITLAB_TOKEN"] = "glpat-" + _pick(rng, BASE64URL, 20)
    s["NPM_TOKEN"] = "npm_" + _pick(rng, BASE62, 36)
    s["SENDGRID_KEY"] = "SG." + _pick(rng, BASE64URL, 22) + "." + _pick(rng, BASE64URL, 43)
    s["OPENAI_KEY"] = "sk-proj-" + _pick(rng, BASE64URL, 48)
    s["DB_PASSWORD"] = _pick(rng, BASE62, 12)
    first, number = _pick(rng, string.ascii_letters, 5), rng.randint(100, 999)
    s["LOG_PASSWORD"] = f"{first}-{number}-{_pick(rng, string.ascii_letters, 5)}"
    s["CUSTOM_BODY_PASSWORD"] = _pick(rng, string.ascii_letters, 8) + str(rng.randint(10, 99))
    s["LOG_BASIC"] = base64.b64encode(f"ann:{_pick(rng, BASE62, 10)}".encode()).decode()
    s["LOG_JSON_NUMBER"] = str(rng.randint(10**8, 10**9))
    s["CUSTOM_PIN"] = str(rng.randint(100000, 999999))
    s["DATA_PIN"] = str(rng.randint(100000, 999999))
    s["CUSTOM_CVC"] = str(rng.randint(100, 999))
    visa = _luhn_complete(rng, "4", 16)
    s["LOG_CARD_NUMBER"] = _luhn_complete(rng, "4", 16)
    s["CUSTOM_CARD"] = _luhn_complete(rng, "5", 16)
    s["CUSTOM_NOTE_CARD"] = _group(_luhn_complete(rng, "4", 16), (4, 4, 4, 4), "\u00a0")
    s["CARD_NBSP"] = _group(visa, (4, 4, 4, 4), "\u00a0")
    s["CARD_THIN"] = _group(_luhn_complete(rng, "5", 16), (4, 4, 4, 4), "\u2009")
    s["CARD_AMEX"] = _group(_luhn_complete(rng, "37", 15), (4, 6, 5), " ")
    s["CARD_DINERS"] = _group(_luhn_complete(rng, "36", 14), (4, 6, 4), "\u202f")
    s["IBAN_DE"] = _spaced(_iban("DE", "".join(rng.choice(string.digits) for _ in range(18))))
    gb = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    s["IBAN_GB"] = _iban("GB", gb + "".join(rng.choice(string.digits) for _ in range(14)))
    nl = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    s["IBAN_NL"] = _iban("NL", nl + "".join(rng.choice(string.digits) for _ in range(10)))
    s["IBAN_FR"] = _spaced(_iban("FR", "".join(rng.choice(string.digits) for _ in range(23))))
    # careless-app and the later lines of careless-console
    for name in ("MAILTO_TOKEN", "INVITE_TOKEN", "SHADOW_SECRET", "PROPS_TOKEN",
                 "ATTR_SECRET_LATE", "EXPORT_TOKEN", "LOG_ERROR_TOKEN", "LOG_REFRESH"):
        s[name] = _pick(rng, BASE62, rng.choice((22, 32)))
    s["OAUTH_CODE"] = "4/0A" + _pick(rng, BASE64URL, 60)
    s["PAT_TOKEN"] = "github_pat_" + _pick(rng, BASE62 + "_", 82)
    s["PROPS_CARD"] = _luhn_complete(rng, "4", 16)
    s["PROPS_IBAN"] = _iban("DE", "".join(rng.choice(string.digits) for _ in range(18)))
    s["EXPORT_SIG"] = rng.randbytes(32).hex()
    # names, not shapes: short values a name/value pair says are secret
    s["LOG_PAIR_SECRET"] = _pick(rng, string.ascii_lowercase, 7) + str(rng.randint(10, 99))
    s["HAR_KEY"] = "key-" + _pick(rng, string.ascii_lowercase, 8)
    s["HAR_SID"] = _pick(rng, string.ascii_lowercase, 10)
    s["IBAN_NBSP"] = _spaced(_iban("FR", "".join(rng.choices(string.digits, k=23)))).replace(
        " ", "\u00a0"
    )
    s["IBAN_DASHED"] = _spaced(_iban("BE", "".join(rng.choices(string.digits, k=12)))).replace(
        " ", "-"
    )
    return s


def secrets_to_check(subs: dict[str, str]) -> list[str]:
    """The values that must not survive: each secret, its compact form, its decoded form."""
    out: list[str] = []
    for name, value in subs.items():
        if name in NOT_SECRET:
            continue
        if name == "SLACK_WEBHOOK":
            out.extend(value.rsplit("/", 3)[1:])
            continue
        out.append(value)
        compact = "".join(value.split())  # no-break and thin spaces included
        if compact != value:
            out.append(compact)
        if "%" in value:
            out.append(unquote(value))
    out.extend(TYPED.values())
    return sorted(set(out))


class _CarelessHandler(SimpleHTTPRequestHandler):
    """Serves the careless pages (any path under ``/careless-x.html/``) and the rrweb bundle."""

    substitutions: ClassVar[dict[str, str]]
    bundle: ClassVar[bytes]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == "/careless-recorder.js":
            self._send(self.bundle, "text/javascript")
            return
        name = path.lstrip("/").split("/", 1)[0]
        page = PAGES / name
        if name.startswith("careless-") and name.endswith(".html") and page.is_file():
            text = page.read_text()
            for key, value in self.substitutions.items():
                text = text.replace("{{" + key + "}}", value)
            self._send(text.encode(), "text/html; charset=utf-8")
            return
        self._send(b"{}", "application/json")  # the pages' fetch() calls: any answer

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# What the test bundle runs: rrweb's record with its console plugin, events kept in
# the page for the driver to collect, client-side masking off (the server masks).
BUNDLE_ENTRY = """
import { record } from "rrweb";
import { getRecordConsolePlugin } from "@rrweb/rrweb-plugin-console-record";
window.__carelessEvents = [];
window.rrwebRecord = record;
record({
  emit: (event) => window.__carelessEvents.push(event),
  maskInputOptions: {},
  plugins: [getRecordConsolePlugin({ level: ["log", "info", "warn", "error", "debug"] })],
});
"""


def build_bundle(out: Path) -> bytes:
    """esbuild (web/node_modules) bundles rrweb and its console plugin for the pages."""
    script = (
        "const { build } = require('esbuild');"
        "build({ stdin: { contents: process.argv[1], resolveDir: process.argv[2] },"
        " bundle: true, format: 'iife', target: 'es2020', outfile: process.argv[3],"
        " logLevel: 'error' }).catch(() => process.exit(1));"
    )
    proc = subprocess.run(
        ["node", "-e", script, BUNDLE_ENTRY, str(WEB_DIR), str(out)],
        cwd=WEB_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"bundling rrweb failed:\n{proc.stderr[-3000:]}"
    return out.read_bytes()


@pytest.fixture(scope="module")
def careless_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The page server's URL and the secrets it filled in."""
    setup = subprocess.run(
        [str(PROJECT_ROOT / "scripts" / "setup_browser.sh")], capture_output=True, text=True,
        timeout=600,
    )
    assert setup.returncode == 0, f"scripts/setup_browser.sh failed:\n{setup.stderr[-3000:]}"
    subs = careless_secrets()

    class Handler(_CarelessHandler):
        substitutions: ClassVar[dict[str, str]] = subs
        bundle: ClassVar[bytes] = build_bundle(tmp_path_factory.mktemp("careless") / "rec.js")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", subs
    finally:
        server.shutdown()


def page_paths(subs: dict[str, str]) -> dict[str, str]:
    """Where each page is opened: the reset page at a link with tokens everywhere."""
    return {
        "careless-reset": (
            f"/careless-reset.html/account/reset/{subs['RESET_PATH']}/"
            f"?token={subs['RESET_QUERY']}&utm_source=email"
            f"#access_token={subs['ID_TOKEN']}&token_type=Bearer&expires_in=3600"
        ),
        "careless-assets": "/careless-assets.html",
        "careless-tokens": "/careless-tokens.html",
        "careless-console": "/careless-console.html",
        "careless-app": "/careless-app.html",
    }


@pytest.fixture(scope="module")
def recordings(careless_site: tuple[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Each careless page recorded in Chromium, as a fixture document."""
    base, subs = careless_site
    pages = [
        {"name": name, "url": base + path, "type": TYPED.get(name)}
        for name, path in page_paths(subs).items()
    ]
    config = {"web_dir": str(WEB_DIR), "chromium": CHROMIUM, "pages": pages}
    proc = subprocess.run(
        ["node", str(HERE / "drive_careless.mjs"), json.dumps(config)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"recording the careless pages failed:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    secrets = secrets_to_check(subs)
    docs = []
    for page in result["pages"]:
        raw = orjson.dumps(page["events"]).decode() + page["href"]
        docs.append(
            {
                "page": page["name"],
                "recorded_with": result["versions"],
                "page_url": page["href"],
                "keep": page["keep"],
                # the secrets this page really recorded (each page shows some of them)
                "secrets": [s for s in secrets if leaks(raw, [s])],
                "events": page["events"],
            }
        )
    if os.environ.get("REPLAYPIPE_WRITE_CARELESS_FIXTURES") == "1":
        FIXTURES.mkdir(parents=True, exist_ok=True)
        for doc in docs:
            (FIXTURES / f"{doc['page']}.json").write_bytes(orjson.dumps(doc) + b"\n")
    return docs


def test_every_careless_page_was_recorded_with_its_secrets(
    recordings: list[dict[str, Any]],
) -> None:
    pages = sorted(p.stem for p in PAGES.glob("careless-*.html"))
    assert sorted(d["page"] for d in recordings) == pages
    for doc in recordings:
        assert doc["secrets"], f"{doc['page']}: no secret recorded"
        assert doc["keep"], f"{doc['page']}: no text marked keep"
    console = [
        e for d in recordings for e in d["events"]
        if e["type"] == 6 and e["data"]["plugin"] == "rrweb/console@1"
    ]
    assert len(console) >= 10, "the console plugin recorded too few log lines"
    assert any(e["type"] == 5 for d in recordings for e in d["events"]), "no custom event"
    everything = "".join(orjson.dumps(d["events"]).decode() for d in recordings)
    assert all(t in everything for t in TYPED.values()), "the typing was not recorded"


def test_no_careless_secret_survives_the_masker(recordings: list[dict[str, Any]]) -> None:
    found = {}
    for doc in recordings:
        blob, _, _ = mask_recording(doc)
        found[doc["page"]] = leaks(blob, doc["secrets"])
    assert found == {d["page"]: [] for d in recordings}


def test_careless_pages_keep_their_visible_texts(recordings: list[dict[str, Any]]) -> None:
    for doc in recordings:
        blob, masked_events, _ = mask_recording(doc)
        assert [t for t in doc["keep"] if t not in blob] == [], doc["page"]
        share = kept_share(doc["events"], masked_events, doc["secrets"])
        assert share >= MIN_KEPT_SHARE[doc["page"]], (doc["page"], share)

