"""The gateway's partitioner gives exactly aiokafka's default partition for every key."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.partitioner import MemoizedKeyPartitioner
from services.shared.topics import session_key


@given(
    keys=st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=50),
    partition_count=st.integers(min_value=1, max_value=64),
)
def test_same_partition_as_the_default_partitioner(keys: list[bytes], partition_count: int) -> None:
    memoized, default = MemoizedKeyPartitioner(max_keys=7), DefaultPartitioner()
    partitions = list(range(partition_count))
    for key in keys + keys:  # the second pass answers from the cache (or after a reset)
        assert memoized(key, partitions, partitions) == default(key, partitions, partitions)


def test_session_keys_follow_a_change_in_partition_count() -> None:
    memoized, default = MemoizedKeyPartitioner(), DefaultPartitioner()
    key = session_key("shop", "0f8e1c2a-4b5d-4e6f-8a9b")
    for count in (4, 12, 4, 3):
        partitions = list(range(count))
        assert memoized(key, partitions, partitions) == default(key, partitions, partitions)


def test_cache_stays_bounded() -> None:
    memoized = MemoizedKeyPartitioner(max_keys=10)
    for n in range(1000):
        memoized(f"site:{n}".encode(), [0, 1, 2, 3], [0, 1, 2, 3])
    assert len(memoized._hashes) <= 10


def test_keyless_records_go_to_an_available_partition() -> None:
    assert MemoizedKeyPartitioner()(None, [0, 1, 2, 3], [2]) == 2
