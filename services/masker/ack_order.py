"""Source acks released in the order the messages were taken, per partition (pure).

faust commits a partition's offset from the set of acked offsets, and its
rule can skip a message that is not done: a run of acks that starts one past
the committed offset is committed (``Consumer._new_offset`` checks
``min(acked) - committed > 1``), and while a rebalance revokes a partition it
forgets the committed offset and commits the first run of acks with no check
at all (``Consumer.on_partitions_revoked`` pops ``_committed_offset`` before
``wait_empty`` commits). The masker's acks can come out of order: a batch with
nothing to publish is done at once, a DLQ pointer goes to another topic, a
retried send can be confirmed after a later one. So the masker never hands
faust an ack out of order: an offset is acked only once every offset of its
partition taken before it is done, and then faust's acks are one contiguous
run from the position it started reading at, which its rule commits right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Taken(Generic[T]):
    message: T
    done: bool = False


class AckInOrder(Generic[T]):
    """Holds each taken message until it and every earlier one of its partition are done.

    ``ack`` is called with the messages in the order they were taken, per
    partition. A message that is never done (its output was not delivered)
    holds back every later ack of its partition, so nothing after it becomes
    committable.
    """

    def __init__(self, ack: Callable[[T], object]) -> None:
        self._ack = ack
        # partition -> offset -> message, in the order taken (dicts keep it)
        self._waiting: dict[int, dict[int, _Taken[T]]] = {}

    def taken(self, partition: int, offset: int, message: T) -> None:
        """Note a message the agent started on; it is acked only after :meth:`done`."""
        self._waiting.setdefault(partition, {})[offset] = _Taken(message)

    def done(self, partition: int, offset: int) -> None:
        """Mark one message done; ack it and the done ones after it once nothing earlier waits."""
        waiting = self._waiting.get(partition)
        entry = None if waiting is None else waiting.get(offset)
        if waiting is None or entry is None:
            return  # not taken here (or acked already): nothing to release
        entry.done = True
        while waiting:
            first = next(iter(waiting))
            head = waiting[first]
            if not head.done:
                break
            del waiting[first]
            self._ack(head.message)

    def waiting(self, partition: int) -> int:
        """How many messages of ``partition`` are taken and not yet acked."""
        return len(self._waiting.get(partition, {}))
