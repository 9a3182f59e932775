"""The per-session state the masker keeps between batches, and its JSON form."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from services.masker.node_index import SessionNodeIndex
from services.masker.node_tree import SessionNodeTree
from services.masker.sensitivity import MAX_CACHED_NAME_CHARS

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


def field_fingerprint(name: str) -> int:
    """A short fingerprint of a field's name or id, kept instead of the name itself.

    32 bits: a collision only masks one more field.
    """
    if len(name) <= MAX_CACHED_NAME_CHARS:
        return _cached_fingerprint(name)  # pages repeat the same few field names
    return _fingerprint(name)


def _fingerprint(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


_cached_fingerprint = lru_cache(maxsize=4096)(_fingerprint)


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
