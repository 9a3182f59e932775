"""The per-session state the masker keeps between batches, and its JSON form.

``field_fingerprint`` (a 32-bit BLAKE2b of a sensitive field's name or id, kept
instead of the name) and the node state are the compiled core's
(``services/masker/core``); the JSON form is byte-identical to what the
Python implementation wrote (``tests/unit/test_masker_state_encoding.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from replaypipe_masker_core import field_fingerprint

from services.masker.node_index import SessionNodeIndex
from services.masker.node_tree import SessionNodeTree

# Upper bound on stored runs per session; older nodes become unknown (masked).
MAX_NODE_RUNS: Final = 10_000
# Upper bound on remembered sensitive field names/ids; the oldest are forgotten.
MAX_FIELD_NAMES: Final = 256

STATE_VERSION = 3
# Version 2 had no tree: read it with the tree unknown (late marks cover every node).
TREELESS_STATE_VERSION = 2
CONSENT_PENDING = "pending"
CONSENT_GRANTED = "granted"
CONSENT_WITHDRAWN = "withdrawn"
CONSENT_NOT_REQUIRED = "not_required"

__all__ = [
    "CONSENT_GRANTED",
    "CONSENT_NOT_REQUIRED",
    "CONSENT_PENDING",
    "CONSENT_WITHDRAWN",
    "MAX_FIELD_NAMES",
    "MAX_NODE_RUNS",
    "STATE_VERSION",
    "TREELESS_STATE_VERSION",
    "SessionMaskState",
    "field_fingerprint",
]


@dataclass(slots=True)
class SessionMaskState:
    """What the masker remembers about one session between batches.

    ``nodes`` maps node ids to masking bits; ``tree`` knows enough of the DOM to
    find a node's descendants (for marks that arrive later); ``field_names``
    holds fingerprints of the names and ids of sensitive form fields seen (a
    field that replaces a password field under the same name stays sensitive);
    ``consent`` is pending, granted or withdrawn; ``selector_key`` fingerprints
    the selectors the stored bits were computed with. Round-trips through JSON
    via :meth:`to_dict` / :meth:`from_dict`.
    """

    nodes: SessionNodeIndex = field(default_factory=SessionNodeIndex)
    consent: str = CONSENT_PENDING
    selector_key: str = ""
    tree: SessionNodeTree = field(default_factory=SessionNodeTree)
    field_names: dict[int, None] = field(default_factory=dict)  # an ordered set

    def remember_field_name(self, fingerprint: int) -> None:
        """Remember a sensitive field's name or id (oldest forgotten past the cap)."""
        names = self.field_names
        if fingerprint in names:
            return
        names[fingerprint] = None
        if len(names) > MAX_FIELD_NAMES:
            del names[next(iter(names))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the faust table."""
        return {
            "v": STATE_VERSION,
            "n": self.nodes.to_list(),
            "c": self.consent,
            "s": self.selector_key,
            "t": self.tree.to_dict(),
            "f": list(self.field_names),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> SessionMaskState:
        """Inverse of :meth:`to_dict`; None, an older version or garbage gives a fresh state.

        A fresh state knows no node, so everything id-addressed is masked until
        the next full snapshot: losing state never unmasks anything.
        """
        if not isinstance(doc, dict) or doc.get("v") not in (STATE_VERSION, TREELESS_STATE_VERSION):
            return cls()
        nodes = doc.get("n")
        consent = doc.get("c")
        selector_key = doc.get("s")
        names = doc.get("f")
        return cls(
            nodes=SessionNodeIndex.from_list(nodes if isinstance(nodes, list) else []),
            consent=consent if consent in (CONSENT_GRANTED, CONSENT_WITHDRAWN) else CONSENT_PENDING,
            selector_key=selector_key if isinstance(selector_key, str) else "",
            # a version 2 state has no "t": the tree is unknown, never wrongly known
            tree=SessionNodeTree.from_dict(doc.get("t")),
            field_names=dict.fromkeys(n for n in names if isinstance(n, int))
            if isinstance(names, list) and names
            else {},
        )
