"""Hypothesis strategies: random rrweb sessions with secrets in sensitive places.

A :class:`Scenario` is a site's settings, a consent signal and a stream of rrweb
events (full snapshot, then inputs, mutations, custom/console/meta events) in
which every secret sits somewhere the masker must hide it: password and card
fields, masked and blocked subtrees, PII in text, tokens in URLs, custom event
payloads, subtrees that get a mark later (their existing text, attributes and
fields then hold secrets), fields that replace a password field. Public text
uses a fixed vocabulary that never looks like a secret.

Hypothesis draws the structure (which elements, which events); a seeded
``random.Random`` fills in the secret strings, which keeps generation fast.
"""

from __future__ import annotations

import copy
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from hypothesis import strategies as st

from services.masker.detectors import looks_random, random_token_spans
from services.shared.envelope import RrwebEvent
from services.shared.site_settings import CONSENT_MODES, ConsentMode, SiteSettings

SECRET_PREFIX = "S3cr3t"
# Keys naming a secret in the casings and compounds sites use.
SECRET_KEYS = (
    "password", "userPassword", "X-Api-Key", "api_key", "apiKey", "access-token",
    "clientSecret", "sessionid", "PHPSESSID", "authToken", "private_key", "csrfToken",
    "refreshtoken", "x-auth", "Signature", "pass", "two_factor", "cvc", "hmac",
)
PUBLIC_WORDS = ("hello", "shop", "order", "total", "blue", "menu", "news", "cart", "help")
MASK_SELECTORS = (".private-x", "[data-private]", "section.vault span")
BLOCK_SELECTORS = ("#ad-slot", ".no-record")
IGNORE_SELECTORS = ("input.skip-me",)
BASE_TIMESTAMP = 1_700_000_000_000

T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]


@dataclass(slots=True)
class Scenario:
    """One generated session and what the tests need to know about it."""

    site: SiteSettings
    consent: bool | None
    events: list[RrwebEvent]
    secrets: list[str]
    blocked_roots: set[int] = field(default_factory=set)
    blocked_ids: set[int] = field(default_factory=set)  # roots and everything inside
    ignored_ids: set[int] = field(default_factory=set)


def luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        digits = prefix + check
        total = 0
        for index, char in enumerate(reversed(digits)):
            d = int(char)
            if index % 2 == 1:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def german_iban(bban: str) -> str:
    """A valid DE IBAN for an 18-digit BBAN."""
    numeric = "".join(str(int(c, 36)) for c in bban + "DE00")
    return f"DE{98 - int(numeric) % 97:02d}{bban}"


class _SessionBuilder:
    """Builds one page and its events; remembers where each secret went."""

    def __init__(self, draw: Draw[Any], rng: random.Random, record_inputs: bool) -> None:
        self.draw = draw
        self.rng = rng
        self.record_inputs = record_inputs
        self.next_id = 1
        self.secrets: list[str] = []
        self.blocked_roots: set[int] = set()
        self.blocked_ids: set[int] = set()
        self.ignored_ids: set[int] = set()
        # node ids by role, for the events that follow the snapshot
        self.sensitive_inputs: list[int] = []
        self.password_like: list[int] = []  # sensitive by their own attributes
        self.plain_inputs: list[int] = []
        self.masked_inputs: list[int] = []
        self.blocked_nodes: list[int] = []
        self.ignored_inputs: list[int] = []
        self.masked_texts: list[int] = []
        self.plain_texts: list[int] = []
        self.masked_elements: list[int] = []
        self.plain_elements: list[int] = []
        self.timestamp = BASE_TIMESTAMP
        # The page as the browser has it now (attribute changes applied), for a
        # checkout: rrweb's next full snapshot of the same page keeps the node ids.
        self.dom: dict[str, Any] = {}
        self.dom_nodes: dict[int, dict[str, Any]] = {}

    # --- values ---------------------------------------------------------------

    def new_id(self) -> int:
        node_id = self.next_id
        self.next_id += 1
        return node_id

    def secret(self) -> str:
        value = SECRET_PREFIX + "".join(self.rng.choices(string.ascii_letters, k=10))
        self.secrets.append(value)
        return value

    def public(self) -> str:
        return " ".join(self.rng.choices(PUBLIC_WORDS, k=self.rng.randint(1, 3)))

    def secret_sentence(self) -> str:
        return f"{self.public()} {self.secret()} {self.public()}"

    def card(self) -> str:
        digits = luhn_complete("4" + "".join(self.rng.choices(string.digits, k=14)))
        style = self.rng.choice(("", " ", "-", "\u00a0", "\u2009"))
        formatted = style.join(digits[i : i + 4] for i in range(0, 16, 4))
        self.secrets.extend({digits, formatted})
        return formatted

    def iban(self) -> str:
        iban = german_iban("".join(self.rng.choices(string.digits, k=18)))
        if self.rng.random() < 0.5:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        if self.rng.random() < 0.3:
            iban = iban.lower()  # typed in lower case (only the country code has letters)
        self.secrets.append(iban)
        return iban

    def email(self) -> str:
        return f"{self.secret()}@example.com"

    def secret_key(self) -> str:
        """A key that names a secret, in one of the forms sites use."""
        key: str = self.draw(st.sampled_from(SECRET_KEYS))
        return key

    def random_token(self, length: int = 32) -> str:
        """A generated token (reset/magic-link path segment): mixed case and digits."""
        alphabet = string.ascii_letters + string.digits
        while True:
            value = "".join(self.rng.choices(alphabet, k=length))
            if looks_random(value):
                self.secrets.append(value)
                return value

    def known_token(self) -> str:
        """A credential in a format secret scanners know (secret part recorded)."""
        kind = self.draw(st.sampled_from(("jwt", "aws", "github", "bearer", "url_auth")))
        letters = string.ascii_letters + string.digits
        if kind == "jwt":
            body = "".join(self.rng.choices(letters, k=24))
            value = f"eyJhbGciOiJIUzI1NiJ9.eyJ{body}.{self.secret()}"
            self.secrets.append(body)
            return value
        if kind == "aws":
            value = "AKIA" + "".join(self.rng.choices(string.ascii_uppercase + string.digits, k=16))
            self.secrets.append(value)
            return value
        if kind == "github":
            value = "ghp_" + "".join(self.rng.choices(letters, k=36))
            self.secrets.append(value)
            return value
        if kind == "bearer":
            return f"Authorization: Bearer {self.secret()}"
        return f"https://admin:{self.secret()}@db.example/x"

    def secret_url(self) -> str:
        """A URL carrying a secret where careless sites put one."""
        kind = self.draw(st.sampled_from(
            ("key", "fragment", "redirect", "path", "uuid_path", "django_path", "signed")
        ))
        if kind == "key":
            return f"https://shop.example/a?page=2&{self.secret_key()}={self.secret()}"
        if kind == "fragment":
            return f"https://shop.example/cb#state=ok&access_token={self.secret()}&x=1"
        if kind == "redirect":
            inner = f"https://shop.example/done?{self.secret_key()}={self.secret()}&x=1"
            return "https://login.example/?next=" + quote(inner, safe="")
        if kind == "path":
            return f"https://shop.example/reset/{self.random_token()}?lang=en"
        if kind == "uuid_path":
            value = str(uuid.UUID(bytes=self.rng.randbytes(16), version=4))
            self.secrets.append(value)
            return f"https://shop.example/verify-email/{value}"
        if kind == "django_path":
            token = "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=6))
            digest = self.rng.randbytes(16).hex()
            while not looks_random(digest):  # 1 in 2000 random hex digests reads as a word
                digest = self.rng.randbytes(16).hex()
            value = f"{token}-{digest}"
            self.secrets.append(value)
            return f"https://shop.example/reset/MTIz/{value}/"
        return f"https://cdn.example/f.pdf?X-Amz-Date=1&X-Amz-Signature={self.secret()}"

    def secret_payload(self) -> dict[str, Any]:
        """Structured data with secrets under secret-named keys, at any depth."""
        number = self.rng.randint(10**11, 10**12)
        self.secrets.append(str(number))
        nested_json = orjson.dumps({"ok": True, self.secret_key(): self.secret()}).decode()
        return {
            "page": "checkout",
            "config": {"deep": [{self.secret_key(): self.secret()}], self.secret_key(): number},
            "state": nested_json,
            "line": f"login ok {self.secret_key()}={self.secret()} done",
            "url": self.secret_url(),
            "auth": {"user": self.secret(), "method": self.secret()},
            "header": self.known_token(),
            "headers": [{"name": self.secret_key(), "value": self.secret()}],
        }

    def pii(self) -> str:
        kind = self.draw(st.sampled_from(("email", "card", "iban", "token")))
        makers = {"email": self.email, "card": self.card, "iban": self.iban,
                  "token": self.printed_token}
        return f"{self.public()} {makers[kind]()} {self.public()}"

    def printed_token(self) -> str:
        """A credential printed as page text or logged: generated, or a scanner format."""
        kind = self.draw(st.sampled_from(
            ("generated", "slack_webhook", "sendgrid", "gitlab", "npm", "stripe_pk", "whsec")
        ))
        b62 = string.ascii_letters + string.digits
        if kind == "generated":
            # base62, base64url or base36, found >= 98 in 100 (test_masker_careless);
            # the rare miss is not drawn here, so the property stays exact.
            base36 = string.ascii_lowercase + string.digits
            alphabet = self.draw(st.sampled_from((b62, b62 + "-_", base36)))
            while True:
                value = "".join(self.rng.choices(alphabet, k=self.rng.randint(24, 40)))
                if random_token_spans(value) == [(0, len(value))]:
                    self.secrets.append(value)
                    return value
        body = "".join(self.rng.choices(b62, k=24))
        self.secrets.append(body)
        return {
            "slack_webhook": f"https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3EF/{body}",
            "sendgrid": f"SG.{body[:22]}.{body}{body[:19]}",
            "gitlab": f"glpat-{body[:20]}",
            "npm": f"npm_{body}{body[:12]}",
            "stripe_pk": f"pk_live_{body}",
            "whsec": f"whsec_{self.rng.randbytes(24).hex()}{body}",
        }[kind]

    def typed(self, sensitive: bool) -> str:
        """What a visitor types: a secret wherever the rules must hide it."""
        return self.secret() if sensitive or not self.record_inputs else self.public()

    # --- nodes ----------------------------------------------------------------

    def text(self, context: str) -> dict[str, Any]:
        node_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(node_id)
            content = self.secret_sentence()
        elif context == "masked":
            self.masked_texts.append(node_id)
            content = self.secret_sentence()
        else:
            self.plain_texts.append(node_id)
            content = self.public()
        return {"type": 3, "id": node_id, "textContent": content}

    def element(
        self, tag: str, attrs: dict[str, Any], context: str, depth: int, kids: bool = True
    ) -> tuple[dict[str, Any], int]:
        node_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(node_id)
            self.blocked_nodes.append(node_id)
        node = {"type": 2, "id": node_id, "tagName": tag, "attributes": attrs, "childNodes": []}
        if kids and depth < 3:
            count = self.draw(st.integers(0, 3))
            node["childNodes"] = [self.subtree(context, depth + 1) for _ in range(count)]
        return node, node_id

    def subtree(self, context: str, depth: int) -> dict[str, Any]:
        kind = self.draw(st.sampled_from(SUBTREE_KINDS))
        return getattr(self, f"kind_{kind}")(context, depth)  # type: ignore[no-any-return]

    def kind_text(self, context: str, depth: int) -> dict[str, Any]:
        return self.text(context)

    def kind_container(self, context: str, depth: int) -> dict[str, Any]:
        tag = self.draw(st.sampled_from(("div", "span", "p", "li")))
        attrs: dict[str, Any] = {"class": "box"} if self.rng.random() < 0.5 else {}
        if context != "plain":
            attrs["title"] = self.secret()
        node, node_id = self.element(tag, attrs, context, depth)
        if context == "masked":
            self.masked_elements.append(node_id)
        elif context == "plain":
            self.plain_elements.append(node_id)
        if self.rng.random() < 0.5:
            node["childNodes"].append(self.text(context))
        return node

    def kind_masked(self, context: str, depth: int) -> dict[str, Any]:
        if context == "blocked":
            return self.kind_container(context, depth)
        attrs = self.draw(
            st.sampled_from(
                (
                    {"class": "rr-mask"},
                    {"data-recording-ignore": "mask"},
                    {"class": "card private-x"},
                    {"data-private": ""},
                )
            )
        )
        node, node_id = self.element("div", dict(attrs), "masked", depth)
        self.masked_elements.append(node_id)
        node["childNodes"].append(self.text("masked"))
        return node

    def kind_vault(self, context: str, depth: int) -> dict[str, Any]:
        # "section.vault span": masked only through the descendant combinator
        inner_context = "blocked" if context == "blocked" else context
        section, _ = self.element("section", {"class": "vault"}, inner_context, depth, kids=False)
        wrapper, _ = self.element("div", {}, inner_context, depth, kids=False)
        span_context = "blocked" if context == "blocked" else "masked"
        span, span_id = self.element("span", {}, span_context, depth, kids=False)
        if span_context == "masked":
            self.masked_elements.append(span_id)
        span["childNodes"] = [self.text(span_context)]
        wrapper["childNodes"] = [span]
        section["childNodes"] = [wrapper]
        return section

    def kind_blocked(self, context: str, depth: int) -> dict[str, Any]:
        attrs = self.draw(
            st.sampled_from(
                (
                    {"class": "rr-block"},
                    {"data-recording-ignore": "events"},
                    {"id": "ad-slot"},
                    {"class": "x no-record"},
                )
            )
        )
        node, node_id = self.element("div", dict(attrs), "blocked", depth)
        if context != "blocked":
            self.blocked_roots.add(node_id)
        node["attributes"]["data-owner"] = self.secret()
        node["childNodes"].append(self.text("blocked"))
        return node

    def kind_sensitive_input(self, context: str, depth: int) -> dict[str, Any]:
        attrs = dict(
            self.draw(
                st.sampled_from(
                    (
                        {"type": "password"},
                        {"type": "PassWord", "name": "pw"},
                        {"type": "text", "autocomplete": "cc-number"},
                        {"type": "text", "autocomplete": "billing cc-csc"},
                        {"type": "text", "autocomplete": "cc-exp"},
                        {"type": "text", "autocomplete": "one-time-code"},
                        {"type": "text", "autocomplete": "new-password"},
                        {"type": "text", "name": "cvv2"},
                        {"type": "text", "name": "card_number"},
                        {"type": "text", "id": "userIban"},
                        {"type": "text", "name": "ssn"},
                        {"type": "hidden", "name": "csrf_token"},
                    )
                )
            )
        )
        attrs["value"] = self.secret()
        attrs["placeholder"] = self.secret()
        node, node_id = self.element("input", attrs, context, depth, kids=False)
        if context == "plain":
            self.sensitive_inputs.append(node_id)
            self.password_like.append(node_id)
        return node

    def kind_plain_input(self, context: str, depth: int) -> dict[str, Any]:
        value = self.typed(context != "plain")
        input_type = self.draw(st.sampled_from(("text", "email", "search")))
        tag_attrs = {"type": input_type, "value": value}
        node, node_id = self.element("input", tag_attrs, context, depth, kids=False)
        if context == "plain":
            self.plain_inputs.append(node_id)
        elif context == "masked":
            self.masked_inputs.append(node_id)
        return node

    def kind_ignored_input(self, context: str, depth: int) -> dict[str, Any]:
        attrs = dict(self.draw(st.sampled_from(({"class": "rr-ignore"}, {"class": "skip-me"}))))
        attrs["value"] = self.secret()
        node, node_id = self.element("input", attrs, context, depth, kids=False)
        if context == "plain":
            self.ignored_inputs.append(node_id)
            self.ignored_ids.add(node_id)
        return node

    def kind_textarea(self, context: str, depth: int) -> dict[str, Any]:
        node, node_id = self.element("textarea", {}, context, depth, kids=False)
        text_id = self.new_id()
        content = self.typed(context != "plain")
        if context == "blocked":
            self.blocked_ids.add(text_id)
        node["childNodes"] = [{"type": 3, "id": text_id, "textContent": content}]
        if context == "plain":
            self.plain_inputs.append(node_id)
        return node

    def kind_select(self, context: str, depth: int) -> dict[str, Any]:
        node, node_id = self.element("select", {"name": "size"}, context, depth, kids=False)
        for _ in range(self.draw(st.integers(1, 2))):
            option_value = self.typed(context != "plain")
            option, _ = self.element("option", {"value": option_value}, context, depth, kids=False)
            text_id = self.new_id()
            if context == "blocked":
                self.blocked_ids.add(text_id)
            option["childNodes"] = [
                {"type": 3, "id": text_id, "textContent": self.typed(context != "plain")}
            ]
            node["childNodes"].append(option)
        if context == "plain":
            self.plain_inputs.append(node_id)
        return node

    def kind_editable(self, context: str, depth: int) -> dict[str, Any]:
        node, _ = self.element("div", {"contenteditable": "true"}, context, depth, kids=False)
        text_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(text_id)
        node["childNodes"] = [
            {"type": 3, "id": text_id, "textContent": self.typed(context != "plain")}
        ]
        return node

    def kind_pii_text(self, context: str, depth: int) -> dict[str, Any]:
        node, node_id = self.element("p", {}, context, depth, kids=False)
        text_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(text_id)
        elif context == "plain":
            self.plain_elements.append(node_id)
        node["childNodes"] = [{"type": 3, "id": text_id, "textContent": self.pii()}]
        return node

    def kind_secret_link(self, context: str, depth: int) -> dict[str, Any]:
        tag, name = self.draw(st.sampled_from((("a", "href"), ("form", "action"))))
        node, _ = self.element(tag, {name: self.secret_url()}, context, depth, kids=False)
        if context == "plain":
            text_id = self.new_id()
            node["childNodes"] = [
                {"type": 3, "id": text_id, "textContent": f"see {self.secret_url()} now"}
            ]
        return node

    def kind_secret_attribute(self, context: str, depth: int) -> dict[str, Any]:
        kind = self.draw(st.sampled_from(("named", "meta", "json", "srcdoc", "token")))
        if kind == "meta":
            name = self.draw(st.sampled_from(("csrf-token", "_csrf", "xsrf-token")))
            node, _ = self.element(
                "meta", {"name": name, "content": self.secret()}, context, depth, kids=False
            )
            return node
        if kind == "named":
            attrs = {f"data-{self.secret_key().lower()}": self.secret()}
        elif kind == "json":
            attrs = {"data-config": orjson.dumps({self.secret_key(): self.secret()}).decode()}
        elif kind == "srcdoc":
            attrs = {"srcdoc": f"<p>{self.secret()}</p>"}
        else:
            attrs = {"title": f"key {self.known_token()}"}
        tag = "iframe" if kind == "srcdoc" else "div"
        node, _ = self.element(tag, attrs, context, depth, kids=False)
        return node

    def kind_link(self, context: str, depth: int) -> dict[str, Any]:
        param = self.draw(st.sampled_from(("token", "access_token", "email", "reset_token")))
        url = f"https://shop.example/a?page=2&{param}={self.secret()}#top"
        tag, name = self.draw(st.sampled_from((("a", "href"), ("img", "src"), ("form", "action"))))
        node, _ = self.element(tag, {name: url}, context, depth, kids=False)
        return node

    def kind_style(self, context: str, depth: int) -> dict[str, Any]:
        node, _ = self.element("style", {}, context, depth, kids=False)
        text_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(text_id)
        css = "input[type=password]{width:20em} .password-hint{color:#888}"
        node["childNodes"] = [{"type": 3, "id": text_id, "textContent": css, "isStyle": True}]
        return node

    def kind_shadow(self, context: str, depth: int) -> dict[str, Any]:
        node, _ = self.element("x-widget", {}, context, depth, kids=False)
        node["isShadowHost"] = True
        if depth < 3:
            child = self.subtree(context, depth + 1)
            child["isShadow"] = True
            node["childNodes"] = [child]
        return node

    def kind_iframe(self, context: str, depth: int) -> dict[str, Any]:
        iframe, _ = self.element("iframe", {}, context, depth, kids=False)
        doc_id = self.new_id()
        if context == "blocked":
            self.blocked_ids.add(doc_id)
        body, _ = self.element("body", {}, context, depth + 1)
        for node in _walk(body):
            node["rootId"] = doc_id
        iframe["childNodes"] = [
            {"type": 0, "id": doc_id, "childNodes": [body], "compatMode": "CSS1Compat"}
        ]
        return iframe

    # --- events ---------------------------------------------------------------

    def tick(self) -> int:
        self.timestamp += 1
        return self.timestamp

    def page(self) -> RrwebEvent:
        doc_id = self.new_id()
        html_id = self.new_id()
        body, _ = self.element("body", {}, "plain", 0, kids=False)
        count = self.draw(st.integers(2, 8))
        body["childNodes"] = [self.subtree("plain", 1) for _ in range(count)]
        html = {"type": 2, "id": html_id, "tagName": "html", "attributes": {}, "childNodes": [body]}
        root = {"type": 0, "id": doc_id, "childNodes": [html]}
        self.dom = copy.deepcopy(root)
        self.dom_nodes = {node["id"]: node for node in _walk(self.dom)}
        return self.full_snapshot(root)

    def full_snapshot(self, root: dict[str, Any]) -> RrwebEvent:
        return {
            "type": 2,
            "timestamp": self.tick(),
            "data": {"node": root, "initialOffset": {"top": 0, "left": 0}},
        }

    def add_node(self, parent_id: int, node: dict[str, Any]) -> RrwebEvent:
        """A mutation adding ``node`` under ``parent_id``, applied to the page as well."""
        parent = self.dom_nodes.get(parent_id)
        if parent is not None:
            added = copy.deepcopy(node)
            parent.setdefault("childNodes", []).append(added)
            self.dom_nodes.update((n["id"], n) for n in _walk(added))
        return self.mutation(adds=[{"parentId": parent_id, "nextId": None, "node": node}])

    def replace_node(self, node_id: int, node: dict[str, Any]) -> RrwebEvent | None:
        """One mutation removing ``node_id`` and adding ``node`` in its place."""
        parent = next(
            (n for n in self.dom_nodes.values()
             if any(c.get("id") == node_id for c in n.get("childNodes", []))),
            None,
        )
        if parent is None:
            return None
        parent["childNodes"] = [
            copy.deepcopy(node) if c.get("id") == node_id else c for c in parent["childNodes"]
        ]
        self.dom_nodes.pop(node_id, None)
        self.dom_nodes[node["id"]] = next(
            c for c in parent["childNodes"] if c.get("id") == node["id"]
        )
        return self.mutation(
            removes=[{"parentId": parent["id"], "id": node_id}],
            adds=[{"parentId": parent["id"], "nextId": None, "node": node}],
        )

    def mark_later(self, node_id: int, mark: dict[str, Any]) -> RrwebEvent:
        """A mark added to an element whose descendants exist: they count as marked from now."""
        element = self.dom_nodes.get(node_id)
        below = {n["id"] for n in _walk(element)} if element is not None else {node_id}
        ignore_only = mark.get("class") == "rr-ignore"
        for node in sorted(below):
            if node in self.plain_inputs:
                self.plain_inputs.remove(node)
                if ignore_only:
                    self.ignored_inputs.append(node)
                    self.ignored_ids.add(node)
                else:
                    self.masked_inputs.append(node)
            if ignore_only:
                continue
            if node in self.plain_texts:
                self.plain_texts.remove(node)
                self.masked_texts.append(node)
            if node in self.plain_elements:
                self.plain_elements.remove(node)
                self.masked_elements.append(node)
        return self.change_attributes(node_id, mark)

    def change_attributes(self, node_id: int, attributes: dict[str, Any]) -> RrwebEvent:
        """An attribute mutation, applied to the page as well."""
        node = self.dom_nodes.get(node_id)
        if node is not None:
            node["attributes"].update(attributes)
        return self.mutation(attributes=[{"id": node_id, "attributes": dict(attributes)}])

    def incremental(self, data: dict[str, Any]) -> RrwebEvent:
        return {"type": 3, "timestamp": self.tick(), "data": data}

    def typing(self, node_id: int, text: str) -> RrwebEvent:
        return self.incremental({"source": 5, "id": node_id, "text": text, "isChecked": False})

    def mutation(self, **parts: Any) -> RrwebEvent:
        data: dict[str, Any] = {
            "source": 0,
            "texts": [],
            "attributes": [],
            "removes": [],
            "adds": [],
        }
        data.update(parts)
        return self.incremental(data)

    def action(self, name: str) -> RrwebEvent | None:
        pick = self.rng.choice
        if name == "type_sensitive" and self.sensitive_inputs:
            return self.typing(pick(self.sensitive_inputs), self.secret())
        if name == "type_plain" and self.plain_inputs:
            return self.typing(pick(self.plain_inputs), self.typed(False))
        if name == "type_masked" and self.masked_inputs:
            return self.typing(pick(self.masked_inputs), self.secret())
        if name == "type_blocked" and self.blocked_nodes:
            return self.typing(pick(self.blocked_nodes), self.secret())
        if name == "type_ignored" and self.ignored_inputs:
            return self.typing(pick(self.ignored_inputs), self.secret())
        if name == "type_unknown":
            return self.typing(self.next_id + 10_000, self.secret())
        if name == "text_masked" and self.masked_texts:
            return self.mutation(
                texts=[{"id": pick(self.masked_texts), "value": self.secret_sentence()}]
            )
        if name == "text_blocked" and self.blocked_ids:
            return self.mutation(
                texts=[{"id": pick(sorted(self.blocked_ids)), "value": self.secret_sentence()}]
            )
        if name == "text_pii" and self.plain_texts:
            return self.mutation(texts=[{"id": pick(self.plain_texts), "value": self.pii()}])
        if name == "add_masked" and self.masked_elements:
            return self.add_node(pick(self.masked_elements), self.subtree("masked", 2))
        if name == "add_blocked" and self.blocked_nodes:
            return self.add_node(pick(self.blocked_nodes), self.subtree("blocked", 2))
        if name == "add_plain" and self.plain_elements:
            return self.add_node(pick(self.plain_elements), self.subtree("plain", 1))
        if name == "value_sensitive" and self.sensitive_inputs:
            return self.change_attributes(pick(self.sensitive_inputs), {"value": self.secret()})
        if name == "title_masked" and self.masked_elements:
            return self.change_attributes(
                pick(self.masked_elements), {"title": self.secret(), "aria-label": self.secret()}
            )
        if name == "flip_to_password" and self.plain_inputs:
            node_id = pick(self.plain_inputs)
            self.plain_inputs.remove(node_id)
            self.sensitive_inputs.append(node_id)
            self.password_like.append(node_id)
            return self.change_attributes(node_id, {"type": "password"})
        if name == "mark_mask_later" and self.plain_inputs:
            node_id = pick(self.plain_inputs)
            self.plain_inputs.remove(node_id)
            self.sensitive_inputs.append(node_id)
            marker = pick(({"class": "rr-mask"}, {"data-recording-ignore": "mask"}))
            return self.change_attributes(node_id, marker)
        if name == "late_mark" and self.plain_elements:
            mark = pick(
                (
                    {"class": "rr-mask"},
                    {"data-recording-ignore": "mask"},
                    {"class": "box private-x"},
                    {"data-private": ""},
                    {"class": "rr-ignore"},
                )
            )
            return self.mark_later(pick(self.plain_elements), mark)
        if name == "replace_password" and self.password_like:
            # a show-password toggle that swaps the field for a new type=text input
            old_id = pick(self.password_like)
            old = self.dom_nodes.get(old_id)
            if old is None:
                return None
            attrs = {k: v for k, v in old["attributes"].items() if k in ("name", "id")}
            new_node, new_id = self.element(
                "input", {"type": "text", **attrs, "value": self.secret()}, "plain", 3, kids=False
            )
            event = self.replace_node(old_id, new_node)
            if event is not None:
                self.password_like.remove(old_id)
                self.password_like.append(new_id)
                if old_id in self.sensitive_inputs:
                    self.sensitive_inputs.remove(old_id)
                self.sensitive_inputs.append(new_id)
            return event
        if name == "show_password" and self.sensitive_inputs:
            # "show password": the field turns into a text field; it stays sensitive
            return self.change_attributes(pick(self.sensitive_inputs), {"type": "text"})
        if name == "checkout" and self.dom:
            # rrweb's periodic full snapshot of the same page: same ids, current attributes
            return self.full_snapshot(copy.deepcopy(self.dom))
        if name == "custom":
            payload = {"user": self.email(), "items": [{"note": self.pii()}, 3, None]}
            return {
                "type": 5,
                "timestamp": self.tick(),
                "data": {"tag": "checkout", "payload": payload},
            }
        if name == "console":
            payload = {
                "level": "log",
                "trace": ["app.js:1:2"],
                "payload": [f'"{self.pii()}"', f'"{self.email()}"'],
            }
            return {
                "type": 6,
                "timestamp": self.tick(),
                "data": {"plugin": "rrweb/console@1", "payload": payload},
            }
        if name == "log":
            return self.incremental(
                {"source": 11, "level": "warn", "trace": [], "payload": [self.pii()]}
            )
        if name == "custom_secrets":
            return {
                "type": 5,
                "timestamp": self.tick(),
                "data": {"tag": "app.state", "payload": self.secret_payload()},
            }
        if name == "console_secrets":
            payload = {
                "level": "log",
                "trace": ["app.js:1:2"],
                "payload": [orjson.dumps(self.secret_payload()).decode(), self.known_token()],
            }
            return {
                "type": 6,
                "timestamp": self.tick(),
                "data": {"plugin": "rrweb/console@1", "payload": payload},
            }
        if name == "meta_secret":
            return {
                "type": 4,
                "timestamp": self.tick(),
                "data": {"href": self.secret_url(), "width": 800, "height": 600},
            }
        if name == "network":
            payload = {"requests": [{"url": "https://api.example/x", "body": self.secret()}]}
            return {
                "type": 6,
                "timestamp": self.tick(),
                "data": {"plugin": "rrweb/network@1", "payload": payload},
            }
        if name == "meta":
            href = f"https://shop.example/?code={self.secret()}&x=1"
            return {
                "type": 4,
                "timestamp": self.tick(),
                "data": {"href": href, "width": 800, "height": 600},
            }
        if name == "mouse":
            return self.incremental(
                {"source": 1, "positions": [{"x": 1, "y": 2, "id": 1, "timeOffset": 0}]}
            )
        if name == "consent":
            granted = self.draw(st.booleans())
            return {
                "type": 5,
                "timestamp": self.tick(),
                "data": {"tag": "replaypipe.consent", "payload": {"granted": granted}},
            }
        return None


SUBTREE_KINDS = (
    "text",
    "container",
    "masked",
    "vault",
    "blocked",
    "sensitive_input",
    "plain_input",
    "ignored_input",
    "textarea",
    "select",
    "editable",
    "pii_text",
    "link",
    "secret_link",
    "secret_attribute",
    "style",
    "shadow",
    "iframe",
)
ACTIONS = (
    "type_sensitive",
    "type_plain",
    "type_masked",
    "type_blocked",
    "type_ignored",
    "type_unknown",
    "text_masked",
    "text_blocked",
    "text_pii",
    "add_masked",
    "add_blocked",
    "add_plain",
    "value_sensitive",
    "title_masked",
    "flip_to_password",
    "mark_mask_later",
    "show_password",
    "late_mark",
    "late_mark",
    "replace_password",
    "checkout",
    "custom",
    "console",
    "log",
    "network",
    "custom_secrets",
    "console_secrets",
    "meta_secret",
    "meta",
    "mouse",
    "consent",
)


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(current.get("childNodes", []))
    return out


@st.composite
def scenarios(
    draw: Draw[Any], *, consent_modes: tuple[ConsentMode, ...] = CONSENT_MODES
) -> Scenario:
    """A random session with secrets placed only where the rules must hide them."""
    record_inputs = draw(st.booleans())
    consent_mode: ConsentMode = draw(st.sampled_from(consent_modes))
    site = SiteSettings(
        site_id="prop",
        record_inputs=record_inputs,
        consent_mode=consent_mode,
        mask_text_selectors=MASK_SELECTORS,
        block_selectors=BLOCK_SELECTORS,
        ignore_input_selectors=IGNORE_SELECTORS,
    )
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    builder = _SessionBuilder(draw, rng, record_inputs)
    events: list[RrwebEvent] = []
    if draw(st.booleans()):
        events.append(builder.action("meta") or {})
    events.append(builder.page())
    for name in draw(st.lists(st.sampled_from(ACTIONS), min_size=4, max_size=30)):
        if name == "consent" and consent_mode == "none":
            continue
        event = builder.action(name)
        if event is not None:
            events.append(event)
    consent = draw(st.sampled_from((None, True, False)))
    return Scenario(
        site=site,
        consent=consent,
        events=events,
        secrets=builder.secrets,
        blocked_roots=builder.blocked_roots,
        blocked_ids=builder.blocked_ids,
        ignored_ids=builder.ignored_ids,
    )
