"""The stored session state is byte-identical to what the Python implementation wrote.

States live in the masker's changelog topic across deploys, so the compiled core
(services/masker/core) must write the same JSON for the same session and read
what older code wrote. ``tests/fixtures/mask_state_pins.json`` holds what the
pure-Python ``node_index.py``, ``node_tree.py`` and ``state.py`` (before the
core) produced for the cases below; it was made by running :func:`pins` on that
code. Large outputs are pinned by their SHA-256.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.bench_mask_state import churn_batches, generated_batches, tree_batches
from services.masker.node_index import SessionNodeIndex
from services.masker.node_tree import SessionNodeTree, SnapshotShape
from services.masker.rules import SessionMaskState, mask_batch
from services.masker.state import field_fingerprint
from services.shared.site_settings import SiteSettings

PINS = Path(__file__).resolve().parents[1] / "fixtures" / "mask_state_pins.json"
SITE = SiteSettings(site_id="demo")
HASHED = 3000  # outputs longer than this many bytes of JSON are pinned by hash


def session_states(batches: list[list[Any]]) -> list[bytes]:
    """Mask a session batch by batch, the state stored and reloaded as JSON in between."""
    stored: Any = None
    docs = []
    for batch in batches:
        events = orjson.loads(orjson.dumps(batch))
        state = SessionMaskState.from_dict(stored)
        mask_batch(events, state, SITE)
        value = orjson.dumps(state.to_dict())
        docs.append(value)
        stored = orjson.loads(value)
    return docs


def index_ops(seed: int) -> list[int]:
    """A seeded mix of every index operation, then its stored list."""
    r = random.Random(seed)
    index = SessionNodeIndex()
    for _ in range(3000):
        op = r.random()
        if op < 0.7:
            index.set(r.randint(0, 5000), r.choice((0, 2, 6, 1 << 10, (1 << 12) | 2)))
        elif op < 0.8:
            index.add_bits([r.randint(0, 5000) for _ in range(r.randint(1, 40))], 1 << 4)
        elif op < 0.85:
            index.map_values((1 << 10) - 1)
        elif op < 0.87:
            index.add_bits_everywhere(8)
        elif op < 0.88:
            index.trim(r.randint(50, 400))
    return index.to_list()


def random_shape(seed: int, nodes: int) -> dict[str, Any]:
    """A seeded depth-first walk of ``nodes`` nodes with gaps in the ids."""
    r = random.Random(seed)
    shape = SnapshotShape()
    depth = 0
    next_id = r.randint(1, 100)
    for _ in range(nodes):
        shape.visit(next_id, depth)
        next_id += 1 if r.random() < 0.9 else r.randint(2, 50)
        step = r.random()
        if step < 0.45:
            depth += 1
        elif step < 0.9 and depth > 0:
            depth = max(1, depth - r.randint(0, 3))
    return shape.to_dict()


def small_tree() -> object:
    """A four-node snapshot, pointers added after it, one removed."""
    tree = SessionNodeTree()
    shape = tree.start_snapshot()
    for node_id, depth in [(1, 0), (2, 1), (3, 2), (4, 1)]:
        shape.visit(node_id, depth)
    tree.end_snapshot()
    for node_id, parent_id in [(50, 3), (51, 50), (40, 1), (52, 51), (60, 4)]:
        tree.add_parent(node_id, parent_id)
    tree.remove(40)
    return tree.to_dict()


def visited(visits: list[tuple[object, int]]) -> dict[str, Any]:
    shape = SnapshotShape()
    for node_id, depth in visits:
        shape.visit(node_id, depth)
    return shape.to_dict()


def pinned(value: object) -> object:
    """``value`` as the fixture holds it: JSON, or the hash of JSON past :data:`HASHED`."""
    encoded = value if isinstance(value, bytes) else orjson.dumps(value)
    if len(encoded) > HASHED:
        return "sha256:" + hashlib.sha256(encoded).hexdigest()
    return orjson.loads(encoded)


def pins() -> dict[str, object]:
    """Every pinned case, computed by the code under test."""
    cases: dict[str, object] = {
        "generator": session_states(generated_batches(random.Random(5), 0)),
        "30KB": session_states(generated_batches(random.Random(6), 30_000)),
        "300KB tree": session_states(tree_batches(random.Random(7), 300_000)),
        "churn": session_states(churn_batches(random.Random(8), 6, per_batch=20)),
        "odd ids": visited(
            [(1, 0), ("x", 1), (True, 1), (-4, 2), (None, 2), (7, 1), (8, 2), (9, 3), (12, 1)]
        ),
        "depth jumps": visited([(1, 0), (2, 3), (3, 1), (4, 20), (5, 2)]),
        "small tree": small_tree(),
        "fresh state": SessionMaskState().to_dict(),
        "fingerprints": {
            name: field_fingerprint(name)
            for name in ["password", "card-number", "é", "密码", "x" * 300, ""]
        },
        "index ops": [index_ops(seed) for seed in (1, 2)],
        "random shapes": [
            random_shape(seed, nodes) for seed, nodes in ((1, 30), (2, 2000), (3, 20000))
        ],
    }
    return {
        name: [pinned(v) for v in value] if isinstance(value, list) else pinned(value)
        for name, value in cases.items()
    }


EXPECTED: dict[str, Any] = orjson.loads(PINS.read_bytes()) if PINS.exists() else {}
COMPUTED: dict[str, object] = {}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_stored_state_is_byte_identical_to_the_python_implementation(case: str) -> None:
    if not COMPUTED:
        COMPUTED.update(pins())
    assert COMPUTED[case] == EXPECTED[case]


def test_the_pins_cover_every_case() -> None:
    assert set(EXPECTED) == {
        "generator", "30KB", "300KB tree", "churn", "odd ids", "depth jumps", "small tree",
        "fresh state", "fingerprints", "index ops", "random shapes",
    }


def test_stored_states_read_back_as_they_were_written() -> None:
    for doc in EXPECTED["generator"] + EXPECTED["30KB"]:
        assert orjson.dumps(SessionMaskState.from_dict(doc).to_dict()) == orjson.dumps(doc)


def test_a_version_2_state_reads_with_the_tree_unknown() -> None:
    doc = {"v": 2, "n": [1, 4, 0, 1, 0, 32], "c": "granted", "s": "ab", "f": [7, 7, "x"]}
    state = SessionMaskState.from_dict(doc)
    assert not state.tree.known
    assert state.nodes.runs() == [(1, 5, 0), (6, 6, 32)]
    assert state.to_dict() == {
        "v": 3, "n": [1, 4, 0, 1, 0, 32], "c": "granted", "s": "ab",
        "t": {"s": None, "a": []}, "f": [7],
    }


def test_an_untouched_stored_tree_is_stored_back_as_it_was_read() -> None:
    for doc in ({"s": {"i": [1, 3], "p": "%%"}, "a": []}, "garbage", {"a": [1]}):
        assert SessionNodeTree.from_dict(doc).to_dict() is doc
