"""The pending batch (:mod:`services.sink.batching`): offsets to commit and idempotent tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from services.sink.batching import IncomingMessage, PendingBatch, columns, is_full, part_token
from services.sink.settings import SinkSettings


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Record:
    offset: int


P0, P1 = TP("masked", 0), TP("masked", 1)


def message(offset: int, events: int = 10) -> IncomingMessage:
    return IncomingMessage(Record(offset), ("shop", f"s{offset}", b"{}"), events, 100)


def batch_of(*entries: tuple[TP, int]) -> PendingBatch:
    batch = PendingBatch()
    for tp, offset in entries:
        batch.add(tp, offset, message(offset))
    return batch


def test_stored_batch_commits_the_offset_after_its_last_message_per_partition() -> None:
    batch = batch_of((P0, 5), (P0, 6), (P1, 9))
    batch.add(P1, 10, None)  # sent to the DLQ before the insert: only its offset counts
    assert batch.commit_offsets() == {P0: 7, P1: 11}
    assert (batch.rows, batch.bytes) == (30, 300)


def test_a_partition_revoked_during_the_insert_commits_nothing() -> None:
    batch = batch_of((P0, 5), (P1, 9))
    batch.revoked.add(P1)
    assert batch.commit_offsets() == {P0: 6}


def test_same_offsets_give_the_same_token_and_a_refusal_changes_it() -> None:
    first, again = batch_of((P0, 5), (P1, 9), (P0, 6)), batch_of((P1, 9), (P0, 5), (P0, 6))
    assert first.dedup_token() == again.dedup_token()
    refused = first.partitions[P0].messages[0]
    first.remove(P0, refused)
    assert first.dedup_token() != again.dedup_token()
    assert first.commit_offsets() == again.commit_offsets()  # the refused offset moves on too
    assert [m.offset for m in first.messages()] == [6, 9]


def test_dropping_revoked_partitions_forgets_their_rows() -> None:
    batch = batch_of((P0, 5), (P1, 9), (P1, 10))
    assert batch.drop([P1]) == 20
    assert (batch.rows, list(batch.partitions)) == (10, [P0])


def test_each_part_of_a_split_batch_has_its_own_stable_token() -> None:
    batch = batch_of((P0, 5), (P0, 6), (P0, 7), (P0, 8))
    items = batch.items()
    token = batch.dedup_token()
    halves = [part_token(token, items[:2]), part_token(token, items[2:])]
    assert halves == [part_token(token, items[:2]), part_token(token, items[2:])]
    assert len({token, *halves}) == 3


def test_columns_are_the_rows_transposed() -> None:
    assert columns([message(1), message(2)]) == [["shop", "shop"], ["s1", "s2"], [b"{}", b"{}"]]
    assert columns([]) == []


def test_a_batch_is_full_at_the_maximum_rows_or_bytes() -> None:
    settings = SinkSettings(batch_max_rows=100, batch_max_bytes=1000)
    assert is_full(settings, rows=100, size=0) and is_full(settings, rows=1, size=1000)
    assert not is_full(settings, rows=99, size=999)
