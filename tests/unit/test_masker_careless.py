"""Real Chromium recordings of careless pages (tests/fixtures/careless), masked with
default settings: no secret survives, and the page's own texts do.

The fixtures are rrweb events recorded by ``tests/e2e/test_careless_pages.py``
from ``tests/e2e/pages/careless-*.html`` (rrweb and its console plugin in
Debian's Chromium), with the generated secrets each page was filled with and the
texts it marks ``class="keep"``. That test records them afresh on every run and
rewrites them with ``REPLAYPIPE_WRITE_CARELESS_FIXTURES=1``.
"""

from __future__ import annotations

import copy
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.masker.detectors import Scrubber, mask_text, random_token_spans
from services.masker.message import mask_message
from services.masker.sensitivity import key_is_secret, key_is_weak_secret
from services.shared.envelope import BatchEnvelope
from services.shared.site_settings import SiteRegistry
from tests.unit.test_masker_page_text import _page_texts
from tests.unit.test_masker_rules import custom, el, node_by_id, run, snapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "careless"
# Secret substrings this long must not survive either (a half-masked token is a leak).
SUBSTRING_CHARS = 8
_DIGITS_ONLY = re.compile(r"\d+")
# Share of each page's visible text characters outside its secrets (first full
# snapshot) that must survive; measured 1.0 on all but careless-tokens (0.97: the
# contenteditable's own text, "SG." of a SendGrid key, the host after a URL password).
MIN_KEPT_SHARE: dict[str, float] = {
    "careless-app": 0.99,
    "careless-assets": 0.99,
    "careless-console": 0.99,
    "careless-reset": 0.99,
    "careless-tokens": 0.95,
}


def load_recordings() -> list[dict[str, Any]]:
    """Every recorded careless page, in name order."""
    return [orjson.loads(p.read_bytes()) for p in sorted(FIXTURES.glob("*.json"))]


def mask_recording(recording: dict[str, Any]) -> tuple[str, list[dict[str, Any]], Counter[str]]:
    """(masked envelope JSON, masked events, counts): the recording as one raw batch
    through the masker's message path (events and the envelope's page URL), default settings."""
    envelope = BatchEnvelope(
        site_id="careless",
        session_id="s-careless",
        window_id="w1",
        visitor_id="v1",
        seq=0,
        received_at_ms=1,
        events=copy.deepcopy(recording["events"]),
        page_url=recording["page_url"],
    )
    masked = mask_message(envelope.to_json(), None, SiteRegistry(), partition=0, offset=0)
    assert masked.value is not None
    doc = orjson.loads(masked.value)
    return masked.value.decode(), doc["events"], Counter(masked.counts)


def leaks(blob: str, secrets: list[str]) -> list[str]:
    """The secrets, or secret substrings of SUBSTRING_CHARS+ characters, found in ``blob``.

    All-digit secrets (PINs, JSON numbers, compact card numbers) are looked for
    whole, between non-digits: their 8-digit pieces occur in any timestamp.
    Those under 6 digits (a CVC) are looked for as a JSON string.
    """
    found: list[str] = []
    for secret in secrets:
        if _DIGITS_ONLY.fullmatch(secret):
            # short ones (a CVC) only as a JSON string: three digits are everywhere
            pattern = f'"{secret}"' if len(secret) < 6 else rf"(?<!\d){secret}(?!\d)"
            if re.search(pattern, blob):
                found.append(secret)
            continue
        if secret in blob:
            found.append(secret)
            continue
        for start in range(len(secret) - SUBSTRING_CHARS + 1):
            piece = secret[start : start + SUBSTRING_CHARS]
            if piece in blob:
                found.append(f"{piece!r} of {secret!r}")
                break
    return found


def kept_share(
    raw_events: list[dict[str, Any]], masked_events: list[dict[str, Any]], secrets: list[str]
) -> float:
    """Share of the first full snapshot's visible text characters (text nodes, not
    CSS or script) outside the secrets that masking keeps unchanged."""
    before = _page_texts([next(e for e in raw_events if e["type"] == 2)])
    after = _page_texts([next(e for e in masked_events if e["type"] == 2)])
    kept = total = 0
    for old, new in zip(before, after, strict=True):
        secret = [False] * len(old)
        for value in secrets:
            start = old.find(value)
            while start >= 0:
                secret[start : start + len(value)] = [True] * len(value)
                start = old.find(value, start + 1)
        for is_secret, a, b in zip(secret, old, new, strict=True):
            if not is_secret and not a.isspace():
                total += 1
                kept += a == b
    return kept / max(1, total)


RECORDINGS = load_recordings()


def _ids() -> list[str]:
    return [r["page"] for r in RECORDINGS]


def test_every_careless_page_has_a_recording() -> None:
    pages = Path(__file__).resolve().parents[1] / "e2e" / "pages"
    assert sorted(p.stem for p in pages.glob("careless-*.html")) == _ids()


@pytest.mark.parametrize("recording", RECORDINGS, ids=_ids())
def test_no_secret_of_a_recorded_careless_page_survives_masking(
    recording: dict[str, Any],
) -> None:
    blob, _, _ = mask_recording(recording)
    raw = orjson.dumps(recording["events"]).decode() + recording["page_url"]
    missing = [s for s in recording["secrets"] if not leaks(raw, [s])]
    assert missing == [], "secrets the page should have shown were not recorded"
    assert leaks(blob, recording["secrets"]) == []


@pytest.mark.parametrize("recording", RECORDINGS, ids=_ids())
def test_the_visible_texts_of_a_recorded_careless_page_survive_masking(
    recording: dict[str, Any],
) -> None:
    blob, masked_events, _ = mask_recording(recording)
    assert recording["keep"], "the page marks no text to keep"
    assert [t for t in recording["keep"] if t not in blob] == []
    share = kept_share(recording["events"], masked_events, recording["secrets"])
    assert share >= MIN_KEPT_SHARE[recording["page"]]


# --- what the recordings found, one example each ------------------------------------
# (the general rules these examples state; tests/unit/test_masker_secrets.py has the rest)

SCRUBBER = Scrubber.build(("email", "card", "iban"), ())


def scrub(value: str, *, url: bool = False, payload: bool = False) -> str:
    return SCRUBBER.scrub(value, Counter(), url=url, payload=payload)


def test_a_generated_token_printed_as_text_is_masked_whatever_its_label() -> None:
    assert scrub("auth failed for token TaOHipwjB5BbwxvWwVmgjVkK") == (
        "auth failed for token ************************"
    )
    assert scrub("Your recovery code: WZxIztj9Itqfxd7bkUagHTr3fvZOBkN1RTSs6Wch") == (
        "Your recovery code: " + "*" * 40
    )


def test_the_generated_piece_of_a_prefixed_token_is_masked() -> None:
    secret = "whsec_5120336236bfa03f5d859d4c5a24e5dd58481bb959cddc83"
    assert scrub(secret) == "whsec_" + "*" * 48


def test_a_path_in_text_keeps_its_words_and_loses_its_token() -> None:
    assert scrub("see docs/api/v2/Xk9fQ2mZ7pL4vR8sT1wY3bN6/setup now") == (
        "see docs/api/v2/************************/setup now"
    )


def test_an_aws_secret_key_with_slashes_is_masked_whole() -> None:
    assert scrub("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY9") == "*" * 41


@pytest.mark.parametrize(
    "segment",
    ["335d5c62-fd98-4c4d-b6b2-fc0b8555e513", "s5s0m5-d6348031ac687a1ac2cefc939a5c4789"],
    ids=["uuid", "django-reset-token"],
)
def test_uuid_and_base36_hex_reset_tokens_in_a_link_path_are_masked(segment: str) -> None:
    url = f"https://shop.example/verify/{segment}/?lang=en"
    assert scrub(url, url=True) == f"https://shop.example/verify/{'*' * len(segment)}/?lang=en"


def test_a_uuid_in_page_text_is_kept() -> None:
    line = "Request id 335d5c62-fd98-4c4d-b6b2-fc0b8555e513, quote it when you write."
    assert scrub(line) == line


@pytest.mark.parametrize(
    "text",
    [
        "iPhone15ProMax256GBMidnight", "ThisIsMyArticleTitle2024", "XMLHttpRequestFCMToken",
        "getElementsByClassName", "IsItOnOrOffTodayOrNot", "Donaudampfschifffahrtsgesellschaft",
        "covid19-update-2021-v2-final", "/usr/local/lib/python3.11/site-packages",
        "spring-sale-2024-newsletter-promo", "2024-05-01T10:00:00+02:00/2024-05-02",
    ],
)
def test_words_titles_product_names_paths_and_dates_in_text_are_kept(text: str) -> None:
    assert scrub(f"see {text} here") == f"see {text} here"


@pytest.mark.parametrize(
    ("alphabet", "share"),
    [
        (string.ascii_letters + string.digits, 0.99),
        (string.ascii_letters + string.digits + "-_", 0.99),
        (string.ascii_lowercase + string.digits, 0.98),
        (string.ascii_uppercase + string.digits, 0.98),
    ],
    ids=["base62", "base64url", "base36", "upper-base36"],
)
def test_random_tokens_are_found_even_with_few_digits(alphabet: str, share: float) -> None:
    # Real generators promise no digits: 24-40 random characters are found this often.
    rng = random.Random(1)
    tokens = ["".join(rng.choices(alphabet, k=rng.randint(24, 40))) for _ in range(1000)]
    assert sum(bool(random_token_spans(token)) for token in tokens) >= share * len(tokens)


def test_a_weak_secret_word_masks_only_a_generated_looking_value() -> None:
    assert scrub("/maps?key=Xk9fQ2mZ7pL4&sort_key=price&api=v2", url=True) == (
        "/maps?key=************&sort_key=price&api=v2"
    )
    payload = {"key": "Enter", "licenseKey": "9f3K2-LQ8X1-ZT4M7", "api": {"version": 2}}
    masked = run([custom("ui", payload)]).events[0]["data"]["payload"]
    assert masked == {"key": "Enter", "licenseKey": "*****************", "api": {"version": 2}}


def test_card_and_bank_words_name_payload_keys_too() -> None:
    payload = {"card": {"cvc": "123", "exp": "12/29"}, "iban_hint": "DE89", "note": "ok"}
    masked = run([custom("pay", payload)]).events[0]["data"]["payload"]
    assert masked == {"card": {"cvc": "***", "exp": "*****"}, "iban_hint": "****", "note": "ok"}


@pytest.mark.parametrize("key", ["pass", "user_pass", "pw", "two_factor", "twoFactorCode", "hmac"])
def test_relay_and_short_password_keys_are_secret(key: str) -> None:
    assert key_is_secret(key)


@pytest.mark.parametrize("key", ["compass", "passenger", "bypass_cache", "keyboard", "monkey"])
def test_words_containing_pass_or_key_are_not_secret(key: str) -> None:
    assert not key_is_secret(key)
    assert not key_is_weak_secret(key)


def test_class_and_id_keep_random_looking_build_hashes() -> None:
    attrs = {"class": "Btn_Xk9fQ2mZ7pL4vR8sT1wY3bN6", "id": "Xk9fQ2mZ7pL4vR8sT1wY3bN6",
             "title": "Xk9fQ2mZ7pL4vR8sT1wY3bN6"}
    masked = node_by_id(run([snapshot(el(4, "div", dict(attrs)))]).events[0], 4)["attributes"]
    assert masked == {**attrs, "title": "*" * 24}


@pytest.mark.parametrize(
    ("rule", "token"),
    [
        ("slack_webhook", "https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3EF/Xk9fQ2mZ7pL4"),
        ("gitlab_token", "glpat-Xk9fQ2mZ7pL4vR8sT1wY"),
        ("npm_token", "npm_Xk9fQ2mZ7pL4vR8sT1wY3bN6Xk9fQ2mZ7pL4"),
        ("sendgrid_key", "SG.Xk9fQ2mZ7pL4vR8sT1wY3b.Xk9fQ2mZ7pL4vR8sT1wY3bN6Xk9fQ2mZ7pL4vR8sT1w"),
        ("openai_key", "sk-proj-Xk9fQ2mZ7pL4vR8sT1wY3bN6Xk9fQ2mZ"),
        ("anthropic_key", "sk-ant-api03-Xk9fQ2mZ7pL4vR8sT1wY3bN6"),
        ("stripe_key", "pk_live_Xk9fQ2mZ7pL4vR8sT1wY3bN6"),
        ("stripe_webhook_secret", "whsec_b7463459ee1a10217518824d5238ad68vzQvanozwr04frsLnDZB1TjI"),
        ("shopify_token", "shpat_" + "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
        ("twilio_key", "SK" + "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
        ("mailgun_key", "key-" + "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"),
        ("digitalocean_token", "dop_v1_" + "3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c" * 2),
        ("hashicorp_vault_token", "hvs.Xk9fQ2mZ7pL4vR8sT1wY3bN6"),
        ("telegram_bot_token", "123456789:AAXk9fQ2mZ7pL4vR8sT1wY3bN6Xk9fQ2mZ7"),
        ("mapbox_token", "pk.eyJ1IjoiYW5uIiwiYSI6ImNrMTIzIn0.Xk9fQ2mZ7pL4vR8sT1wY3b"),
    ],
)
def test_more_credential_formats_scanners_know_are_masked(rule: str, token: str) -> None:
    counts: Counter[str] = Counter()
    masked = SCRUBBER.scrub(f"value: {token} end", counts)
    assert counts[f"token_{rule}"] == 1
    assert masked.startswith("value: ") and masked.endswith(" end")
    assert token[-8:] not in masked


def test_the_value_of_a_name_value_pair_that_names_a_secret_is_masked() -> None:
    payload = {
        "headers": [{"name": "X-Api-Key", "value": "k-123"}, {"name": "Accept", "value": "*/*"}],
        "jar": [["session", "abc"], ["theme", "dark"]],
    }
    masked = run([custom("request", payload)]).events[0]["data"]["payload"]
    assert masked == {
        "headers": [{"name": "X-Api-Key", "value": "*****"}, {"name": "Accept", "value": "*/*"}],
        "jar": [["session", "***"], ["theme", "dark"]],
    }


def test_a_console_line_naming_a_secret_then_giving_it_is_masked() -> None:
    # The console plugin writes each argument JSON-stringified: console.log("token", t).
    event = {"type": 6, "timestamp": 1, "data": {"plugin": "rrweb/console@1", "payload": {
        "level": "log", "trace": [], "payload": ['"token"', '"abc-123"']}}}
    masked = run([event]).events[0]["data"]["payload"]["payload"]
    assert masked == ['"token"', "*********"]


def test_a_name_value_pair_in_json_text_is_masked_by_its_name() -> None:
    line = '{"headers":[{"name":"X-Api-Key","value":"k-123"},{"name":"Accept","value":"*/*"}]}'
    assert scrub(line, payload=True) == (
        '{"headers":[{"name":"X-Api-Key","value":"*****"},{"name":"Accept","value":"*/*"}]}'
    )


def test_a_digit_heavy_random_hex_digest_in_a_link_is_masked() -> None:
    url = "https://shop.example/reset/MTIz/w5q6ps-d9393540043311f32aa3728939cd6483/"
    assert scrub(url, url=True) == "https://shop.example/reset/MTIz/" + "*" * 39 + "/"


def test_a_run_of_more_than_1024_token_characters_is_data_not_a_credential() -> None:
    blob = "Xk9fQ2mZ7pL4vR8sT1wY3bN6" * 50
    assert scrub(f"data {blob} end") == f"data {blob} end"


@pytest.mark.parametrize("separator", ["\u00a0", "\u202f", "\u2009", "-"])
def test_an_iban_grouped_with_non_ascii_spaces_or_dashes_is_found(separator: str) -> None:
    iban = separator.join(("DE89", "3704", "0044", "0532", "0130", "00"))
    assert scrub(f"Virement : {iban}.") == f"Virement : {mask_text(iban)}."
