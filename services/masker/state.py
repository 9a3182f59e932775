"""The per-session state the masker keeps between batches, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from services.masker.node_index import SessionNodeIndex

# Upper bound on stored runs per session; older nodes become unknown (masked).
MAX_NODE_RUNS: Final = 10_000

STATE_VERSION = 2
CONSENT_PENDING = "pending"
CONSENT_GRANTED = "granted"
CONSENT_WITHDRAWN = "withdrawn"
CONSENT_NOT_REQUIRED = "not_required"


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
