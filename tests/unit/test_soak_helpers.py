"""The soak's bookkeeping (bench/soak/accounting.py): counting and timing rules."""

from __future__ import annotations

import pytest

from bench.soak.accounting import (
    StoredBatch,
    cpu_s_per_million,
    delivery_report,
    mean_rate,
    offset_runs,
    rates,
    recovery_s,
    running_total,
)


def test_every_acknowledged_batch_stored_once_reports_nothing_missing_or_duplicated() -> None:
    acked = {("s1", 0): 50, ("s1", 1): 30}
    store = {("s1", 0): StoredBatch(50, 50), ("s1", 1): StoredBatch(30, 30)}
    report = delivery_report(acked, [store])
    assert (report.acknowledged, report.stored, report.missing) == (80, 80, 0)
    assert report.visible_duplicates == 0
    assert report.cross_store_copies == 0


def test_an_acknowledged_batch_in_no_store_counts_its_events_missing() -> None:
    acked = {("s1", 0): 50, ("s2", 0): 20}
    report = delivery_report(acked, [{("s1", 0): StoredBatch(50, 50)}, {}])
    assert (report.stored, report.missing) == (50, 20)


def test_rows_a_store_shows_twice_are_visible_duplicates() -> None:
    report = delivery_report({("s1", 0): 50}, [{("s1", 0): StoredBatch(rows=60, distinct=50)}])
    assert report.visible_duplicates == 10
    assert (report.stored, report.missing) == (50, 0)


def test_a_batch_in_two_stores_is_stored_once_and_counted_as_a_cross_store_copy() -> None:
    batch = StoredBatch(50, 50)
    report = delivery_report({("s1", 0): 50}, [{("s1", 0): batch}, {("s1", 0): batch}])
    assert (report.stored, report.missing, report.visible_duplicates) == (50, 0, 0)
    assert report.cross_store_copies == 50


def test_a_stored_batch_whose_answer_was_lost_is_counted_apart_not_as_stored() -> None:
    report = delivery_report({}, [{("s1", 0): StoredBatch(50, 50)}])
    assert (report.acknowledged, report.stored, report.unacknowledged_stored) == (0, 0, 50)


def test_running_total_adds_up_across_a_restarted_process_counting_from_zero() -> None:
    assert running_total([0, 100, 250, 30, 80]) == [0, 100, 250, 280, 330]


def test_rates_use_the_samples_of_the_window_before_each_sample() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    totals = [0.0, 10.0, 20.0, 20.0, 20.0]
    assert rates(times, totals, window_s=2.0) == [0.0, 10.0, 10.0, 5.0, 0.0]


def test_mean_rate_spans_the_samples_inside_the_interval() -> None:
    times = [0.0, 1.0, 2.0, 3.0]
    totals = [0.0, 100.0, 300.0, 600.0]
    assert mean_rate(times, totals, 1.0, 3.0) == pytest.approx(250.0)


def test_recovery_is_the_first_sample_back_above_ninety_percent_after_the_dip() -> None:
    times = [0, 1, 2, 3, 4, 5, 6]
    rate = [100, 100, 40, 10, 80, 95, 100]
    assert recovery_s(times, rate, fault_at=1.5, baseline=100) == pytest.approx(3.5)


def test_a_fault_without_a_dip_recovers_in_zero_seconds() -> None:
    assert recovery_s([0, 1, 2], [100, 95, 100], fault_at=0.5, baseline=100) == 0.0


def test_a_dip_still_open_at_the_next_fault_has_no_recovery_time() -> None:
    times = [0, 1, 2, 3, 4]
    rate = [100, 10, 10, 100, 100]
    assert recovery_s(times, rate, fault_at=0.5, baseline=100, until=3) is None


def test_cpu_per_million_events() -> None:
    assert cpu_s_per_million(12.0, 400_000) == pytest.approx(30.0)
    assert cpu_s_per_million(1.0, 0) == 0.0


def test_offset_runs_group_consecutive_offsets_in_order() -> None:
    assert offset_runs([7, 3, 4, 5, 9, 8]) == [[3, 5], [7, 9]]
    assert offset_runs([]) == []
