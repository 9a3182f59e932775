"""The masker acks source offsets in order per partition (issue 16 item 3, found by the soak).

The first tests pin down the faust commit rule this guards against, on the
installed faust's own ``Consumer._new_offset``: if a faust upgrade changes it,
they say so. The rest specify :class:`AckInOrder`.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from services.masker.ack_order import AckInOrder
from services.shared import topics

RAW0 = TP(topics.RAW, 0)


def faust_offset_to_commit(committed: int | None, acked: list[int]) -> int | None:
    """What faust's commit would advance partition 0 to, given its bookkeeping."""
    consumer: Any = SimpleNamespace(
        _acked=defaultdict(list, {RAW0: list(acked)}),
        _acked_index=defaultdict(set, {RAW0: set(acked)}),
        _gap=defaultdict(list),  # no gaps: recordings.raw has no holes in its offsets
        _committed_offset=defaultdict(lambda: None, {RAW0: committed}),
    )
    result: int | None = Consumer._new_offset(consumer, RAW0)
    return result


def test_faust_commits_past_the_committed_offset_when_only_the_next_one_is_acked() -> None:
    # Offset 10 (the committed one: the next to process) is not done; 11 and 12 are.
    assert faust_offset_to_commit(10, [11, 12]) == 13


def test_faust_commits_any_run_of_acks_once_a_revocation_forgot_the_committed_offset() -> None:
    # on_partitions_revoked pops _committed_offset before wait_empty commits.
    assert faust_offset_to_commit(None, [40, 41]) == 42


def test_faust_commits_a_contiguous_run_from_the_committed_offset_up_to_its_end() -> None:
    assert faust_offset_to_commit(10, [10, 11, 13]) == 12


def ack_log() -> tuple[AckInOrder[str], list[str]]:
    acked: list[str] = []
    return AckInOrder(acked.append), acked


def test_a_batch_delivered_before_an_earlier_one_is_acked_only_after_it() -> None:
    acks, acked = ack_log()
    acks.taken(0, 10, "a")
    acks.taken(0, 11, "b")
    acks.done(0, 11)
    assert acked == []
    acks.done(0, 10)
    assert acked == ["a", "b"]


def test_a_batch_with_nothing_to_publish_waits_for_the_earlier_delivery() -> None:
    acks, acked = ack_log()
    acks.taken(0, 10, "published")
    acks.taken(0, 11, "all events dropped")
    acks.done(0, 11)  # done at once, its predecessor still in flight
    assert acked == []
    assert acks.waiting(0) == 2


def test_an_undelivered_batch_holds_back_every_later_ack_of_its_partition() -> None:
    acks, acked = ack_log()
    for offset in range(10, 15):
        acks.taken(0, offset, str(offset))
    for offset in range(11, 15):
        acks.done(0, offset)
    assert acked == []  # 10 never delivered: nothing after it is committable


def test_partitions_are_released_independently() -> None:
    acks, acked = ack_log()
    acks.taken(0, 10, "p0")
    acks.taken(1, 7, "p1")
    acks.done(1, 7)
    assert acked == ["p1"]
    assert acks.waiting(0) == 1


def test_acks_reach_faust_as_one_contiguous_run_so_its_commit_skips_nothing() -> None:
    acked_offsets: list[int] = []
    acks: AckInOrder[int] = AckInOrder(acked_offsets.append)
    for offset in range(10, 16):
        acks.taken(0, offset, offset)
    for offset in (12, 11, 15, 13):  # out of order; 10 and 14 still in flight
        acks.done(0, offset)
    assert faust_offset_to_commit(10, acked_offsets) is None
    acks.done(0, 10)
    assert faust_offset_to_commit(10, acked_offsets) == 14


def test_a_message_done_twice_or_never_taken_releases_nothing_more() -> None:
    acks, acked = ack_log()
    acks.taken(0, 10, "a")
    acks.done(0, 10)
    acks.done(0, 10)
    acks.done(3, 99)
    assert acked == ["a"]
