"""The soak's bookkeeping, pure: what was acknowledged against what is stored,
counters that survive a restarted process, throughput and recovery times.

Nothing here talks to Kafka, ClickHouse or a process; ``bench/soak/run.py``
collects the samples and the unit tests (``tests/unit/test_soak_helpers.py``)
call these with plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# A batch as the browser names it: (session_id, seq). One batch is one Kafka
# message and so one insert's worth of rows: it is stored whole or not at all.
BatchKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One batch as one ClickHouse store holds it (read with ``FINAL``)."""

    rows: int  # event rows visible to a query
    distinct: int  # distinct event indexes among them


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Acknowledged events against stored ones, over every store of the run."""

    acknowledged: int  # events of batches ingest answered 202
    stored: int  # distinct acknowledged events found in some store
    missing: int  # acknowledged events found in no store
    visible_duplicates: int  # rows a query in one store sees twice
    # The same batch stored in two embedded stores (a redelivery after a
    # rebalance moved its partition): one shared ClickHouse would hold it once.
    cross_store_copies: int
    unacknowledged_stored: int  # stored events of batches never answered 202 (a lost answer)


def delivery_report(
    acknowledged: Mapping[BatchKey, int], stores: Sequence[Mapping[BatchKey, StoredBatch]]
) -> DeliveryReport:
    """Compare the events ingest acknowledged per batch with what the stores hold.

    ``acknowledged`` maps each batch answered 202 to its event count. A batch
    is stored once if any store holds all its events; rows a store shows twice
    (``rows - distinct``) are visible duplicates; a batch held by two stores
    counts its extra copies apart, since a shared server would collapse them.
    """
    stored = missing = duplicates = copies = unacknowledged = 0
    keys = set(acknowledged).union(*(store.keys() for store in stores))
    for key in keys:
        held = [store[key] for store in stores if key in store]
        duplicates += sum(batch.rows - batch.distinct for batch in held)
        best = max((batch.distinct for batch in held), default=0)
        copies += sum(batch.distinct for batch in held) - best
        expected = acknowledged.get(key)
        if expected is None:
            unacknowledged += best
            continue
        found = min(best, expected)
        stored += found
        missing += expected - found
    return DeliveryReport(
        acknowledged=sum(acknowledged.values()),
        stored=stored,
        missing=missing,
        visible_duplicates=duplicates,
        cross_store_copies=copies,
        unacknowledged_stored=unacknowledged,
    )


def running_total(samples: Iterable[float]) -> list[float]:
    """A counter's total over time although its process restarted (and counted from 0).

    Prometheus counters start again at 0 in a restarted process: a sample
    lower than the one before means a restart, whose new count all adds up.
    """
    totals: list[float] = []
    total = 0.0
    previous = 0.0
    for value in samples:
        total += value - previous if value >= previous else value
        previous = value
        totals.append(total)
    return totals


def rates(times: Sequence[float], totals: Sequence[float], window_s: float) -> list[float]:
    """Per sample, the rate over the ``window_s`` before it (0 for the first samples)."""
    out: list[float] = []
    start = 0
    for i, now in enumerate(times):
        while start < i and times[start] < now - window_s:
            start += 1
        # ``start`` is the oldest sample still inside the window.
        span = now - times[start]
        out.append((totals[i] - totals[start]) / span if span > 0 else 0.0)
    return out


def mean_rate(times: Sequence[float], totals: Sequence[float], start: float, end: float) -> float:
    """The average rate between ``start`` and ``end`` (the samples nearest inside)."""
    inside = [i for i, t in enumerate(times) if start <= t <= end]
    if len(inside) < 2:
        return 0.0
    first, last = inside[0], inside[-1]
    span = times[last] - times[first]
    return (totals[last] - totals[first]) / span if span > 0 else 0.0


def recovery_s(
    times: Sequence[float],
    rate: Sequence[float],
    fault_at: float,
    baseline: float,
    *,
    until: float = float("inf"),
    fraction: float = 0.9,
) -> float | None:
    """Seconds from ``fault_at`` until the rate is back to ``fraction`` of ``baseline``.

    The rate after a fault first falls below the mark (a dip); recovery is the
    first sample at or above the mark after the dip. Only samples before
    ``until`` (the next fault) count. No dip at all counts as 0 s; a dip that
    has not ended by ``until`` is ``None``.
    """
    mark = fraction * baseline
    dipped = False
    for now, value in zip(times, rate, strict=True):
        if now < fault_at:
            continue
        if now >= until:
            break
        if value < mark:
            dipped = True
        elif dipped:
            return now - fault_at
    return None if dipped else 0.0


def cpu_s_per_million(cpu_s: float, events: float) -> float:
    """CPU-seconds spent per million events (0 when no event was counted)."""
    return cpu_s / events * 1_000_000 if events > 0 else 0.0


def offset_runs(offsets: list[int]) -> list[list[int]]:
    """Sorted offsets as ``[first, last]`` runs of consecutive ones."""
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and offset == runs[-1][1] + 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return runs
