"""The masking rules: pure functions over rrweb event dicts.

No Kafka, no faust here. The faust app (``services.masker.app``) and the offline
``replaypipe mask`` command both call :func:`mask_batch` with the session's state.

Foundation version: every typed input value and every ``value`` attribute is
masked; the full rule set builds on this.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.shared.envelope import RrwebEvent
from services.shared.site_settings import SiteSettings

EVENT_FULL_SNAPSHOT = 2
EVENT_INCREMENTAL = 3
SOURCE_MUTATION = 0
SOURCE_INPUT = 5
NODE_ELEMENT = 2


@dataclass(slots=True)
class SessionMaskState:
    """What the masker remembers about one session between batches."""

    seen_full_snapshot: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the faust table."""
        return {"seen_full_snapshot": self.seen_full_snapshot}

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> SessionMaskState:
        """Inverse of :meth:`to_dict`; None gives a fresh state."""
        if not doc:
            return cls()
        return cls(seen_full_snapshot=bool(doc.get("seen_full_snapshot")))


@dataclass(slots=True)
class MaskResult:
    """Masked events plus counts of what each rule masked (for metrics)."""

    events: list[RrwebEvent]
    counts: Counter[str] = field(default_factory=Counter)


def mask_text(value: str) -> str:
    """Replace every non-whitespace character with ``*`` (length and spaces kept)."""
    return "".join(ch if ch.isspace() else "*" for ch in value)


def mask_batch(
    events: list[RrwebEvent],
    state: SessionMaskState,
    site: SiteSettings,
    consent: bool | None = None,
) -> MaskResult:
    """Mask one batch of a session's events in order, updating ``state``."""
    counts: Counter[str] = Counter()
    out: list[RrwebEvent] = []
    for event in events:
        masked = _mask_event(event, state, counts)
        if masked is not None:
            out.append(masked)
    return MaskResult(out, counts)


def _mask_event(event: RrwebEvent, state: SessionMaskState, counts: Counter[str]) -> RrwebEvent:
    etype = event.get("type")
    data = event.get("data")
    if not isinstance(data, dict):
        return event
    if etype == EVENT_FULL_SNAPSHOT:
        state.seen_full_snapshot = True
        node = data.get("node")
        if isinstance(node, dict):
            _mask_node_values(node, counts)
    elif etype == EVENT_INCREMENTAL:
        source = data.get("source")
        if source == SOURCE_INPUT and isinstance(data.get("text"), str):
            data["text"] = mask_text(data["text"])
            counts["input"] += 1
        elif source == SOURCE_MUTATION:
            for add in data.get("adds") or ():
                if isinstance(add, dict) and isinstance(add.get("node"), dict):
                    _mask_node_values(add["node"], counts)
            for change in data.get("attributes") or ():
                attrs = change.get("attributes") if isinstance(change, dict) else None
                if isinstance(attrs, dict) and isinstance(attrs.get("value"), str):
                    attrs["value"] = mask_text(attrs["value"])
                    counts["value_attribute"] += 1
    return event


def _mask_node_values(node: dict[str, Any], counts: Counter[str]) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("type") == NODE_ELEMENT:
            attrs = current.get("attributes")
            if isinstance(attrs, dict) and isinstance(attrs.get("value"), str):
                attrs["value"] = mask_text(attrs["value"])
                counts["value_attribute"] += 1
        children = current.get("childNodes")
        if isinstance(children, list):
            stack.extend(c for c in children if isinstance(c, dict))
