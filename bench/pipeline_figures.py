"""Pure arithmetic of the pipeline benchmark: reading the Kafka tools' output, the
step verdict and the capacity figures. No IO, so unit tests call it directly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Kafka's ProducerPerformance ends with one summary line, e.g.
# "50000 records sent, 9765.6 records/sec (95.37 MB/sec), 310.1 ms avg latency,
#  650.0 ms max latency, 300 ms 50th, 600 ms 95th, 640 ms 99th, 650 ms 99.9th."
_PRODUCER_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<records_per_s>[\d.]+) records/sec "
    r"\((?P<mb_per_s>[\d.]+) MB/sec\), (?P<avg_ms>[\d.]+) ms avg latency, "
    r"(?P<max_ms>[\d.]+) ms max latency, (?P<p50_ms>\d+) ms 50th, (?P<p95_ms>\d+) ms 95th, "
    r"(?P<p99_ms>\d+) ms 99th"
)
# ConsumerPerformance prints a header line of these names, then one line of values.
_CONSUMER_FIELDS = ("data.consumed.in.nMsg", "fetch.time.ms", "fetch.MB.sec", "fetch.nMsg.sec")


class ToolOutputError(ValueError):
    """A Kafka performance tool's output did not hold the expected summary."""


@dataclass(frozen=True, slots=True)
class ProducerRun:
    """ProducerPerformance's summary: how fast the broker took records from one producer."""

    records: int
    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    p95_latency_ms: float


@dataclass(frozen=True, slots=True)
class ConsumerRun:
    """ConsumerPerformance's summary, fetch phase only (the group join is not counted)."""

    records: int
    fetch_s: float
    mb_per_s: float
    records_per_s: float


def parse_producer_performance(output: str) -> ProducerRun:
    """The final summary of ``org.apache.kafka.tools.ProducerPerformance`` output.

    The tool prints a progress line every 5 s in the same shape; the summary is
    the last one (it alone has the 99.9th percentile).
    """
    lines = [line for line in output.splitlines() if "99.9th" in line]
    match = _PRODUCER_SUMMARY.search(lines[-1]) if lines else None
    if match is None:
        raise ToolOutputError("ProducerPerformance printed no 'records sent ... 99.9th' summary")
    return ProducerRun(
        records=int(match["records"]),
        records_per_s=float(match["records_per_s"]),
        mb_per_s=float(match["mb_per_s"]),
        avg_latency_ms=float(match["avg_ms"]),
        p95_latency_ms=float(match["p95_ms"]),
    )


def parse_consumer_performance(output: str) -> ConsumerRun:
    """The summary of ``org.apache.kafka.tools.ConsumerPerformance`` (header, then values)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for index, line in enumerate(lines[:-1]):
        names = [name.strip() for name in line.split(",")]
        if all(field in names for field in _CONSUMER_FIELDS):
            values = [value.strip() for value in lines[index + 1].split(",")]
            if len(values) != len(names):
                break
            row = dict(zip(names, values, strict=True))
            return ConsumerRun(
                records=int(row["data.consumed.in.nMsg"]),
                fetch_s=float(row["fetch.time.ms"]) / 1000,
                mb_per_s=float(row["fetch.MB.sec"]),
                records_per_s=float(row["fetch.nMsg.sec"]),
            )
    raise ToolOutputError("ConsumerPerformance printed no header + values summary")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def cpu_s_per_million(cpu_s: float, events: int) -> float:
    """CPU seconds a stage spent per million events it carried."""
    return cpu_s / events * 1e6 if events else math.nan


def cores_per_100k(cpu_s_per_m_events: float) -> float:
    """Cores a stage keeps busy at 100,000 events/s: CPU-s per M events x 0.1.

    100k events/s is 0.1 M events each second, each costing that many CPU seconds.
    """
    return cpu_s_per_m_events * 0.1


def events_per_core_s(cpu_s_per_m_events: float) -> float:
    """Events per second one fully busy core of a stage carries."""
    return 1e6 / cpu_s_per_m_events if cpu_s_per_m_events > 0 else math.inf


def cores_needed(cpu_s_per_m_events: float, events_per_s: float, utilisation: float) -> float:
    """Cores to run a stage at ``events_per_s`` with each core busy at most ``utilisation``."""
    return cpu_s_per_m_events * events_per_s / 1e6 / utilisation


@dataclass(frozen=True, slots=True)
class StepVerdict:
    """Whether an offered rate was sustained, and if not why (for the table)."""

    sustained: bool
    reason: str


def step_verdict(
    *,
    offered_events: int,
    accepted_events: int,
    refused_requests: int,
    freshness_p95_s: float,
    freshness_limit_s: float,
    markers_missing: int,
    min_accepted_fraction: float = 0.98,
) -> StepVerdict:
    """A rate is sustained when all was accepted, nothing lost and p95 freshness in limit.

    ``accepted_events`` below ``min_accepted_fraction`` of the offered events means
    the load generator fell behind (the gateway answered too slowly for the open
    loop's in-flight cap): the rate was not carried even without errors.
    """
    if refused_requests:
        return StepVerdict(False, f"{refused_requests} requests not accepted (non-202 or failed)")
    if markers_missing:
        return StepVerdict(False, f"{markers_missing} marker sessions never became queryable")
    if offered_events and accepted_events < min_accepted_fraction * offered_events:
        share = accepted_events / offered_events
        return StepVerdict(False, f"only {share:.0%} of the offered events were sent in time")
    if not freshness_p95_s <= freshness_limit_s:
        return StepVerdict(False, f"freshness p95 {freshness_p95_s:.2f} s > {freshness_limit_s} s")
    return StepVerdict(True, "")


def next_rate(rate: float, factor: float) -> float:
    """The next offered rate, rounded to a readable 100 events/s (and at least 100 more)."""
    return max(rate + 100, round(rate * factor / 100) * 100)


@dataclass(frozen=True, slots=True)
class CpuLine:
    """A stage's cores as a line in its rate: ``idle_cores + cpu_s_per_m_events x M events/s``.

    Fitted over the steps: the slope is what each further event costs, the
    intercept what the stage burns with no traffic (polls, timers, merges, and
    the benchmark's own marker polling of the read API).
    """

    idle_cores: float
    cpu_s_per_m_events: float

    def cores_at(self, events_per_s: float) -> float:
        """Cores busy at ``events_per_s``."""
        return self.idle_cores + self.cpu_s_per_m_events * events_per_s / 1e6


def fit_cpu_line(events_per_s: list[float], cores: list[float]) -> CpuLine:
    """Least-squares line through (rate, cores) points; needs two different rates."""
    n = len(events_per_s)
    if n != len(cores) or n < 2:
        raise ValueError("a line needs at least two (rate, cores) points")
    mean_x = sum(events_per_s) / n
    mean_y = sum(cores) / n
    sxx = sum((x - mean_x) ** 2 for x in events_per_s)
    if sxx == 0:
        raise ValueError("a line needs at least two different rates")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(events_per_s, cores, strict=True))
    slope = sxy / sxx
    return CpuLine(idle_cores=mean_y - slope * mean_x, cpu_s_per_m_events=slope * 1e6)
