"""The scale-out benchmark's figures (bench/bench_scaleout.py): what is counted, in what order."""

from __future__ import annotations

import argparse

import pytest

from bench.bench_scaleout import StageWindow, parse_variant, phase_order, two_vs_one


def window(workers: int, busy_cpu_s: float, idle: float = 0.0, events: float = 1e6) -> StageWindow:
    return StageWindow(
        workers=workers,
        idle_cpu_per_s=(idle,) * workers,
        busy_cpu_s=busy_cpu_s,
        busy_s=100.0,
        events=events,
    )


def test_cpu_per_million_events_counts_everything_the_processes_spent() -> None:
    assert window(1, busy_cpu_s=30.0, events=500_000).cpu_s_per_million == 60.0


def test_the_per_event_part_leaves_out_each_process_s_idle_cost_over_the_window() -> None:
    # Two processes idling at 0.05 CPU-s/s each spend 10 CPU-s in 100 s with no traffic.
    two = window(2, busy_cpu_s=40.0, idle=0.05)
    assert two.idle_cpu_s == pytest.approx(10.0)
    assert two.per_event_cpu_s_per_million == pytest.approx(30.0)


def test_a_second_worker_s_idle_cost_shows_in_the_raw_ratio_not_the_per_event_one() -> None:
    one = [window(1, busy_cpu_s=30.0, idle=0.05), window(1, busy_cpu_s=32.0, idle=0.05)]
    two = [window(2, busy_cpu_s=35.0, idle=0.05), window(2, busy_cpu_s=37.0, idle=0.05)]
    figures = two_vs_one(one + two)
    assert figures["ratio"] == pytest.approx(36.0 / 31.0)
    assert figures["per_event_ratio"] == pytest.approx((36.0 - 10.0) / (31.0 - 5.0))
    assert figures["idle_cpu_ms_per_s_per_process"] == pytest.approx(50.0)


def test_a_window_without_events_is_left_out_of_the_medians() -> None:
    figures = two_vs_one([window(1, 30.0), window(1, 5.0, events=0), window(2, 33.0)])
    assert figures["ratio"] == pytest.approx(1.1)


def test_phases_alternate_one_and_two_workers_and_flip_the_variants_every_round() -> None:
    assert phase_order(2, ["new", "old"]) == [
        ("new", 1),
        ("new", 2),
        ("old", 1),
        ("old", 2),
        ("old", 1),
        ("old", 2),
        ("new", 1),
        ("new", 2),
    ]


def test_a_variant_is_a_name_and_its_variables() -> None:
    assert parse_variant("standby0:MASKER_STANDBY_REPLICAS=0,LOG_LEVEL=INFO") == (
        "standby0",
        {"MASKER_STANDBY_REPLICAS": "0", "LOG_LEVEL": "INFO"},
    )
    assert parse_variant("plain:") == ("plain", {})


def test_a_variant_without_a_name_or_with_a_bare_word_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="NAME:VAR=VALUE"):
        parse_variant("MASKER_STANDBY_REPLICAS=0")
    with pytest.raises(argparse.ArgumentTypeError, match="not VAR=VALUE"):
        parse_variant("x:MASKER_STANDBY_REPLICAS")
