"""``SessionNodeTree``: just enough of a session's DOM tree to find a node's descendants.

A mark that arrives later (``class="rr-mask"`` added by script, a site selector
that starts matching) must cover the descendants that already exist, so the
masker needs the tree, not only each node's bits. It keeps it in two compact
parts:

* the **last full snapshot's shape** (:class:`SnapshotShape`): its node ids in
  document order (rrweb serialises depth-first, so usually one run
  ``first..last``) and the tree as balanced parentheses, one bit per open and
  one per close, deflated. A snapshot subtree is then a contiguous slice of
  that order. The shape is decoded only when a late mark needs it; storing it
  costs nothing per batch.
* a **parent pointer per node added later** (mutation ``adds``): those ids are
  not in document order, so each one says where it hangs. A removed node loses
  its pointer (rrweb re-adds a moved node, and every node under it, with new
  pointers); pointers of detached subtrees are collected when the map grows.

Both are bounded. A snapshot over :data:`MAX_SHAPE_NODES` keeps no shape, and a
state of an older format has none: the tree is *unknown* and a late mark then
covers every known node (:meth:`SessionNodeTree.descendants` returns None).
Pointers past :data:`MAX_ADDED_PARENTS` are evicted oldest first, and
:meth:`SessionNodeTree.trim` returns the nodes that lost their ancestry so the
caller masks them: unknown means masked.

The implementation is the masker's compiled core (``services/masker/core``,
``src/node_tree.rs``); this module names it where the masker imports it.
"""

from __future__ import annotations

from replaypipe_masker_core import (
    MAX_ADDED_PARENTS,
    MAX_SHAPE_NODES,
    MIN_SWEEP_SIZE,
    SessionNodeTree,
    SnapshotShape,
)

__all__ = [
    "MAX_ADDED_PARENTS",
    "MAX_SHAPE_NODES",
    "MIN_SWEEP_SIZE",
    "SessionNodeTree",
    "SnapshotShape",
]
