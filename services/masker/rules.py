"""The masking rules: pure functions over rrweb event dicts.

No Kafka, no faust here. The faust app (``services.masker.app``) and the offline
``replaypipe mask`` command both call :func:`mask_batch` with the session's state.

How it works, in one paragraph: every node the masker sees (full snapshot,
mutation adds) gets a small integer of *bits* saying what it is for masking
(blocked, text-masked, sensitive input, input-ignored, form text, CSS/script
text) plus which descendant-selector prefixes its ancestors matched. Bits are
inherited from the parent and stored per node id in a :class:`SessionNodeIndex`
(runs of consecutive ids), which is all the per-session state besides consent.
Later events that carry only a node id (inputs, text/attribute mutations) are
masked by looking the id up; an id the masker never saw is masked
conservatively. docs/masking.md describes the rules for users.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from services.masker.detectors import Scrubber, mask_text
from services.masker.node_index import SessionNodeIndex
from services.masker.selectors import (
    Selector,
    compile_selectors,
    compound_matches,
    compound_may_match_change,
)
from services.shared.envelope import RrwebEvent
from services.shared.site_settings import SiteSettings

__all__ = [
    "CONSENT_EVENT_TAG",
    "DEFAULT_SENSITIVE_NAMES",
    "MaskPolicy",
    "MaskResult",
    "SessionMaskState",
    "mask_batch",
    "mask_text",
]

# --- rrweb constants -------------------------------------------------------

EVENT_DOM_CONTENT_LOADED = 0
EVENT_LOAD = 1
EVENT_FULL_SNAPSHOT = 2
EVENT_INCREMENTAL = 3
EVENT_META = 4
EVENT_CUSTOM = 5
EVENT_PLUGIN = 6

SOURCE_MUTATION = 0
SOURCE_INPUT = 5
SOURCE_CANVAS = 9
SOURCE_LOG = 11
# Sources whose payload is positions, ids, CSS or media state: no visitor text.
PASS_THROUGH_SOURCES: Final = frozenset({1, 2, 3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 16})

NODE_DOCUMENT = 0
NODE_ELEMENT = 2
NODE_TEXT = 3
NODE_CDATA = 4
NODE_COMMENT = 5

CONSOLE_PLUGIN = "rrweb/console@1"
SEQUENTIAL_ID_PLUGIN = "rrweb/sequential-id@1"
CONSENT_EVENT_TAG = "replaypipe.consent"
SCRIPT_PLACEHOLDER = "SCRIPT_PLACEHOLDER"  # what rrweb itself records for script text

# --- what counts as sensitive ------------------------------------------------

# Fields whose name or id contains one of these are always masked. Names of 4+
# characters match as substrings of the name with separators removed
# ("credit-card-number" contains "card"); shorter ones must be a whole word
# ("cvv2", "user_ssn") so that "pin" does not match "shipping".
DEFAULT_SENSITIVE_NAMES: Final[tuple[str, ...]] = (
    "card",
    "ccnum",
    "cvv",
    "cvc",
    "csc",
    "cvn",
    "iban",
    "ssn",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "otp",
    "pin",
    "securitycode",
    "accountnumber",
    "routing",
    "taxid",
)
SENSITIVE_AUTOCOMPLETE: Final = frozenset({"one-time-code", "current-password", "new-password"})
# autocomplete tokens starting with "cc-" (cc-number, cc-csc, cc-exp*, cc-name, ...)
SENSITIVE_AUTOCOMPLETE_PREFIX = "cc-"

# Attributes that carry human-readable text: masked like text inside masked subtrees.
TEXT_ATTRIBUTES: Final = frozenset(
    {"placeholder", "title", "alt", "label", "summary", "srcdoc", "content", "abbr"}
)
URL_ATTRIBUTES: Final = frozenset(
    {
        "href",
        "src",
        "action",
        "formaction",
        "srcset",
        "poster",
        "data",
        "cite",
        "background",
        "ping",
        "longdesc",
        "manifest",
        "xlink:href",
        "imagesrcset",
    }
)
# Never scrubbed: CSS (a regex over CSS breaks replays) and the masker's own marks.
UNTOUCHED_ATTRIBUTES: Final = frozenset({"style", "_cssText", "data-recording-ignore"})
# What a blocked element keeps, as rrweb does for rr-block: its box, nothing inside.
PLACEHOLDER_ATTRIBUTES: Final = ("class", "style", "width", "height", "rr_width", "rr_height")
# Keys of unknown event shapes whose string values are structure, not content.
STRUCTURAL_KEYS: Final = frozenset(
    {"type", "source", "tag", "plugin", "level", "tagName", "rootId", "nodeType", "property"}
)

# --- node bits -----------------------------------------------------------------

F_BLOCK: Final = 1 << 0  # blocked subtree: nothing inside is kept
F_MASK: Final = 1 << 1  # text, text attributes and input values masked
F_MASK_INPUT: Final = 1 << 2  # input values masked (sensitive field or inside one)
F_IGNORE: Final = 1 << 3  # input events dropped, values masked
F_INPUT_TEXT: Final = 1 << 4  # text that is form content (textarea, select, contenteditable)
F_STYLE_ELEMENT: Final = 1 << 5
F_SCRIPT_ELEMENT: Final = 1 << 6
F_CSS_TEXT: Final = 1 << 7
F_SCRIPT_TEXT: Final = 1 << 8
NOT_INHERITED: Final = F_STYLE_ELEMENT | F_SCRIPT_ELEMENT | F_CSS_TEXT | F_SCRIPT_TEXT
CONTEXT_SHIFT: Final = 10
FLAG_BITS: Final = (1 << CONTEXT_SHIFT) - 1
# Keeps stored ints JSON-safe (< 2**53): selectors beyond this ignore their ancestors.
MAX_CONTEXT_BITS: Final = 40
# A node the masker never saw: mask its text and values, but do not drop it.
UNKNOWN_NODE: Final = F_MASK | F_MASK_INPUT
# Upper bound on stored runs per session; older nodes become unknown (masked).
MAX_NODE_RUNS: Final = 10_000

STATE_VERSION = 2
CONSENT_PENDING = "pending"
CONSENT_GRANTED = "granted"
CONSENT_WITHDRAWN = "withdrawn"
CONSENT_NOT_REQUIRED = "not_required"

_CAMEL_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(slots=True)
class SessionMaskState:
    """What the masker remembers about one session between batches.

    ``nodes`` maps node ids to masking bits; ``consent`` is pending, granted or
    withdrawn; ``selector_key`` fingerprints the selectors the stored bits were
    computed with. Round-trips through JSON via :meth:`to_dict` / :meth:`from_dict`.
    """

    nodes: SessionNodeIndex = field(default_factory=SessionNodeIndex)
    consent: str = CONSENT_PENDING
    selector_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the faust table."""
        return {
            "v": STATE_VERSION,
            "n": self.nodes.to_list(),
            "c": self.consent,
            "s": self.selector_key,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> SessionMaskState:
        """Inverse of :meth:`to_dict`; None, an older version or garbage gives a fresh state.

        A fresh state knows no node, so everything id-addressed is masked until
        the next full snapshot: losing state never unmasks anything.
        """
        if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
            return cls()
        nodes = doc.get("n")
        consent = doc.get("c")
        selector_key = doc.get("s")
        return cls(
            nodes=SessionNodeIndex.from_list(nodes if isinstance(nodes, list) else []),
            consent=consent if consent in (CONSENT_GRANTED, CONSENT_WITHDRAWN) else CONSENT_PENDING,
            selector_key=selector_key if isinstance(selector_key, str) else "",
        )


@dataclass(slots=True)
class MaskResult:
    """Masked events plus counts of what each rule masked (for metrics).

    ``consent_state`` is the session's consent after the batch (``not_required``
    for sites with consent mode ``none``); ``dropped`` counts input events that
    were not published (consent, blocked or ignored targets, masked canvases).
    """

    events: list[RrwebEvent]
    counts: Counter[str] = field(default_factory=Counter)
    consent_state: str = CONSENT_NOT_REQUIRED
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SelectorRule:
    """A compiled site selector and the bit it sets on matching elements."""

    selector: Selector
    flag: int
    context_base: int  # first context bit of its ancestor prefixes; -1: ancestors ignored


@dataclass(frozen=True, slots=True)
class MaskPolicy:
    """Everything :func:`mask_batch` needs from a site's settings, precompiled."""

    record_inputs: bool
    consent_mode: str
    long_sensitive_names: tuple[str, ...]
    short_sensitive_names: frozenset[str]
    selector_rules: tuple[SelectorRule, ...]
    scrubber: Scrubber
    selector_key: str
    problems: tuple[str, ...] = ()

    @classmethod
    def from_site(
        cls, site: SiteSettings, sensitive_names: Sequence[str] | None = None
    ) -> MaskPolicy:
        """Build (cached) from site settings and the deployment's sensitive-name list."""
        names = tuple(DEFAULT_SENSITIVE_NAMES if sensitive_names is None else sensitive_names)
        return _policy_for(
            site.record_inputs,
            site.consent_mode,
            tuple(site.mask_text_selectors),
            tuple(site.block_selectors),
            tuple(site.ignore_input_selectors),
            tuple(site.pii_detectors),
            tuple(site.scrub_query_params),
            names,
        )

    # --- element classification ---------------------------------------------

    def name_is_sensitive(self, value: str) -> bool:
        """True if a field name/id matches the sensitive-name list."""
        return _name_is_sensitive(value, self.long_sensitive_names, self.short_sensitive_names)

    def field_is_sensitive(self, attrs: dict[str, Any]) -> bool:
        """Password type, card/OTP/password autocomplete, or a sensitive name or id."""
        field_type = attrs.get("type")
        if isinstance(field_type, str) and field_type.lower() == "password":
            return True
        autocomplete = attrs.get("autocomplete")
        if isinstance(autocomplete, str) and autocomplete:
            for token in autocomplete.lower().split():
                if token in SENSITIVE_AUTOCOMPLETE:
                    return True
                if token.startswith(SENSITIVE_AUTOCOMPLETE_PREFIX):
                    return True
        for key in ("name", "id"):
            value = attrs.get(key)
            if isinstance(value, str) and value and self.name_is_sensitive(value):
                return True
        return False

    def attribute_marks(self, attrs: dict[str, Any]) -> int:
        """Marks an element's own attributes carry, whether snapshotted or changed later:
        rrweb classes, ``data-recording-ignore``, sensitive fields, contenteditable."""
        bits = 0
        cls = attrs.get("class")
        if isinstance(cls, str) and "rr-" in cls:
            bits |= _class_marks(cls)
        marker = attrs.get("data-recording-ignore")
        if marker is not None:
            bits |= _recording_ignore_marks(marker)
        if self.field_is_sensitive(attrs):
            bits |= F_MASK_INPUT
        editable = attrs.get("contenteditable")
        if editable is not None and editable != "false":
            bits |= F_INPUT_TEXT
        return bits

    def element_value(self, tag: str, attrs: dict[str, Any], parent_value: int) -> int:
        """Bits of an element (own marks + inherited) with its children's selector context."""
        bits = (parent_value & ~NOT_INHERITED & FLAG_BITS) | self.attribute_marks(attrs)
        if tag == "textarea" or tag == "select":
            bits |= F_INPUT_TEXT
        elif tag == "style":
            bits |= F_STYLE_ELEMENT
        elif tag == "script":
            bits |= F_SCRIPT_ELEMENT
        context = parent_value >> CONTEXT_SHIFT
        child_context = context
        for rule in self.selector_rules:
            parts = rule.selector.parts
            last = len(parts) - 1
            base = rule.context_base
            if base < 0:
                if compound_matches(parts[last], tag, attrs):
                    bits |= rule.flag
                continue
            if (last == 0 or (context >> (base + last - 1)) & 1) and compound_matches(
                parts[last], tag, attrs
            ):
                bits |= rule.flag
            for k in range(last):
                if (k == 0 or (context >> (base + k - 1)) & 1) and compound_matches(
                    parts[k], tag, attrs
                ):
                    child_context |= 1 << (base + k)
        return bits | (child_context << CONTEXT_SHIFT)

    def change_marks(self, changed: dict[str, Any], value: int) -> int:
        """Marks an attribute mutation adds to an element (marks are never removed)."""
        bits = self.attribute_marks(changed)
        if self.selector_rules:
            context = value >> CONTEXT_SHIFT
            for rule in self.selector_rules:
                parts = rule.selector.parts
                last = len(parts) - 1
                base = rule.context_base
                if base >= 0 and last > 0 and not (context >> (base + last - 1)) & 1:
                    continue
                if compound_may_match_change(parts[last], changed):
                    bits |= rule.flag
        return bits


@lru_cache(maxsize=256)
def _policy_for(
    record_inputs: bool,
    consent_mode: str,
    mask_text_selectors: tuple[str, ...],
    block_selectors: tuple[str, ...],
    ignore_input_selectors: tuple[str, ...],
    pii_detectors: tuple[str, ...],
    scrub_query_params: tuple[str, ...],
    sensitive_names: tuple[str, ...],
) -> MaskPolicy:
    rules: list[SelectorRule] = []
    problems: list[str] = []
    next_bit = 0
    for texts, flag in (
        (block_selectors, F_BLOCK),
        (mask_text_selectors, F_MASK),
        (ignore_input_selectors, F_IGNORE),
    ):
        selectors, found = compile_selectors(texts)
        problems.extend(found)
        for selector in selectors:
            needed = len(selector.parts) - 1
            if needed and next_bit + needed <= MAX_CONTEXT_BITS:
                rules.append(SelectorRule(selector, flag, next_bit))
                next_bit += needed
            else:
                rules.append(SelectorRule(selector, flag, 0 if not needed else -1))
    key_source = "\x1f".join(
        [
            "\x1e".join(block_selectors),
            "\x1e".join(mask_text_selectors),
            "\x1e".join(ignore_input_selectors),
        ]
    )
    normalised = [_NON_ALNUM.sub("", n.lower()) for n in sensitive_names]
    return MaskPolicy(
        record_inputs=record_inputs,
        consent_mode=consent_mode,
        long_sensitive_names=tuple(n for n in normalised if len(n) >= 4),
        short_sensitive_names=frozenset(n for n in normalised if 0 < len(n) < 4),
        selector_rules=tuple(rules),
        scrubber=Scrubber.build(pii_detectors, scrub_query_params),
        selector_key=hashlib.sha1(key_source.encode()).hexdigest()[:12],
        problems=tuple(problems),
    )


@lru_cache(maxsize=4096)
def _name_is_sensitive(
    value: str, long_names: tuple[str, ...], short_names: frozenset[str]
) -> bool:
    compact = _NON_ALNUM.sub("", value.lower())
    if any(name in compact for name in long_names):
        return True
    if short_names:
        return any(word.lower() in short_names for word in _CAMEL_WORDS.findall(value))
    return False


def _class_marks(cls: str) -> int:
    bits = 0
    tokens = cls.split()
    if "rr-block" in tokens:
        bits |= F_BLOCK
    if "rr-mask" in tokens:
        bits |= F_MASK
    if "rr-ignore" in tokens:
        bits |= F_IGNORE
    return bits


def _recording_ignore_marks(marker: object) -> int:
    # Smartsupp: "events" records nothing inside, "mask" masks typed input. Any
    # other value is an unknown intent to hide something: mask.
    if isinstance(marker, str) and marker.strip().lower() == "events":
        return F_BLOCK
    return F_MASK


FORM_FIELD_TAGS: Final = frozenset({"input", "textarea", "select"})


def mask_batch(
    events: list[RrwebEvent],
    state: SessionMaskState,
    site: SiteSettings,
    consent: bool | None = None,
    *,
    sensitive_names: Sequence[str] | None = None,
) -> MaskResult:
    """Mask one batch of a session's events in order, updating ``state`` in place.

    ``consent`` is the envelope's consent signal. It applies from the start of
    the batch, unless the batch itself carries ``replaypipe.consent`` custom
    events: those switch consent at their position and the envelope value
    applies after the batch. ``sensitive_names`` overrides
    :data:`DEFAULT_SENSITIVE_NAMES`. Events are mutated in place; the returned
    list holds the kept events, in order.
    """
    policy = MaskPolicy.from_site(site, sensitive_names)
    return _BatchMasker(policy, state).run(events, consent)


class _BatchMasker:
    """One batch's masking pass: the policy, the session state and the counters."""

    __slots__ = ("consent_mask", "counts", "dropped", "index", "policy", "scrubber", "state")

    def __init__(self, policy: MaskPolicy, state: SessionMaskState) -> None:
        self.policy = policy
        self.state = state
        self.index = state.nodes
        self.scrubber = policy.scrubber
        self.counts: Counter[str] = Counter()
        self.dropped = 0
        self.consent_mask = False  # mask_until_consent, before consent
        if state.selector_key != policy.selector_key:
            # Bits above FLAG_BITS index the old selector list: drop them. Marks
            # already set stay (never unmask).
            if len(self.index):
                self.index.map_values(FLAG_BITS)
            state.selector_key = policy.selector_key

    # --- batch and consent -------------------------------------------------------

    def run(self, events: list[RrwebEvent], consent: bool | None) -> MaskResult:
        mode = self.policy.consent_mode
        state = self.state
        if mode == "none":
            out = [e for e in events if self._mask_event(e)]
            return self._result(out, CONSENT_NOT_REQUIRED)
        in_stream = any(_consent_signal(e) is not None for e in events)
        if consent is not None and not in_stream:
            state.consent = CONSENT_GRANTED if consent else CONSENT_WITHDRAWN
        out = []
        for event in events:
            signal = _consent_signal(event)
            if signal is not None:
                state.consent = CONSENT_GRANTED if signal else CONSENT_WITHDRAWN
                self.consent_mask = False
                self._scrub_leaves(event.get("data"))
                out.append(event)
                continue
            before_consent = state.consent != CONSENT_GRANTED
            if mode == "required" and before_consent:
                # Nothing is kept, but snapshots and mutations still feed the node
                # index so masking is right once consent arrives.
                if _feeds_node_index(event):
                    self._mask_event(event)
                self.dropped += 1
                self.counts["consent_drop"] += 1
                continue
            self.consent_mask = mode == "mask_until_consent" and before_consent
            if self._mask_event(event):
                out.append(event)
        if consent is not None and in_stream:
            state.consent = CONSENT_GRANTED if consent else CONSENT_WITHDRAWN
        return self._result(out, state.consent)

    def _result(self, out: list[RrwebEvent], consent_state: str) -> MaskResult:
        trimmed = self.index.trim(MAX_NODE_RUNS)
        if trimmed:
            self.counts["state_trimmed"] += trimmed
        return MaskResult(out, self.counts, consent_state, self.dropped)

    def _drop(self, reason: str) -> bool:
        self.dropped += 1
        self.counts[reason] += 1
        return False

    # --- events ------------------------------------------------------------------

    def _mask_event(self, event: Any) -> bool:
        """Mask one event in place; False if it must not be published."""
        if not isinstance(event, dict):
            return self._drop("malformed_event")
        data = event.get("data")
        etype = event.get("type")
        if etype == EVENT_INCREMENTAL and isinstance(data, dict):
            source = data.get("source")
            if source in PASS_THROUGH_SOURCES:
                return True
            if source == SOURCE_MUTATION:
                self._mask_mutation(data)
                return True
            if source == SOURCE_INPUT:
                return self._mask_input(data)
            if source == SOURCE_LOG:
                self._scrub_leaves(data)
                return True
            if source == SOURCE_CANVAS:
                return self._mask_canvas(data)
        elif etype == EVENT_FULL_SNAPSHOT and isinstance(data, dict):
            node = data.get("node")
            if isinstance(node, dict):
                # rrweb keeps a node's id across the full snapshots of one page (a
                # checkout) and starts again at 1 on a new page, so only the mark that
                # can be lost without a trace is carried over: a sensitive input (a
                # password shown as text by now) stays masked at the same id.
                # On a new page this may over-mask an input at the same id, never leak.
                previous = self.index.take()
                self._mask_tree(node, 0, sticky=False, previous=previous)
                return True
        elif etype == EVENT_META and isinstance(data, dict):
            href = data.get("href")
            if isinstance(href, str):
                data["href"] = self.scrubber.scrub_url(href, self.counts)
            return True
        elif etype == EVENT_CUSTOM and isinstance(data, dict):
            self._scrub_leaves(data)
            return True
        elif etype == EVENT_PLUGIN and isinstance(data, dict):
            plugin = data.get("plugin")
            if plugin in (CONSOLE_PLUGIN, SEQUENTIAL_ID_PLUGIN):
                self._scrub_leaves(data)
            else:
                # network and other plugins carry bodies, headers, URLs: mask them
                self.counts["unknown_event"] += 1
                self._mask_leaves(data)
            return True
        elif etype in (EVENT_DOM_CONTENT_LOADED, EVENT_LOAD) and (data is None or data == {}):
            return True
        # An event shape this masker does not know: keep it, text masked.
        self.counts["unknown_event"] += 1
        self._mask_leaves(data)
        return True

    def _mask_input(self, data: dict[str, Any]) -> bool:
        value = self.index.get(data.get("id"))
        if value is not None:
            if value & F_BLOCK:
                return self._drop("block")
            if value & F_IGNORE:
                return self._drop("ignore")
        text = data.get("text")
        if isinstance(text, str):
            reason = self._input_mask_reason(value)
            if reason is not None:
                data["text"] = mask_text(text)
                self.counts[reason] += 1
            else:
                data["text"] = self.scrubber.scrub(text, self.counts)
        return True

    def _mask_canvas(self, data: dict[str, Any]) -> bool:
        value = self.index.get(data.get("id"))
        if value is not None and value & F_BLOCK:
            return self._drop("block")
        if value is None or value & F_MASK or self.consent_mask:
            # drawn pixels of a masked canvas are content: not kept
            return self._drop("mask")
        # Text drawn in the clear is visible text: PII-scanned like any other.
        stack: list[Any] = [data]
        while stack:
            current = stack.pop()
            if isinstance(current, dict):
                if current.get("property") in ("fillText", "strokeText"):
                    args = current.get("args")
                    if isinstance(args, list) and args and isinstance(args[0], str):
                        args[0] = self.scrubber.scrub(args[0], self.counts)
                stack.extend(v for v in current.values() if isinstance(v, dict | list))
            elif isinstance(current, list):
                stack.extend(v for v in current if isinstance(v, dict | list))
        return True

    def _mask_mutation(self, data: dict[str, Any]) -> None:
        index = self.index
        changes = data.get("attributes")
        if isinstance(changes, list) and changes:
            # Marks first, so nodes added in this mutation under a newly marked
            # element inherit them.
            self._apply_change_marks(changes)

        removes = data.get("removes")
        if isinstance(removes, list) and removes:
            # Node ids are never reused by rrweb, so removed nodes stay in the
            # index (forgetting them would fragment the runs and grow the state).
            kept = []
            for remove in removes:
                parent = index.get(remove.get("parentId")) if isinstance(remove, dict) else None
                if parent is not None and parent & F_BLOCK:
                    self.counts["block"] += 1
                else:
                    kept.append(remove)
            if len(kept) != len(removes):
                data["removes"] = kept

        adds = data.get("adds")
        if isinstance(adds, list) and adds:
            kept = []
            for add in adds:
                node = add.get("node") if isinstance(add, dict) else None
                if not isinstance(node, dict):
                    continue
                parent = index.get(add.get("parentId"))
                if parent is None:
                    self.counts["unknown_node"] += 1
                    parent = UNKNOWN_NODE
                if parent & F_BLOCK:
                    self.counts["block"] += 1
                    self._mask_tree(node, parent, sticky=True)  # only remembers the ids
                    continue
                self._mask_tree(node, parent, sticky=True)
                kept.append(add)
            if len(kept) != len(adds):
                data["adds"] = kept

        if isinstance(changes, list) and changes:
            self._apply_change_marks(changes)  # again: for nodes added just now
            kept = []
            for change in changes:
                if not isinstance(change, dict):
                    continue
                value = self._bits_unless_blocked(change.get("id"))
                if value is None:
                    continue
                attrs = change.get("attributes")
                if isinstance(attrs, dict):
                    self._mask_attributes(attrs, value)
                kept.append(change)
            if len(kept) != len(changes):
                data["attributes"] = kept

        texts = data.get("texts")
        if isinstance(texts, list) and texts:
            kept = []
            for text_change in texts:
                if not isinstance(text_change, dict):
                    continue
                value = self._bits_unless_blocked(text_change.get("id"))
                if value is None:
                    continue
                text = text_change.get("value")
                if isinstance(text, str) and text:
                    text_change["value"] = self._mask_text_content(text, value)
                kept.append(text_change)
            if len(kept) != len(texts):
                data["texts"] = kept

    def _bits_unless_blocked(self, node_id: Any) -> int | None:
        """The node's bits for a mutation entry; None (entry dropped) inside a blocked element.

        A node the state does not know is treated as masked, never passed through.
        """
        value = self.index.get(node_id)
        if value is None:
            self.counts["unknown_node"] += 1
            return UNKNOWN_NODE
        if value & F_BLOCK:
            self.counts["block"] += 1
            return None
        return int(value)

    def _apply_change_marks(self, changes: list[Any]) -> None:
        index = self.index
        policy = self.policy
        for change in changes:
            if not isinstance(change, dict):
                continue
            node_id = change.get("id")
            attrs = change.get("attributes")
            value = index.get(node_id)
            if value is None or not isinstance(attrs, dict) or not isinstance(node_id, int):
                continue
            marks = policy.change_marks(attrs, value)
            if marks & ~value:
                index.set(node_id, value | marks)

    # --- nodes ---------------------------------------------------------------------

    def _mask_tree(
        self,
        root: dict[str, Any],
        parent_value: int,
        *,
        sticky: bool,
        previous: SessionNodeIndex | None = None,
    ) -> None:
        """Mask a serialised subtree in place and record its nodes' bits.

        ``sticky``: union with bits already known for the same id (rrweb re-adds a
        moved node under its old id; a field that was a password stays masked).
        ``previous``: the index before a new full snapshot; a form field at an id
        that was a sensitive input there stays one.
        """
        index = self.index
        policy = self.policy
        stack: list[tuple[dict[str, Any], int]] = [(root, parent_value)]
        while stack:
            node, parent = stack.pop()
            node_id = node.get("id")
            node_type = node.get("type")
            children = node.get("childNodes")
            if parent & F_BLOCK:
                # inside a blocked element: the node is gone from the output, only
                # its id is remembered so later events on it are dropped
                value = parent & ~NOT_INHERITED
            elif node_type == NODE_ELEMENT:
                tag = node.get("tagName")
                tag = tag.lower() if isinstance(tag, str) else ""
                attrs = node.get("attributes")
                if not isinstance(attrs, dict):
                    attrs = {}
                value = policy.element_value(tag, attrs, parent)
                if (
                    previous is not None
                    and (tag in FORM_FIELD_TAGS or value & F_INPUT_TEXT)
                    and (previous.get(node_id) or 0) & F_MASK_INPUT
                ):
                    value |= F_MASK_INPUT
                if sticky:
                    old = index.get(node_id)
                    if old is not None:
                        value |= old & FLAG_BITS
                if value & F_BLOCK:
                    self.counts["block"] += 1
                    node["attributes"] = {k: attrs[k] for k in PLACEHOLDER_ATTRIBUTES if k in attrs}
                    node["childNodes"] = []
                elif attrs:
                    self._mask_attributes(attrs, value)
            elif node_type in (NODE_TEXT, NODE_CDATA, NODE_COMMENT):
                value = parent & ~NOT_INHERITED
                if parent & F_STYLE_ELEMENT or node.get("isStyle") is True:
                    value |= F_CSS_TEXT
                elif parent & F_SCRIPT_ELEMENT:
                    value |= F_SCRIPT_TEXT
                text = node.get("textContent")
                if isinstance(text, str) and text:
                    node["textContent"] = self._mask_text_content(text, value)
            else:
                value = parent & ~NOT_INHERITED
                if node_type != NODE_DOCUMENT and node_type != 1:
                    # unknown node type: hide its strings, keep its structure
                    self.counts["unknown_node_type"] += 1
                    for key, item in node.items():
                        if isinstance(item, str) and key not in STRUCTURAL_KEYS:
                            node[key] = mask_text(item)
            if isinstance(node_id, int):
                index.set(node_id, value)
            if isinstance(children, list) and children:
                # reversed: pop in document order, so ids arrive ascending and
                # the index appends instead of inserting
                for child in reversed(children):
                    if isinstance(child, dict):
                        stack.append((child, value))

    def _text_masked_reason(self, value: int) -> str | None:
        if self.consent_mask:
            return "consent"
        if value & F_MASK:
            return "mask"
        return None

    def _input_mask_reason(self, value: int | None) -> str | None:
        """Why an input value on a node with these bits is masked; None to keep it."""
        if value is None:
            return "unknown_node"
        if self.consent_mask:
            return "consent"
        if value & F_MASK:
            return "mask"
        if value & F_MASK_INPUT:
            return "sensitive_field"
        if value & F_IGNORE:
            return "ignore"
        if not self.policy.record_inputs:
            return "input"
        return None

    def _mask_text_content(self, text: str, value: int) -> str:
        if value & F_CSS_TEXT:
            return text  # stylesheets stay intact: the replay needs them
        if value & F_SCRIPT_TEXT:
            if text == SCRIPT_PLACEHOLDER:
                return text
            # never executed by the replayer; inline JSON state can hold anything
            self.counts["script"] += 1
            return mask_text(text)
        reason = self._text_masked_reason(value)
        if reason is None and value & F_INPUT_TEXT:
            reason = self._input_mask_reason(value)
        if reason is not None:
            self.counts[reason] += 1
            return mask_text(text)
        return self.scrubber.scrub(text, self.counts)

    def _mask_attributes(self, attrs: dict[str, Any], value: int) -> None:
        scrubber = self.scrubber
        counts = self.counts
        text_reason: str | None = None
        text_reason_known = False
        for name, item in attrs.items():
            if not isinstance(item, str) or not item:
                continue
            if name == "value":
                reason = self._input_mask_reason(value)
                if reason is not None:
                    attrs[name] = mask_text(item)
                    counts[reason] += 1
                else:
                    attrs[name] = scrubber.scrub(item, counts)
            elif name in UNTOUCHED_ATTRIBUTES or name.startswith("rr_"):
                continue
            elif name in URL_ATTRIBUTES:
                attrs[name] = scrubber.scrub_url(item, counts)
            elif name in TEXT_ATTRIBUTES or name.startswith(("data-", "aria-")):
                if not text_reason_known:
                    text_reason = self._text_masked_reason(value)
                    text_reason_known = True
                reason = text_reason
                if reason is None and name == "placeholder" and value & F_MASK_INPUT:
                    reason = "sensitive_field"
                if reason is not None:
                    attrs[name] = mask_text(item)
                    counts[reason] += 1
                else:
                    attrs[name] = scrubber.scrub(item, counts)
            else:
                attrs[name] = scrubber.scrub(item, counts)

    # --- free-form payloads ----------------------------------------------------------

    def _scrub_leaves(self, container: Any) -> None:
        """PII-scan every string leaf (custom events, console logs)."""
        scrubber = self.scrubber
        counts = self.counts
        stack = [container]
        while stack:
            current = stack.pop()
            if isinstance(current, dict):
                for key, item in current.items():
                    if isinstance(item, str):
                        current[key] = scrubber.scrub(item, counts)
                    elif isinstance(item, dict | list):
                        stack.append(item)
            elif isinstance(current, list):
                for pos, item in enumerate(current):
                    if isinstance(item, str):
                        current[pos] = scrubber.scrub(item, counts)
                    elif isinstance(item, dict | list):
                        stack.append(item)

    def _mask_leaves(self, container: Any) -> None:
        """Mask every string leaf except structural keys (unknown event shapes)."""
        stack = [container]
        while stack:
            current = stack.pop()
            if isinstance(current, dict):
                for key, item in current.items():
                    if isinstance(item, str):
                        if key not in STRUCTURAL_KEYS:
                            current[key] = mask_text(item)
                    elif isinstance(item, dict | list):
                        stack.append(item)
            elif isinstance(current, list):
                for pos, item in enumerate(current):
                    if isinstance(item, str):
                        current[pos] = mask_text(item)
                    elif isinstance(item, dict | list):
                        stack.append(item)


def _feeds_node_index(event: RrwebEvent) -> bool:
    etype = event.get("type")
    if etype == EVENT_FULL_SNAPSHOT:
        return True
    data = event.get("data")
    return (
        etype == EVENT_INCREMENTAL
        and isinstance(data, dict)
        and data.get("source") == SOURCE_MUTATION
    )


def _consent_signal(event: Any) -> bool | None:
    """``granted`` of a ``replaypipe.consent`` custom event, None for other events.

    Anything but ``granted: true`` counts as a refusal: when unsure, mask.
    """
    if not isinstance(event, dict) or event.get("type") != EVENT_CUSTOM:
        return None
    data = event.get("data")
    if not isinstance(data, dict) or data.get("tag") != CONSENT_EVENT_TAG:
        return None
    payload = data.get("payload")
    return isinstance(payload, dict) and payload.get("granted") is True
