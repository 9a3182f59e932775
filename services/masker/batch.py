"""The batch walk: one pass over a batch of a session's rrweb events, masking
each in place by the site's policy and the session's node bits.

How it works, in one paragraph: every node the masker sees (full snapshot,
mutation adds) gets its bits (:mod:`services.masker.sensitivity`) from its own
marks, the site's selectors (:class:`~services.masker.policy.MaskPolicy`) and
its parent. Bits are stored per node id in a :class:`SessionNodeIndex` (runs of
consecutive ids), which is all the per-session state besides consent
(:class:`~services.masker.state.SessionMaskState`). Later events that carry
only a node id (inputs, text/attribute mutations) are masked by looking the id
up; an id the masker never saw is masked conservatively. docs/masking.md
describes the rules for users.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.masker.detectors import card_number, looks_secret_value, mask_text
from services.masker.node_index import SessionNodeIndex
from services.masker.node_tree import SnapshotShape
from services.masker.policy import MaskPolicy
from services.masker.rrweb import (
    ASSET_URL_ATTRIBUTES,
    CONSENT_EVENT_TAG,
    CONSOLE_PLUGIN,
    EVENT_CUSTOM,
    EVENT_DOM_CONTENT_LOADED,
    EVENT_FULL_SNAPSHOT,
    EVENT_INCREMENTAL,
    EVENT_LOAD,
    EVENT_META,
    EVENT_PLUGIN,
    FORM_FIELD_TAGS,
    NODE_CDATA,
    NODE_COMMENT,
    NODE_DOCUMENT,
    NODE_ELEMENT,
    NODE_TEXT,
    PASS_THROUGH_SOURCES,
    PLACEHOLDER_ATTRIBUTES,
    SCRIPT_PLACEHOLDER,
    SEQUENTIAL_ID_PLUGIN,
    SOURCE_CANVAS,
    SOURCE_INPUT,
    SOURCE_LOG,
    SOURCE_MUTATION,
    STRUCTURAL_KEYS,
    TEXT_ATTRIBUTES,
    UNTOUCHED_ATTRIBUTES,
    URL_ATTRIBUTES,
)
from services.masker.sensitivity import (
    F_BLOCK,
    F_CSS_TEXT,
    F_IGNORE,
    F_INPUT_TEXT,
    F_MASK,
    F_MASK_INPUT,
    F_SCRIPT_ELEMENT,
    F_SCRIPT_TEXT,
    F_STYLE_ELEMENT,
    FLAG_BITS,
    NOT_INHERITED,
    UNKNOWN_NODE,
    key_is_secret,
    key_is_weak_secret,
)
from services.masker.state import (
    CONSENT_GRANTED,
    CONSENT_NOT_REQUIRED,
    CONSENT_WITHDRAWN,
    MAX_NODE_RUNS,
    SessionMaskState,
    field_fingerprint,
)
from services.shared.envelope import RrwebEvent
from services.shared.site_settings import SiteSettings


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



# The marks every descendant shares with its element (what a mark added later spreads).
INHERITED_MARKS = FLAG_BITS & ~NOT_INHERITED
# Bits that make _mask_text_content do more than scrub a text (CSS, script, masked, form text).
_TEXT_RULE_BITS = F_CSS_TEXT | F_SCRIPT_TEXT | F_MASK | F_INPUT_TEXT

# Inside one event, the clock is read once per this many DOM nodes or JSON containers.
BUDGET_CHECK_EVERY = 4096


class BatchOverBudget(Exception):
    """Masking a batch took longer than its time budget; none of it may be published."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(f"masking took longer than the {budget_s:g} s budget")
        self.budget_s = budget_s


def mask_batch(
    events: list[RrwebEvent],
    state: SessionMaskState,
    site: SiteSettings,
    consent: bool | None = None,
    *,
    sensitive_names: Sequence[str] | None = None,
    budget_s: float | None = None,
) -> MaskResult:
    """Mask one batch of a session's events in order, updating ``state`` in place.

    ``consent`` is the envelope's consent signal. It applies from the start of
    the batch, unless the batch itself carries ``replaypipe.consent`` custom
    events: those switch consent at their position and the envelope value
    applies after the batch. ``sensitive_names`` overrides
    :data:`DEFAULT_SENSITIVE_NAMES`. Events are mutated in place; the returned
    list holds the kept events, in order.

    ``budget_s`` bounds the time the walk may take: past it (checked between
    events and every :data:`BUDGET_CHECK_EVERY` nodes or containers inside one) it
    raises :class:`BatchOverBudget`, leaving the events half masked, so the
    caller must publish none of them. ``state`` may be half updated too.
    """
    policy = MaskPolicy.from_site(site, sensitive_names)
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    return _BatchMasker(policy, state, deadline, budget_s or 0.0).run(events, consent)


class _BatchMasker:
    """One batch's masking pass: the policy, the session state and the counters."""

    __slots__ = (
        "budget_s", "consent_mask", "counts", "deadline", "dropped", "index", "policy",
        "scrubber", "state", "vacated",
    )

    def __init__(
        self,
        policy: MaskPolicy,
        state: SessionMaskState,
        deadline: float | None = None,
        budget_s: float = 0.0,
    ) -> None:
        self.deadline = deadline
        self.budget_s = budget_s
        self.policy = policy
        self.state = state
        self.index = state.nodes
        self.scrubber = policy.scrubber
        self.counts: Counter[str] = Counter()
        self.dropped = 0
        self.consent_mask = False  # mask_until_consent, before consent
        # parents a sensitive field was just removed from (by the mutation being masked)
        self.vacated: set[int] = set()
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
            out = []
            for event in events:
                self._check_budget()
                if self._mask_event(event):
                    out.append(event)
            return self._result(out, CONSENT_NOT_REQUIRED)
        in_stream = any(_consent_signal(e) is not None for e in events)
        if consent is not None and not in_stream:
            state.consent = CONSENT_GRANTED if consent else CONSENT_WITHDRAWN
        out = []
        for event in events:
            self._check_budget()
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
        evicted = self.state.tree.trim()
        if evicted:
            # their place in the tree is forgotten: a later mark might miss them
            self.index.add_bits(evicted, UNKNOWN_NODE)
            self.counts["state_trimmed"] += len(evicted)
        trimmed = self.index.trim(MAX_NODE_RUNS)
        if trimmed:
            self.counts["state_trimmed"] += trimmed
        return MaskResult(out, self.counts, consent_state, self.dropped)

    def _check_budget(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise BatchOverBudget(self.budget_s)

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
                shape = self.state.tree.start_snapshot()
                self._mask_tree(node, 0, sticky=False, previous=previous, shape=shape)
                self.state.tree.end_snapshot()
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
        ticks = 0  # nodes since the clock was last read
        while stack:
            ticks += 1
            if ticks == BUDGET_CHECK_EVERY:
                ticks = 0
                self._check_budget()
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
        tree = self.state.tree
        if isinstance(removes, list) and removes:
            # Node ids are never reused by rrweb, so removed nodes stay in the
            # index (forgetting them would fragment the runs and grow the state).
            kept = []
            for remove in removes:
                if not isinstance(remove, dict):
                    kept.append(remove)
                    continue
                parent_id = remove.get("parentId")
                parent = index.get(parent_id)
                removed_id = remove.get("id")
                tree.remove(removed_id)
                if (index.get(removed_id) or 0) & F_MASK_INPUT and isinstance(parent_id, int):
                    # a show-password toggle may put a new field in its place
                    self.vacated.add(parent_id)
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
                parent_id = add.get("parentId")
                parent = index.get(parent_id)
                if parent is None:
                    self.counts["unknown_node"] += 1
                    parent = UNKNOWN_NODE
                # under a block this only remembers the ids: the add is dropped
                self._mask_tree(node, parent, sticky=True, parent_id=parent_id)
                if parent & F_BLOCK:
                    self.counts["block"] += 1
                    continue
                kept.append(add)
            if len(kept) != len(adds):
                data["adds"] = kept
        self.vacated.clear()

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
            if ("name" in attrs or "id" in attrs) and self._field_name_remembered(attrs):
                marks |= F_MASK_INPUT  # renamed to the name of a former password field
            if marks & F_MASK_INPUT:
                self._remember_field(attrs)
            below, context = (
                policy.change_ancestor_marks(attrs, value) if policy.selector_rules else (0, 0)
            )
            if (marks | context) & ~value:
                index.set(node_id, value | marks | context)
            # From this event on, everything inside the element is marked too,
            # including what was already there (a mark that arrives later).
            inherited = (marks | below) & INHERITED_MARKS & ~value
            if inherited:
                self._mark_descendants(node_id, inherited)

    def _mark_descendants(self, node_id: int, bits: int) -> None:
        """OR a mark just added to ``node_id`` into every node under it."""
        under = self.state.tree.descendants(node_id)
        if under is None:
            # The tree is unknown (older state, oversized snapshot): any known node
            # may be below. All of them are masked; a block masks rather than
            # drops, so the replay keeps its page.
            if bits & F_BLOCK:
                bits = (bits & ~F_BLOCK) | F_MASK
            self.index.add_bits_everywhere(bits)
            self.counts["late_mark"] += 1
            return
        if under:
            self.index.add_bits(under, bits)
            self.counts["late_mark"] += 1

    # --- sensitive fields by name (show-password toggles) ------------------------

    def _remember_field(self, attrs: dict[str, Any]) -> None:
        for key in ("name", "id"):
            name = attrs.get(key)
            if isinstance(name, str) and name:
                self.state.remember_field_name(field_fingerprint(name))

    def _field_name_remembered(self, attrs: dict[str, Any]) -> bool:
        names = self.state.field_names
        if not names:
            return False
        for key in ("name", "id"):
            name = attrs.get(key)
            if isinstance(name, str) and name and field_fingerprint(name) in names:
                return True
        return False

    def _field_value(
        self, value: int, attrs: dict[str, Any], parent: int, parent_id: object
    ) -> int:
        """A form field's bits: sensitive if it takes a sensitive field's place.

        A show-password toggle may replace ``<input type=password>`` by a new
        ``type=text`` input rather than flip ``type``: the new field is sensitive
        if it has the name or id of a sensitive field seen in the session, or is
        added where one was just removed. Its own name and id are remembered
        in turn (not those of fields that only inherit the bit from a container).
        """
        if not value & F_MASK_INPUT and (
            parent_id in self.vacated or self._field_name_remembered(attrs)
        ):
            value |= F_MASK_INPUT
        if value & F_MASK_INPUT and not parent & F_MASK_INPUT:
            self._remember_field(attrs)
        return value

    # --- nodes ---------------------------------------------------------------------

    def _mask_tree(
        self,
        root: dict[str, Any],
        parent_value: int,
        *,
        sticky: bool,
        previous: SessionNodeIndex | None = None,
        shape: SnapshotShape | None = None,
        parent_id: object = None,
    ) -> None:
        """Mask a serialised subtree in place and record its nodes' bits.

        ``sticky``: union with bits already known for the same id (rrweb re-adds a
        moved node under its old id; a field that was a password stays masked).
        ``previous``: the index before a new full snapshot; a form field at an id
        that was a sensitive input there stays one. ``shape``: records the
        snapshot's tree; otherwise (mutation adds under ``parent_id``) each node's
        parent is remembered. Either way a mark added later finds the subtree.
        """
        index = self.index
        policy = self.policy
        tree = self.state.tree
        if shape is not None:
            record_id, record_depth = shape.recorders()
        # (node, parent's bits, depth, parent's id)
        stack: list[tuple[dict[str, Any], int, int, object]] = [
            (root, parent_value, 0, parent_id)
        ]
        ticks = 0  # nodes since the clock was last read
        while stack:
            ticks += 1
            if ticks == BUDGET_CHECK_EVERY:
                ticks = 0
                self._check_budget()
            node, parent, depth, up = stack.pop()
            node_id = node.get("id")
            node_type = node.get("type")
            children = node.get("childNodes")
            if shape is not None:
                record_id(node_id)
                record_depth(depth)
            else:
                tree.add_parent(node_id, up)
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
                if tag in FORM_FIELD_TAGS:
                    value = self._field_value(value, attrs, parent, up)
                if value & F_BLOCK:
                    self.counts["block"] += 1
                    node["attributes"] = {
                        k: attrs[k] for k in PLACEHOLDER_ATTRIBUTES if k in attrs
                    }
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
                        stack.append((child, value, depth + 1, node_id))

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
        if not value & _TEXT_RULE_BITS and not self.consent_mask:
            # fast path: none of the rules below applies, only the scrubber does
            return self.scrubber.scrub(text, self.counts)
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
            elif name == "srcdoc":
                # HTML of an iframe whose document rrweb records (and masks) anyway
                attrs[name] = mask_text(item)
                counts["srcdoc"] += 1
            elif key_is_secret(name) or (key_is_weak_secret(name) and looks_secret_value(item)):
                # data-api-key, data-csrf, x-auth-token: the name says what it holds
                attrs[name] = mask_text(item)
                counts["secret_attribute"] += 1
            elif name == "content" and value & F_MASK_INPUT:
                # <meta name="csrf-token" content=...>: the name makes it sensitive
                attrs[name] = mask_text(item)
                counts["sensitive_field"] += 1
            elif name in URL_ATTRIBUTES:
                attrs[name] = scrubber.scrub_url(
                    item, counts, asset=name in ASSET_URL_ATTRIBUTES
                )
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
                # class and id are read by CSS: a random-looking class is a build hash
                attrs[name] = scrubber.scrub(
                    item, counts, random_tokens=name != "class" and name != "id"
                )

    # --- free-form payloads ----------------------------------------------------------

    def _containers(self, root: Any) -> Iterator[tuple[Any, list[Any]]]:
        """Each container of a payload, depth first, with the stack of those still to walk.

        The caller pushes the children it wants walked onto the stack; the batch's
        time budget is checked every ``BUDGET_CHECK_EVERY`` containers.
        """
        stack = [root]
        ticks = 0  # containers since the clock was last read
        while stack:
            ticks += 1
            if ticks == BUDGET_CHECK_EVERY:
                ticks = 0
                self._check_budget()
            yield stack.pop(), stack

    def _scrub_leaves(self, container: Any) -> None:
        """PII- and secret-scan every leaf (custom events, console logs).

        A value under a key that names a secret (any depth) is masked whatever
        it is, numbers included; a number that is a card number is masked too.
        So is the value of a name/value pair that names a secret (HAR headers
        ``{"name": "X-Api-Key", "value": …}``, ``["Authorization", …]``, as
        Relay's pair lists).
        """
        counts = self.counts
        for current, stack in self._containers(container):
            if isinstance(current, dict):
                if _pair_names_secret(current.get("name")) and _is_value(current.get("value")):
                    counts["secret_key"] += 1
                    current["value"] = _masked_leaf(current["value"])
                for key, item in current.items():
                    if isinstance(item, dict | list):
                        if isinstance(key, str) and key_is_secret(key):
                            counts["secret_key"] += 1
                            self._mask_leaves(item, numbers=True)
                        else:
                            stack.append(item)
                    elif isinstance(key, str) and _is_value(item) and _secret_under(key, item):
                        counts["secret_key"] += 1
                        current[key] = _masked_leaf(item)
                    else:
                        current[key] = self._scrub_leaf(item)
            elif isinstance(current, list):
                if len(current) == 2 and _pair_names_secret(current[0]) and _is_value(current[1]):
                    counts["secret_key"] += 1
                    current[1] = _masked_leaf(current[1])
                for pos, item in enumerate(current):
                    if isinstance(item, dict | list):
                        stack.append(item)
                    else:
                        current[pos] = self._scrub_leaf(item)

    def _scrub_leaf(self, item: Any) -> Any:
        if isinstance(item, str):
            return self.scrubber.scrub(item, self.counts, payload=True)
        if isinstance(item, int) and not isinstance(item, bool) and card_number(item):
            self.counts["pii_card"] += 1
            return _masked_leaf(item)
        return item

    def _mask_leaves(self, container: Any, *, numbers: bool = False) -> None:
        """Mask every string leaf except structural keys (unknown event shapes);
        ``numbers``: numbers too (everything under a secret-named key)."""
        for current, stack in self._containers(container):
            if isinstance(current, dict):
                for key, item in current.items():
                    if isinstance(item, str):
                        if key not in STRUCTURAL_KEYS:
                            current[key] = mask_text(item)
                    elif isinstance(item, dict | list):
                        stack.append(item)
                    elif numbers and _is_value(item):
                        current[key] = _masked_leaf(item)
            elif isinstance(current, list):
                for pos, item in enumerate(current):
                    if isinstance(item, str):
                        current[pos] = mask_text(item)
                    elif isinstance(item, dict | list):
                        stack.append(item)
                    elif numbers and _is_value(item):
                        current[pos] = _masked_leaf(item)


def _pair_names_secret(name: Any) -> bool:
    """The name of a name/value pair (a header, a cookie, a log's first argument),
    possibly JSON-quoted as the console plugin writes strings, names a secret."""
    return isinstance(name, str) and 0 < len(name) <= 128 and key_is_secret(name)


def _secret_under(key: str, item: str | int | float) -> bool:
    """A leaf under a secret-named key, or a generated-looking one under a weak word."""
    if key_is_secret(key):
        return True
    return key_is_weak_secret(key) and looks_secret_value(str(item))


def _is_value(item: Any) -> bool:
    """A string or number leaf (booleans and null say nothing secret)."""
    return isinstance(item, str | int | float) and not isinstance(item, bool)


def _masked_leaf(item: Any) -> str:
    """A masked string as long as the leaf's text (a number becomes ``*`` digits)."""
    return mask_text(item if isinstance(item, str) else str(item))


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
