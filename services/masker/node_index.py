"""``SessionNodeIndex``: node id -> masking bits, stored as runs of consecutive ids.

rrweb numbers nodes depth-first as it serialises them and never reuses an id in
a page, so a subtree is a contiguous id range and most neighbouring nodes carry
the same bits. Storing ``(first, last, bits)`` runs instead of one entry per node
keeps a session's state at a few hundred bytes for typical pages, even with
thousands of nodes.

An id outside every run is *unknown* (:meth:`~SessionNodeIndex.get` returns
None): the masker treats unknown nodes conservatively.

The implementation is the masker's compiled core (``services/masker/core``,
``src/node_index.rs``); this module names it where the masker imports it.
"""

from __future__ import annotations

from replaypipe_masker_core import SessionNodeIndex

__all__ = ["SessionNodeIndex"]
