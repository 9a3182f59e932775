"""``SessionNodeTree``: just enough of a session's DOM tree to find a node's descendants.

A mark that arrives later (``class="rr-mask"`` added by script, a site selector
that starts matching) must cover the descendants that already exist, so the
masker needs the tree, not only each node's bits. It keeps it in two compact
parts:

* the **last full snapshot's shape**: its node ids in document order (rrweb
  serialises depth-first, so usually one run ``first..last``) and the tree as
  balanced parentheses, one bit per open and one per close, deflated.
  A snapshot subtree is then a contiguous slice of that order. The shape is
  decoded only when a late mark needs it; storing it costs nothing per batch.
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
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from itertools import pairwise
from typing import Any, Final

# Full snapshots with more nodes keep no shape (a late mark then masks every node).
MAX_SHAPE_NODES: Final = 200_000
# Parent pointers kept for nodes added after the snapshot; the oldest are evicted.
MAX_ADDED_PARENTS: Final = 20_000
# The pointer map is swept for detached subtrees when it has doubled since the last sweep.
_MIN_SWEEP_SIZE: Final = 64
# A node id that is not an int (malformed snapshot): holds its place in the order.
_NO_ID: Final = -1
# Shapes up to this many bytes (~250 nodes) are stored undeflated, marked by _RAW
# (not a base64 character): deflating them saves a few bytes and costs more time
# than masking the snapshot's small page.
_RAW_MAX_BYTES: Final = 64
_RAW: Final = "."
# "0" * k + "1": close k nodes, open one (the usual steps of a depth-first walk)
_CLOSE_THEN_OPEN: Final = tuple("0" * k + "1" for k in range(32))


class SnapshotShape:
    """The node ids of one full snapshot in document order and their depths.

    Built node by node while the snapshot is walked (:meth:`visit`), stored
    compressed (:meth:`to_dict`), decoded lazily (:meth:`subtree`).
    """

    __slots__ = ("_depths", "_encoded", "_ids", "_positions")

    def __init__(self) -> None:
        self._ids: list[int] | None = []
        self._depths: list[int] | None = []
        self._positions: dict[int, int] | None = None
        self._encoded: dict[str, Any] | None = None

    def visit(self, node_id: object, depth: int) -> None:
        """Record the next node of the depth-first walk (``depth`` 0 is the root)."""
        record_id, record_depth = self.recorders()
        record_id(node_id)
        record_depth(depth)

    def recorders(self) -> tuple[Callable[[Any], None], Callable[[int], None]]:
        """``(record_id, record_depth)``: :meth:`visit` in two plain appends, for the walk.

        Ids that are not ints are tolerated (each holds its place, matching nothing).
        """
        assert self._depths is not None and self._ids is not None, "a stored shape is read-only"
        return self._ids.append, self._depths.append

    def __len__(self) -> int:
        self._decode()
        return len(self._ids or ())

    def ids(self) -> list[int]:
        """Every node id of the snapshot (empty if the stored form does not decode)."""
        self._decode()
        return [nid for nid in self._ids or () if _is_id(nid)]

    def readable(self) -> bool:
        """Decode the stored form if needed; False if it does not decode (tree unknown)."""
        self._decode()
        return self._depths is not None and self._ids is not None

    def subtree(self, node_id: int) -> list[int] | None:
        """Ids of the nodes under ``node_id`` in this snapshot; None if it is not in it.

        Call :meth:`readable` first.
        """
        self._decode()
        ids, depths = self._ids, self._depths
        if ids is None or depths is None:
            return None
        if self._positions is None:
            self._positions = {nid: pos for pos, nid in enumerate(ids) if _is_id(nid)}
        pos = self._positions.get(node_id)
        if pos is None:
            return None
        depth = depths[pos]
        end = pos + 1
        while end < len(depths) and depths[end] > depth:
            end += 1
        return [nid for nid in ids[pos + 1 : end] if _is_id(nid)]

    def to_dict(self) -> dict[str, Any]:
        """``{"i": id runs [gap, length-1, ...], "p": base64(zlib(parentheses bits))}``."""
        if self._encoded is None:
            ids = self._ids = [
                nid if type(nid) is int and nid >= 0 else _NO_ID for nid in self._ids or []
            ]
            self._encoded = {
                "i": _id_runs(ids),
                "p": _encode_depths(self._depths or []),
            }
        return self._encoded

    @classmethod
    def from_dict(cls, doc: object) -> SnapshotShape | None:
        """Inverse of :meth:`to_dict`; None if ``doc`` is malformed (the tree is unknown)."""
        if not isinstance(doc, dict):
            return None
        runs, parens = doc.get("i"), doc.get("p")
        if not isinstance(runs, list) or not isinstance(parens, str):
            return None
        shape = cls()
        shape._ids = shape._depths = None  # decoded on first use: most batches never need it
        shape._encoded = {"i": runs, "p": parens}
        return shape

    def _decode(self) -> None:
        if self._depths is not None or self._encoded is None:
            return
        ids = _ids_from_runs(self._encoded["i"])
        depths = None if ids is None else _decode_depths(self._encoded["p"], len(ids))
        if ids is None or depths is None:
            self._encoded = None  # unreadable: stays undecoded, readable() says so
            return
        self._ids, self._depths = ids, depths


class SessionNodeTree:
    """The snapshot's shape plus parent pointers for nodes added later (see module doc).

    A stored tree is read only when a batch touches it (adds, removes, a late
    mark, a new snapshot): most batches (typing, scrolling) store it back as
    they found it.
    """

    __slots__ = ("_encoded_parents", "_parents", "_shape", "_stored", "_sweep_at")

    def __init__(self) -> None:
        # None: the tree is unknown (older state, oversized snapshot)
        self._shape: SnapshotShape | None = SnapshotShape()
        self._parents: dict[int, int] = {}
        self._sweep_at = _MIN_SWEEP_SIZE
        self._encoded_parents: list[int] | None = []
        self._stored: object = None  # the stored form, until first use

    @property
    def shape(self) -> SnapshotShape | None:
        """The last full snapshot's shape; None when the tree is unknown."""
        if self._stored is not None:
            self._load()
        return self._shape

    @property
    def parents(self) -> dict[int, int]:
        """Parent id of each node added after the snapshot."""
        if self._stored is not None:
            self._load()
        return self._parents

    @property
    def known(self) -> bool:
        """False when a late mark cannot be limited to the node's descendants."""
        return self.shape is not None

    def start_snapshot(self) -> SnapshotShape:
        """Forget the tree: a new full snapshot describes the whole page again."""
        self._stored = None
        shape = self._shape = SnapshotShape()
        self._parents = {}
        self._encoded_parents = None
        return shape

    def end_snapshot(self) -> None:
        """Drop the shape of a snapshot too big to keep (the tree becomes unknown)."""
        if self._shape is not None and len(self._shape) > MAX_SHAPE_NODES:
            self._shape = None

    def add_parent(self, node_id: object, parent_id: object) -> None:
        """Remember where a node added by a mutation hangs."""
        if isinstance(node_id, int) and isinstance(parent_id, int):
            self.parents[node_id] = parent_id
            self._encoded_parents = None

    def remove(self, node_id: object) -> None:
        """A node left the page: its pointer goes (a move re-adds it with a new one)."""
        if isinstance(node_id, int) and self.parents.pop(node_id, None) is not None:
            self._encoded_parents = None

    def descendants(self, node_id: int) -> set[int] | None:
        """Every node known to be under ``node_id`` now; None if the tree is unknown.

        Snapshot subtrees are slices of the document order; nodes added later are
        found by following their parent pointers up (memoised, so each pointer is
        followed once). A snapshot node moved elsewhere still counts under its old
        ancestors too: that masks more, never less.
        """
        shape = self.shape
        if shape is not None and not shape.readable():
            shape = self._shape = None  # stays unknown in the stored state too
        if shape is None:
            return None
        under: set[int] = set()
        roots = [node_id]
        while roots:
            # snapshot subtrees of the roots found so far
            for root in roots:
                under.update(shape.subtree(root) or ())
            under.update(roots)
            roots = self._added_under(under)
        under.discard(node_id)
        return under

    def _added_under(self, under: set[int]) -> list[int]:
        """Added nodes whose chain of parents reaches a node of ``under``."""
        verdict = _follow_parents(self.parents, under, lambda top: False)
        return [node for node, result in verdict.items() if result and node not in under]

    def trim(self) -> list[int]:
        """Bound the pointer map; returns the nodes evicted while still attached.

        Pointers of detached subtrees (their chain ends at a removed node, i.e.
        neither a snapshot node nor one with a pointer) go first: such nodes are
        off the page, and rrweb re-adds them with new pointers if they come back.
        If more than :data:`MAX_ADDED_PARENTS` remain, the oldest go, with every
        node whose chain passes through them; the caller must mask those.
        """
        if self._stored is not None:
            return []  # untouched since it was stored, so already within bounds
        parents = self._parents
        if len(parents) <= self._sweep_at:
            return []
        self._encoded_parents = None
        in_shape = self._shape_ids()
        attached = _follow_parents(
            parents, set(), lambda top: in_shape is None or top in in_shape
        )
        for node, result in attached.items():
            if not result:
                del parents[node]
        evicted: list[int] = []
        if len(parents) > MAX_ADDED_PARENTS:
            oldest = sorted(parents)[: len(parents) - MAX_ADDED_PARENTS]
            gone = set(oldest)
            for node in oldest:
                del parents[node]
            # everything that hung below an evicted node lost its ancestry too
            changed = True
            while changed:
                changed = False
                for node, parent in list(parents.items()):
                    if parent in gone:
                        gone.add(node)
                        del parents[node]
                        changed = True
            evicted = sorted(gone)
        self._sweep_at = max(_MIN_SWEEP_SIZE, 2 * len(parents))
        return evicted

    def _shape_ids(self) -> set[int] | None:
        shape = self._shape
        if shape is not None and not shape.readable():
            shape = self._shape = None
        if shape is None:
            return None
        return set(shape.ids())

    def to_dict(self) -> object:
        """JSON form: ``{"s": shape or None, "a": [id gap, id - parent, ...]}``."""
        if self._stored is not None:
            return self._stored
        if self._encoded_parents is None:
            flat: list[int] = []
            previous = 0
            parents = self._parents
            for node in sorted(parents):
                flat.extend((node - previous, node - parents[node]))
                previous = node
            self._encoded_parents = flat
        return {
            "s": None if self._shape is None else self._shape.to_dict(),
            "a": self._encoded_parents,
        }

    @classmethod
    def from_dict(cls, doc: object) -> SessionNodeTree:
        """Inverse of :meth:`to_dict` (read on first use); anything unreadable is unknown."""
        tree = cls.__new__(cls)
        tree._shape = None
        tree._parents = {}
        tree._sweep_at = _MIN_SWEEP_SIZE
        tree._encoded_parents = None
        tree._stored = doc if doc is not None else {"s": None, "a": []}
        return tree

    def _load(self) -> None:
        doc, self._stored = self._stored, None
        self._shape = None
        self._encoded_parents = None
        if not isinstance(doc, dict):
            return
        flat = doc.get("a")
        if not isinstance(flat, list) or len(flat) % 2 or not all(
            isinstance(x, int) for x in flat
        ):
            return  # pointers lost: descendants cannot be told apart
        shape_doc = doc.get("s")
        self._shape = SnapshotShape.from_dict(shape_doc) if shape_doc is not None else None
        node = 0
        for pos in range(0, len(flat), 2):
            node += flat[pos]
            self._parents[node] = node - flat[pos + 1]
        self._sweep_at = max(_MIN_SWEEP_SIZE, 2 * len(self._parents))


def _follow_parents(
    parents: dict[int, int], reached: set[int], at_top: Callable[[int], bool]
) -> dict[int, bool]:
    """For every node with a pointer: does its chain of parents (itself included)
    meet a node of ``reached``? If not, ``at_top`` of the node the chain ends at
    (one without a pointer). Memoised: each pointer is followed once."""
    verdict: dict[int, bool] = {}
    for start in parents:
        chain: list[int] = []
        current = start
        while True:
            if current in verdict:
                result = verdict[current]
                break
            if current in reached:
                result = True
                break
            parent = parents.get(current)
            if parent is None:
                result = at_top(current)
                break
            if len(chain) > len(parents):  # a cycle: no page looks like this
                result = False
                break
            chain.append(current)
            current = parent
        for node in chain:
            verdict[node] = result
    return verdict


def _is_id(node_id: object) -> bool:
    return isinstance(node_id, int) and not isinstance(node_id, bool) and node_id >= 0


def _id_runs(ids: list[int]) -> list[int]:
    """Document-order ids as ``[first - previous_last, length - 1, ...]`` runs of +1 steps."""
    flat: list[int] = []
    if not ids:
        return flat
    # where a run ends: the next id is not one more (placeholders never continue a run)
    starts = [
        pos for pos in range(1, len(ids))
        if ids[pos] != ids[pos - 1] + 1 or ids[pos - 1] == _NO_ID
    ]
    previous = 0
    for begin, end in zip([0, *starts], [*starts, len(ids)], strict=True):
        flat.extend((ids[begin] - previous, end - begin - 1))
        previous = ids[end - 1]
    return flat


def _ids_from_runs(flat: object) -> list[int] | None:
    if not isinstance(flat, list) or len(flat) % 2 or not all(isinstance(x, int) for x in flat):
        return None
    ids: list[int] = []
    previous = 0
    for pos in range(0, len(flat), 2):
        first = previous + flat[pos]
        length = flat[pos + 1] + 1
        if length < 1 or len(ids) + length > MAX_SHAPE_NODES:
            return None
        if first == _NO_ID:
            ids.extend([_NO_ID] * length)
        else:
            ids.extend(range(first, first + length))
        previous = ids[-1]
    return ids


def _encode_depths(depths: list[int]) -> str:
    """Depth-first depths as balanced parentheses (1 = open, 0 = close), deflated, base64."""
    if not depths:
        return ""
    table = _CLOSE_THEN_OPEN
    # before each node: close every open node at its depth or deeper, then open it
    parts = [
        table[previous - depth + 1] if previous - depth < 31 else "0" * (previous - depth + 1) + "1"
        for previous, depth in pairwise(depths)
    ]
    bits = "1" + "".join(parts) + "0" * (depths[-1] - depths[0] + 1)
    bits += "0" * (-len(bits) % 8)
    packed = int(bits, 2).to_bytes(len(bits) // 8, "big")
    if len(packed) <= _RAW_MAX_BYTES:
        return _RAW + base64.b64encode(packed).decode("ascii")
    # Raw deflate (no header and checksum) with a 4 KiB window and little memory:
    # a tree's bits repeat at short distances, and zlib's defaults cost more to set up.
    deflater = zlib.compressobj(9, zlib.DEFLATED, -12, 4)
    return base64.b64encode(deflater.compress(packed) + deflater.flush()).decode("ascii")


def _decode_depths(encoded: str, count: int) -> list[int] | None:
    """Inverse of :func:`_encode_depths` for ``count`` nodes; None if it does not fit."""
    if not encoded:
        return [] if count == 0 else None
    limit = count // 4 + 1  # 2 bits per node, padded to a byte
    try:
        if encoded.startswith(_RAW):
            packed = base64.b64decode(encoded[len(_RAW) :], validate=True)
            if len(packed) > limit:
                return None
        else:
            inflater = zlib.decompressobj(wbits=-15)
            packed = inflater.decompress(base64.b64decode(encoded, validate=True), limit)
            if inflater.unconsumed_tail:
                return None
    except (binascii.Error, zlib.error, ValueError):
        return None
    bits = format(int.from_bytes(packed, "big"), f"0{len(packed) * 8}b")
    depths: list[int] = []
    depth = -1
    for bit in bits:
        if bit == "1":
            depth += 1
            depths.append(depth)
            if len(depths) == count:
                break
        else:
            depth -= 1
            if depth < -1:
                return None
    return depths if len(depths) == count else None
