"""Secrets outside form fields: in URLs, structured payloads, attributes, known
token formats; and the PII detectors' reach (IBANs in running text, card groupings).

Each example states one place a careless site exposes a secret; the last group
states what must survive (over-masking is a defect too).
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from services.masker.detectors import Scrubber, looks_random, mask_text
from services.masker.sensitivity import key_is_secret
from services.masker.token_rules import TOKEN_RULES
from tests.unit.test_masker_rules import custom, el, node_by_id, run, snapshot, text

SCRUBBER = Scrubber.build(("email", "card", "iban"), ())


def scrub(value: str, *, url: bool = False) -> str:
    return SCRUBBER.scrub(value, Counter(), url=url)


# --- one vocabulary of secret words ------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["password", "userPassword", "X-Api-Key", "apikey", "API_KEY", "clientSecret",
     "access-token", "PHPSESSID", "sessionId", "authToken", "x-auth", "X-Amz-Signature",
     "sig", "private_key", "csrfToken", "_csrf", "refreshtoken", "Authorization"],
)
def test_keys_naming_a_secret_in_any_casing_or_compound_are_secret(key: str) -> None:
    assert key_is_secret(key)


@pytest.mark.parametrize(
    "key", ["author", "shipping", "design", "sidebar", "description", "username", "page", "lang"]
)
def test_short_secret_words_match_only_as_whole_words(key: str) -> None:
    assert not key_is_secret(key)


# --- secrets in URLs ------------------------------------------------------------------


def test_url_parameter_with_a_camel_case_secret_key_is_masked() -> None:
    assert scrub("https://a.example/x?page=2&apiKey=k3y123", url=True) == (
        "https://a.example/x?page=2&apiKey=******"
    )


def test_signed_url_signature_is_masked() -> None:
    url = "https://cdn.example/f.pdf?X-Amz-Date=20240101&X-Amz-Signature=abc123def"
    assert scrub(url, url=True).endswith("X-Amz-Date=20240101&X-Amz-Signature=*********")


def test_token_in_a_fragment_is_masked() -> None:
    url = "https://app.example/cb#state=ok&access_token=ya29.a0Af&expires_in=3599"
    assert scrub(url, url=True) == (
        "https://app.example/cb#state=ok&access_token=*********&expires_in=3599"
    )


def test_secret_in_a_percent_encoded_redirect_url_is_masked() -> None:
    inner = "https://shop.example/done?order=7&reset_token=hunter2&x=1"
    masked = scrub("https://login.example/?next=" + quote(inner, safe=""), url=True)
    assert "hunter2" not in masked
    assert "order%3D7" in masked and "x%3D1" in masked


def test_secret_in_a_twice_encoded_redirect_url_is_masked() -> None:
    inner = quote("https://shop.example/done?password=hunter2&x=1", safe="")
    masked = scrub("https://login.example/?next=" + quote(inner, safe=""), url=True)
    assert "hunter2" not in masked


def test_random_path_segment_of_a_reset_link_is_masked() -> None:
    url = "https://shop.example/reset/Xk9fQ2mZ7pL4vR8sT1wY3bN6?lang=en"
    assert scrub(url, url=True) == "https://shop.example/reset/************************?lang=en"


def test_url_in_page_text_is_scrubbed_too() -> None:
    line = "open https://shop.example/magic/Xk9fQ2mZ7pL4vR8sT1wY3bN6 to sign in"
    assert scrub(line) == "open https://shop.example/magic/************************ to sign in"


def test_meta_href_and_link_attributes_lose_their_secrets() -> None:
    meta = {"type": 4, "timestamp": 0, "data": {"href": "https://a.example/#id_token=abc123"}}
    link = el(4, "a", {"href": "/cb?clientSecret=s3cr3t"})
    result = run([meta, snapshot(link)])
    assert result.events[0]["data"]["href"] == "https://a.example/#id_token=******"
    assert node_by_id(result.events[1], 4)["attributes"]["href"] == "/cb?clientSecret=******"


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/blog/spring-sale-2024-newsletter-promo",
        "https://shop.example/products/ThisIsMyArticleTitle2024",
        "https://shop.example/static/app.3f9a8b7c6d5e4f3a2b1c.js",
        "https://shop.example/search?q=blue+shoes&page=2&utm_campaign=spring_sale_2024",
    ],
)
def test_slugs_titles_asset_names_and_ordinary_parameters_are_kept(url: str) -> None:
    assert scrub(url, url=True) == url


def test_image_urls_keep_their_content_hash_paths_but_lose_secret_parameters() -> None:
    src = "https://img.example/Xk9fQ2mZ7pL4vR8sT1wY3bN6/w_300?sig=abc123"
    node = el(4, "img", {"src": src})
    attrs = node_by_id(run([snapshot(node)]).events[0], 4)["attributes"]
    assert attrs["src"] == "https://img.example/Xk9fQ2mZ7pL4vR8sT1wY3bN6/w_300?sig=******"


def test_random_looking_means_mixed_classes_not_long_words() -> None:
    assert looks_random("Xk9fQ2mZ7pL4vR8sT1wY3bN6")
    assert looks_random("3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c")
    assert not looks_random("internationalization")
    assert not looks_random("ThisIsMyArticleTitle2024")


# --- secrets by name in structured data ---------------------------------------------


def test_value_under_a_secret_key_is_masked_at_any_depth_numbers_included() -> None:
    payload = {"config": {"deep": [{"apiKey": "k-123"}], "pin": 4821}, "page": "checkout"}
    masked = run([custom("app.state", payload)]).events[0]["data"]["payload"]
    assert masked == {"config": {"deep": [{"apiKey": "*****"}], "pin": "****"}, "page": "checkout"}


def test_everything_under_a_secret_key_holding_an_object_is_masked() -> None:
    payload = {"auth": {"user": "bob", "tries": 3, "ok": True}}
    masked = run([custom("login", payload)]).events[0]["data"]["payload"]
    assert masked == {"auth": {"user": "***", "tries": "*", "ok": True}}


def test_card_number_sent_as_a_json_number_is_masked() -> None:
    masked = run([custom("order", {"n": 4111111111111111, "qty": 2})]).events[0]["data"]
    assert masked["payload"] == {"n": "****************", "qty": 2}


def test_json_inside_a_string_value_is_masked_by_member_name() -> None:
    state = orjson.dumps({"ok": True, "sessionToken": "abc123", "n": 7, "cfg": {"apiKey": 9}})
    masked = run([custom("boot", {"state": state.decode()})]).events[0]["data"]["payload"]
    assert orjson.loads(masked["state"]) == {
        "ok": True, "sessionToken": "******", "n": 7, "cfg": {"apiKey": 0}
    }


def test_a_masked_json_number_becomes_a_string_of_the_same_length() -> None:
    assert scrub('{"pin": 4821, "n": 7}') == '{"pin": "**", "n": 7}'


def test_json_escaped_inside_a_json_string_is_masked_by_member_name() -> None:
    line = '{"msg": "{\\"password\\": \\"hunter2\\"}"}'
    assert scrub(line) == '{"msg": "{\\"password\\": \\"*******\\"}"}'


def test_key_value_secrets_and_http_credentials_in_log_lines_are_masked() -> None:
    log = {"source": 11, "level": "log", "trace": [], "payload": [
        "login ok user=bob password=hunter2 next",
        "GET /api Authorization: Bearer abcDEF123456.xyz",
        "db at postgres://admin:hunter2@db.internal/app",
    ]}
    masked = run([{"type": 3, "timestamp": 1, "data": log}]).events[0]["data"]["payload"]
    assert masked == [
        "login ok user=bob password=******* next",
        "GET /api Authorization: Bearer ****************",
        # the e-mail detector takes the host too: "hunter2@db.internal" reads as an address
        "db at postgres://admin:*******************/app",
    ]


def test_secret_header_lines_in_log_strings_are_masked() -> None:
    log = {"source": 11, "level": "log", "trace": [], "payload": [
        "req X-Api-Key: k3y-123 Accept: text/html",
        "Cookie: sessionid=abc123; theme=dark",
        "Authorization: Bearer abcDEF123456.xyz",
    ]}
    masked = run([{"type": 3, "timestamp": 1, "data": log}]).events[0]["data"]["payload"]
    assert masked == [
        "req X-Api-Key: ******* Accept: text/html",
        "Cookie: ****************; theme=dark",
        "Authorization: Bearer ****************",
    ]


def test_a_label_and_colon_in_page_text_is_a_sentence_not_a_header() -> None:
    line = "Password: must have 8 characters. Session: 10:30-12:00"
    assert node_by_id(run([snapshot(el(4, "p", {}, text(5, line)))]).events[0], 5)[
        "textContent"
    ] == line


# --- secrets by name in attributes -----------------------------------------------------


def test_attribute_whose_name_says_secret_is_masked() -> None:
    node = el(4, "div", {"data-api-key": "k-123", "data-user": "bob"})
    attrs = node_by_id(run([snapshot(node)]).events[0], 4)["attributes"]
    assert attrs == {"data-api-key": "*****", "data-user": "bob"}


@pytest.mark.parametrize("name", ["csrf-token", "_csrf", "xsrf-token", "csrf_token"])
def test_anti_forgery_meta_tag_content_is_masked(name: str) -> None:
    node = el(4, "meta", {"name": name, "content": "tok123"})
    attrs = node_by_id(run([snapshot(node)]).events[0], 4)["attributes"]
    assert attrs == {"name": name, "content": "******"}


def test_json_in_a_data_attribute_is_masked_by_member_name() -> None:
    node = el(4, "div", {"data-config": '{"theme": "blue", "apiKey": "k-123"}'})
    attrs = node_by_id(run([snapshot(node)]).events[0], 4)["attributes"]
    assert attrs["data-config"] == '{"theme": "blue", "apiKey": "*****"}'


def test_srcdoc_is_masked_whole() -> None:
    node = el(4, "iframe", {"srcdoc": "<p>token 123</p>", "width": "300"})
    attrs = node_by_id(run([snapshot(node)]).events[0], 4)["attributes"]
    assert attrs == {"srcdoc": "******** *******", "width": "300"}


# --- known token formats ---------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2" * 9,
        "xoxb-1234567890-abcdefghij",
        "sk_live_abcdefghij0123",
        "AIza" + "B" * 35,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
    ],
)
def test_known_token_formats_are_masked_anywhere_in_text(token: str) -> None:
    assert scrub(f"see {token} ok") == f"see {mask_text(token)} ok"


def test_basic_credentials_are_masked_after_the_scheme_word() -> None:
    assert scrub("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic ************"


def test_every_token_rule_names_its_source() -> None:
    # the scanners' rule sets are the anchors; "vendor" = a format the issuer documents
    assert all(rule.source.split(":")[0] in {"gitleaks", "detect-secrets", "relay", "vendor"}
               for rule in TOKEN_RULES)


@pytest.mark.parametrize(
    "words",
    ["Bearer authentication explained", "Basic information for members", "Basic plan"],
)
def test_bearer_and_basic_followed_by_words_are_kept(words: str) -> None:
    assert scrub(words) == words


# --- detector reach ----------------------------------------------------------------------


def test_every_iban_in_running_text_is_found() -> None:
    line = "from DE89 3704 0044 0532 0130 00 to GB82 WEST 1234 5698 7654 32 thanks"
    assert scrub(line) == (
        "from **** **** **** **** **** ** to **** **** **** **** **** ** thanks"
    )


def test_an_iban_after_a_code_that_looks_like_one_is_found() -> None:
    assert scrub("XX12 ref AB12 DE89370400440532013000") == "XX12 ref AB12 **********************"


@pytest.mark.parametrize("space", ["\u00a0", "\u2007", "\u202f", "\u2009"])
def test_cards_grouped_with_non_ascii_spaces_are_masked(space: str) -> None:
    card = space.join(["4111", "1111", "1111", "1111"])
    assert scrub(f"card {card} ok") == f"card {space.join(['****'] * 4)} ok"


def test_a_unionpay_card_in_its_six_thirteen_grouping_is_masked() -> None:
    assert scrub("up 622202 0000000000000 ok") == "up ****** ************* ok"


# --- what survives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "visible",
    [
        "Forgot your password? Reset it in your account settings.",
        "Session starts at 10:30, token ring network, author: Jane",
        "Order 2024-05-01 total: 19.99 EUR, page 2 of 7",
        "Shipping pin code field below",
    ],
)
def test_visible_page_text_about_secrets_is_kept(visible: str) -> None:
    result = run([snapshot(el(4, "p", {}, text(5, visible)))])
    assert node_by_id(result.events[0], 5)["textContent"] == visible


def _masked_payload(payload: Any) -> Any:
    return run([custom("t", payload)]).events[0]["data"]["payload"]


def test_ordinary_payload_keys_and_numbers_are_kept() -> None:
    payload = {"author": "Jane", "shipping": 3, "count": 1234567890123, "ok": True}
    assert _masked_payload(payload) == payload
