"""When the sink writer starts an insert (:func:`services.sink.batching.insert_due`)."""

from __future__ import annotations

import math

from services.sink.batching import insert_due
from services.sink.settings import SinkSettings

SETTINGS = SinkSettings(
    batch_max_rows=100_000,
    batch_max_bytes=32_000_000,
    batch_max_seconds=1.0,
    batch_min_rows=5_000,
    min_insert_interval_s=1.0,
)
NEVER = math.inf  # no insert yet


def due(
    rows: int,
    *,
    size: int = 0,
    age_s: float = 0.0,
    since_last_insert_s: float = NEVER,
    caught_up: bool = False,
    after_full_batch: bool = False,
) -> bool:
    return insert_due(
        SETTINGS,
        rows=rows,
        size=size,
        age_s=age_s,
        since_last_insert_s=since_last_insert_s,
        caught_up=caught_up,
        after_full_batch=after_full_batch,
    )


def test_first_batch_goes_as_soon_as_it_has_the_minimum_rows() -> None:
    assert due(5_000)
    assert not due(4_999)


def test_full_or_old_batch_goes_whatever_the_interval() -> None:
    assert due(100_000, since_last_insert_s=0.0)
    assert due(10, size=32_000_000, since_last_insert_s=0.0)
    assert due(10, age_s=1.0, since_last_insert_s=0.0)


def test_small_batch_waits_most_of_the_interval_a_nearly_full_one_almost_none() -> None:
    assert not due(5_000, since_last_insert_s=0.9)
    assert due(5_000, since_last_insert_s=0.95)
    assert not due(90_000, since_last_insert_s=0.05)
    assert due(90_000, since_last_insert_s=0.1)


def test_trickle_below_the_minimum_waits_for_the_interval_or_the_time_limit() -> None:
    # Caught up (a poll returned nothing): a trickle goes once the interval has passed.
    assert not due(40, caught_up=True, since_last_insert_s=0.5)
    assert due(40, caught_up=True, since_last_insert_s=1.0)
    assert not due(40, since_last_insert_s=5.0)  # more is arriving: keep batching
    assert due(40, age_s=1.0, since_last_insert_s=0.0)


def test_tail_of_a_backlog_goes_at_once_when_caught_up() -> None:
    assert due(40, caught_up=True, after_full_batch=True, since_last_insert_s=0.0)
    assert not due(40, after_full_batch=True, since_last_insert_s=0.0)


def test_steady_traffic_gives_about_one_insert_per_second_beyond_the_forced_ones() -> None:
    """Events arriving at a steady rate: inserts/s ≤ 1/interval + rate/max_rows."""
    for rate in (2_000, 6_000, 20_000, 60_000, 200_000, 600_000):
        step = 0.001
        now = since = 0.0
        pending = 0.0
        inserts = 0
        while now < 20.0:
            now += step
            since += step
            pending += rate * step
            if due(int(pending), age_s=since, since_last_insert_s=since):
                inserts += 1
                pending = 0.0
                since = 0.0
        per_second = inserts / 20.0
        assert per_second <= 1 / SETTINGS.min_insert_interval_s + rate / 100_000 + 0.1
        if rate >= SETTINGS.batch_min_rows:
            assert 20.0 * rate / inserts >= SETTINGS.batch_min_rows * 0.99
