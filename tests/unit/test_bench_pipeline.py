"""The pipeline benchmark's pure helpers: reading Kafka's performance tools, the
capacity arithmetic and the step verdict (the benchmark itself is not a test)."""

from __future__ import annotations

import math

import pytest

from bench.pipeline_figures import (
    CpuLine,
    StepVerdict,
    ToolOutputError,
    cores_needed,
    cores_per_100k,
    cpu_s_per_million,
    events_per_core_s,
    fit_cpu_line,
    next_rate,
    parse_consumer_performance,
    parse_producer_performance,
    percentile,
    step_verdict,
)
from bench.pipeline_load import session_id_for

# Output of Kafka 4.1.1's tools on this project's broker (progress lines included).
PRODUCER_OUTPUT = """\
958 records sent, 191.5 records/sec (3.65 MB/sec), 1617.9 ms avg latency, 2361.0 ms max latency.
10920 records sent, 2178.3 records/sec (41.55 MB/sec), 802.3 ms avg latency, 3068.0 ms max latency.
20000 records sent, 1024.6 records/sec (19.54 MB/sec), 1274.09 ms avg latency, 4110.00 ms max \
latency, 1028 ms 50th, 3758 ms 95th, 4004 ms 99th, 4085 ms 99.9th.
"""
CONSUMER_OUTPUT = """\
[2026-12-01 12:31:25,100] WARN something the broker said (org.apache.kafka.clients.NetworkClient)
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, \
rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-01 12:31:25:216, 2026-12-01 12:31:29:763, 381.4697, 83.8948, 20000, 4398.5045, 1173, \
3374, 113.0616, 5927.6823
"""


def test_producer_summary_is_the_last_line_with_percentiles() -> None:
    run = parse_producer_performance(PRODUCER_OUTPUT)
    assert run.records == 20000
    assert run.records_per_s == pytest.approx(1024.6)
    assert run.mb_per_s == pytest.approx(19.54)
    assert run.avg_latency_ms == pytest.approx(1274.09)
    assert run.p95_latency_ms == 3758


def test_producer_output_without_summary_is_an_error() -> None:
    progress_only = PRODUCER_OUTPUT.splitlines()[0]
    with pytest.raises(ToolOutputError, match="summary"):
        parse_producer_performance(progress_only)


def test_consumer_summary_counts_the_fetch_phase_only() -> None:
    run = parse_consumer_performance(CONSUMER_OUTPUT)
    assert run.records == 20000
    assert run.fetch_s == pytest.approx(3.374)
    assert run.mb_per_s == pytest.approx(113.0616)
    assert run.records_per_s == pytest.approx(5927.6823)


def test_consumer_output_without_values_line_is_an_error() -> None:
    header_only = CONSUMER_OUTPUT.splitlines()[1]
    with pytest.raises(ToolOutputError):
        parse_consumer_performance(header_only)


def test_cpu_seconds_per_million_events() -> None:
    assert cpu_s_per_million(3.0, 150_000) == pytest.approx(20.0)
    assert math.isnan(cpu_s_per_million(1.0, 0))


def test_cores_per_100k_events_per_second_is_a_tenth_of_cpu_seconds_per_million() -> None:
    # 25 CPU-s per M events: 100k events/s is 0.1 M events each second -> 2.5 cores.
    assert cores_per_100k(25.0) == pytest.approx(2.5)


def test_one_busy_core_carries_a_million_over_cpu_seconds_per_million() -> None:
    assert events_per_core_s(25.0) == pytest.approx(40_000)
    assert events_per_core_s(0.0) == math.inf


def test_cores_needed_leaves_headroom_for_the_utilisation_target() -> None:
    # 25 CPU-s per M at 200k events/s = 5 cores busy; at most 70 % busy -> 7.14 cores.
    assert cores_needed(25.0, 200_000, 0.7) == pytest.approx(5 / 0.7)


def test_cpu_line_separates_idle_cores_from_the_cost_per_event() -> None:
    rates = [1000.0, 2000.0, 4000.0]
    cores = [0.2 + 30e-6 * r for r in rates]  # 0.2 idle cores + 30 CPU-s per M events
    line = fit_cpu_line(rates, cores)
    assert line.idle_cores == pytest.approx(0.2)
    assert line.cpu_s_per_m_events == pytest.approx(30.0)
    assert line.cores_at(10_000) == pytest.approx(0.5)


def test_cpu_line_needs_two_different_rates() -> None:
    with pytest.raises(ValueError, match="two"):
        fit_cpu_line([1000.0, 1000.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="two"):
        fit_cpu_line([1000.0], [0.1])


def test_cpu_line_at_zero_rate_is_its_idle_cores() -> None:
    assert CpuLine(idle_cores=0.3, cpu_s_per_m_events=50.0).cores_at(0) == pytest.approx(0.3)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.95) == 19.0
    assert percentile(values, 0.5) == 10.0
    assert math.isnan(percentile([], 0.5))


def verdict_of(**changes: float) -> StepVerdict:
    """The verdict of a healthy step (all accepted, p95 1.9 s of 2 s) with ``changes``."""
    step: dict[str, float] = {
        "offered_events": 10_000,
        "accepted_events": 10_000,
        "refused_requests": 0,
        "freshness_p95_s": 1.9,
        "freshness_limit_s": 2.0,
        "markers_missing": 0,
    }
    step.update(changes)
    return step_verdict(
        offered_events=int(step["offered_events"]),
        accepted_events=int(step["accepted_events"]),
        refused_requests=int(step["refused_requests"]),
        freshness_p95_s=step["freshness_p95_s"],
        freshness_limit_s=step["freshness_limit_s"],
        markers_missing=int(step["markers_missing"]),
    )


def test_step_within_the_freshness_limit_with_everything_accepted_is_sustained() -> None:
    assert verdict_of() == StepVerdict(True, "")


def test_step_over_the_freshness_limit_is_not_sustained() -> None:
    verdict = verdict_of(freshness_p95_s=2.4)
    assert not verdict.sustained
    assert "2.40 s > 2.0 s" in verdict.reason


def test_step_with_refused_requests_is_not_sustained() -> None:
    verdict = verdict_of(refused_requests=1, accepted_events=9_950, freshness_p95_s=0.5)
    assert not verdict.sustained
    assert "1 requests not accepted" in verdict.reason


def test_step_whose_load_fell_behind_is_not_sustained() -> None:
    verdict = verdict_of(accepted_events=9_000, freshness_p95_s=0.5)
    assert not verdict.sustained
    assert "90%" in verdict.reason


def test_step_with_a_marker_never_listed_is_not_sustained() -> None:
    verdict = verdict_of(markers_missing=2, freshness_p95_s=math.inf)
    assert not verdict.sustained
    assert "2 marker sessions" in verdict.reason


def test_next_rate_grows_by_the_factor_in_steps_of_100() -> None:
    assert next_rate(4000, 1.4) == 5600
    assert next_rate(600, 1.4) == 800
    assert next_rate(100, 1.4) == 200  # at least 100 more


def test_rewritten_session_id_keeps_length_and_alphabet() -> None:
    template = "abcdefghijklmnopqrstuvwx"
    rewritten = session_id_for(template, tag=3, cycle=17)
    assert rewritten == "abcdefghijkl" + "0003" + "00000011"
    assert len(rewritten) == len(template)
    assert session_id_for(template, 3, 18) != rewritten
