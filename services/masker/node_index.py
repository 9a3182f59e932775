"""``SessionNodeIndex``: node id -> masking bits, stored as runs of consecutive ids.

rrweb numbers nodes depth-first as it serialises them and never reuses an id in
a page, so a subtree is a contiguous id range and most neighbouring nodes carry
the same bits. Storing ``(first, last, bits)`` runs instead of one entry per node
keeps a session's state at a few hundred bytes for typical pages, even with
thousands of nodes.

An id outside every run is *unknown* (:meth:`get` returns None): the masker
treats unknown nodes conservatively.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable


class SessionNodeIndex:
    """Sorted, non-overlapping runs ``[first, last]`` of node ids sharing one bits value."""

    __slots__ = ("_firsts", "_lasts", "_values")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._values: list[int] = []

    def __len__(self) -> int:
        """Number of runs (not nodes)."""
        return len(self._firsts)

    def clear(self) -> None:
        """Forget every node."""
        self._firsts.clear()
        self._lasts.clear()
        self._values.clear()

    def take(self) -> SessionNodeIndex:
        """Move every run into a new index and leave this one empty."""
        taken = SessionNodeIndex()
        taken._firsts, self._firsts = self._firsts, []
        taken._lasts, self._lasts = self._lasts, []
        taken._values, self._values = self._values, []
        return taken

    def get(self, node_id: object) -> int | None:
        """Bits of a node, or None if the node is unknown."""
        if not isinstance(node_id, int):
            return None
        lasts = self._lasts
        # fast path: most lookups hit the newest nodes
        if lasts and lasts[-1] >= node_id >= self._firsts[-1]:
            return self._values[-1]
        index = bisect_right(self._firsts, node_id) - 1
        if index >= 0 and node_id <= lasts[index]:
            return self._values[index]
        return None

    def set(self, node_id: int, value: int) -> None:
        """Record a node's bits, merging with neighbouring runs of the same value."""
        firsts, lasts, values = self._firsts, self._lasts, self._values
        if lasts and node_id == lasts[-1] + 1:
            if values[-1] == value:
                lasts[-1] = node_id
            else:
                firsts.append(node_id)
                lasts.append(node_id)
                values.append(value)
            return
        if not lasts or node_id > lasts[-1]:
            firsts.append(node_id)
            lasts.append(node_id)
            values.append(value)
            return
        index = bisect_right(firsts, node_id) - 1
        if index >= 0 and node_id <= lasts[index]:
            old = values[index]
            if old == value:
                return
            first, last = firsts[index], lasts[index]
            # split [first, last] into [first, id-1], [id, id], [id+1, last]
            new_runs = []
            if first < node_id:
                new_runs.append((first, node_id - 1, old))
            new_runs.append((node_id, node_id, value))
            if node_id < last:
                new_runs.append((node_id + 1, last, old))
            firsts[index : index + 1] = [r[0] for r in new_runs]
            lasts[index : index + 1] = [r[1] for r in new_runs]
            values[index : index + 1] = [r[2] for r in new_runs]
            return
        # a gap between run `index` and run `index + 1`
        merge_left = index >= 0 and lasts[index] == node_id - 1 and values[index] == value
        right = index + 1
        merge_right = (
            right < len(firsts) and firsts[right] == node_id + 1 and values[right] == value
        )
        if merge_left and merge_right:
            lasts[index] = lasts[right]
            del firsts[right], lasts[right], values[right]
        elif merge_left:
            lasts[index] = node_id
        elif merge_right:
            firsts[right] = node_id
        else:
            firsts.insert(right, node_id)
            lasts.insert(right, node_id)
            values.insert(right, value)

    def add_bits(self, node_ids: Iterable[int], bits: int) -> None:
        """OR ``bits`` into every known node of ``node_ids`` (a mark reaching a subtree).

        Unknown ids stay unknown (they are masked anyway). Runs are split only
        where the marked ids start and end, so a marked subtree stays one run.
        """
        spans: list[tuple[int, int]] = []
        for node_id in sorted(set(node_ids)):
            if spans and spans[-1][1] == node_id - 1:
                spans[-1] = (spans[-1][0], node_id)
            else:
                spans.append((node_id, node_id))
        if not spans or not self._firsts:
            return
        runs = self.runs()
        self.clear()
        span_pos = 0
        for first, last, value in runs:
            start = first
            while start <= last:
                while span_pos < len(spans) and spans[span_pos][1] < start:
                    span_pos += 1
                if span_pos == len(spans) or spans[span_pos][0] > last:
                    self._append_run(start, last, value)
                    break
                span_first, span_last = spans[span_pos]
                if span_first > start:
                    self._append_run(start, span_first - 1, value)
                    start = span_first
                end = min(last, span_last)
                self._append_run(start, end, value | bits)
                start = end + 1

    def add_bits_everywhere(self, bits: int) -> None:
        """OR ``bits`` into every known node."""
        pairs = list(zip(self._firsts, self._lasts, self._values, strict=True))
        self.clear()
        for first, last, value in pairs:
            self._append_run(first, last, value | bits)

    def map_values(self, keep_bits: int) -> None:
        """AND every value with ``keep_bits`` (used to drop stale selector contexts)."""
        pairs = list(zip(self._firsts, self._lasts, self._values, strict=True))
        self.clear()
        for first, last, value in pairs:
            self._append_run(first, last, value & keep_bits)

    def _append_run(self, first: int, last: int, value: int) -> None:
        if self._lasts and self._lasts[-1] == first - 1 and self._values[-1] == value:
            self._lasts[-1] = last
        else:
            self._firsts.append(first)
            self._lasts.append(last)
            self._values.append(value)

    def trim(self, max_runs: int) -> int:
        """Keep only the newest ``max_runs`` runs; older nodes become unknown (masked).

        Returns how many runs were dropped. Forgetting is the safe direction:
        unknown nodes are masked, never shown.
        """
        excess = len(self._firsts) - max_runs
        if excess <= 0:
            return 0
        del self._firsts[:excess], self._lasts[:excess], self._values[:excess]
        return excess

    def to_list(self) -> list[int]:
        """Flat, delta-encoded form for JSON: ``[gap, length-1, value, ...]``."""
        flat: list[int] = []
        previous_last = 0
        for first, last, value in zip(self._firsts, self._lasts, self._values, strict=True):
            flat.extend((first - previous_last, last - first, value))
            previous_last = last
        return flat

    @classmethod
    def from_list(cls, flat: Iterable[object]) -> SessionNodeIndex:
        """Inverse of :meth:`to_list`; malformed input gives an empty (all-unknown) index."""
        index = cls()
        items = list(flat)
        if len(items) % 3 or not all(isinstance(x, int) for x in items):
            return index
        previous_last = 0
        for pos in range(0, len(items), 3):
            gap, extent, value = items[pos], items[pos + 1], items[pos + 2]
            assert isinstance(gap, int) and isinstance(extent, int) and isinstance(value, int)
            first = previous_last + gap
            last = first + extent
            if extent < 0 or (index._lasts and first <= index._lasts[-1]):
                return cls()
            index._append_run(first, last, value)
            previous_last = last
        return index

    def runs(self) -> list[tuple[int, int, int]]:
        """The runs as ``(first, last, value)`` tuples (for tests and debugging)."""
        return list(zip(self._firsts, self._lasts, self._values, strict=True))
