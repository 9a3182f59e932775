"""The masker commits offsets from faust's timer, never from its fetch loop (issue 16 item 3).

faust's fetch loop (``Consumer._drain_messages``) commits every
``broker_commit_every`` acks *between* taking a fetched message and handing it
on, and only then records that message's offset as read. A rebalance that
runs while that commit waits (the commit waits for the producer's flush and
for any other commit, e.g. the one of the rebalance itself) seeks the
partition back to its committed offset, and the loop then overwrites that
seek with the stale message's offset: every re-fetched message below it is
dropped as "already read", never reaches the agent, and is committed past at
the next rebalance. The first test runs faust's own loop through exactly that;
the masker's settings keep it off the path.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from services.masker.app import faust_app
from services.masker.settings import MaskerSettings
from services.shared import topics

RAW0 = TP(topics.RAW, 0)


class FetchLoopHarness:
    """The parts of a faust Consumer its fetch loop touches, with a rebalance in ``commit``."""

    def __init__(self, commit_every: int, rebalance_in: str, fetches: list[list[int]]) -> None:
        self._commit_every = commit_every
        self.rebalance_in = rebalance_in  # "commit" or "fetch": where the loop waits meanwhile
        self._n_acked = 0
        self._read_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._fetches = fetches
        self.delivered: list[int] = []
        self.should_stop = False
        self.consumer_stopped_errors = ()
        self.suspend_flow = asyncio.Event()
        self.log = SimpleNamespace(dev=lambda *a: None, info=lambda *a: None)
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=True))
        self._stopped = SimpleNamespace(is_set=lambda: not self._fetches)

    def rebalance(self) -> None:
        # The partition stays here; faust's recovery seeks it back to the
        # committed offset 5 (perform_seek) and resumes the flow.
        self._read_offset[RAW0] = 5

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109
        if self.rebalance_in == "fetch" and len(self._fetches) == 1:
            self.rebalance()  # while the loop waits for its next fetch
        for offset in self._fetches.pop(0):
            yield RAW0, SimpleNamespace(offset=offset, topic=topics.RAW, key=b"", value=b"")

    async def callback(self, message: Any) -> None:
        self.delivered.append(message.offset)

    async def commit(self) -> bool:
        if self.rebalance_in == "commit":
            self.rebalance()  # while the loop waits for its commit
        return True

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    async def wait_first(self, *coros: Coroutine[Any, Any, Any]) -> None:
        first, *others = coros
        for other in others:
            other.close()
        await first

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        pass


def run_fetch_loop(commit_every: int, rebalance_in: str) -> FetchLoopHarness:
    """Read up to 9, fetch 10, a rebalance seeks back to 5, then 5..11 are fetched again."""
    consumer = FetchLoopHarness(commit_every, rebalance_in, [[10], [5, 6, 7, 8, 9, 10, 11]])
    consumer._read_offset[RAW0] = 9
    consumer._n_acked = 1_000
    fetcher = SimpleNamespace(_stopped=SimpleNamespace(is_set=lambda: False))
    asyncio.run(Consumer._drain_messages(consumer, fetcher))  # type: ignore[arg-type]
    return consumer


def test_faust_drops_the_messages_re_fetched_after_a_rebalance_that_ran_during_its_commit() -> None:
    consumer = run_fetch_loop(commit_every=1_000, rebalance_in="commit")
    # The stale 10 is handed on after the seek (the stream skips it: an old
    # generation) and its offset overwrites the seek: 5..9 never reach the agent.
    assert consumer.delivered == [10, 10, 11]


def test_a_rebalance_while_the_loop_waits_for_a_fetch_hands_on_every_message_again() -> None:
    consumer = run_fetch_loop(commit_every=2**62, rebalance_in="fetch")
    assert consumer.delivered == [10, 5, 6, 7, 8, 9, 10, 11]


def test_the_masker_commits_only_from_faust_timer() -> None:
    app = faust_app(MaskerSettings())
    assert app.conf.broker_commit_every >= 2**62
    assert app.conf.broker_commit_interval == 1.0
