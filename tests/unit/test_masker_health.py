"""What the masker's readiness and liveness probes say, from the facts the app feeds in."""

from __future__ import annotations

from services.masker.health import PartitionProgress, not_alive_reason, not_ready_reason

READY = {
    "agent_stopped": False,
    "batch_running_s": 0.0,
    "budget_s": 5.0,
    "stuck_partitions": set[int](),
    "stuck_after_s": 120.0,
}


def test_a_partition_with_lag_and_no_commit_for_the_limit_is_stuck() -> None:
    progress = PartitionProgress(stuck_after_s=120)

    assert not progress.observe(0, committed=10, end=50, now=1000)
    assert not progress.observe(0, committed=10, end=60, now=1119)
    assert progress.observe(0, committed=10, end=60, now=1120)
    assert progress.stuck == {0}


def test_a_partition_that_commits_or_has_no_lag_is_not_stuck() -> None:
    progress = PartitionProgress(stuck_after_s=120)
    progress.observe(0, committed=10, end=50, now=1000)
    progress.observe(1, committed=7, end=7, now=1000)

    assert not progress.observe(0, committed=11, end=50, now=1200)  # moved: timer restarts
    assert not progress.observe(1, committed=7, end=7, now=1200)  # caught up
    assert progress.stuck == set()


def test_a_stuck_partition_recovers_once_it_commits() -> None:
    progress = PartitionProgress(stuck_after_s=10)
    progress.observe(0, committed=1, end=5, now=0)
    progress.observe(0, committed=1, end=5, now=10)

    progress.observe(0, committed=2, end=5, now=11)

    assert progress.stuck == set()


def test_a_partition_moved_to_another_worker_is_forgotten() -> None:
    progress = PartitionProgress(stuck_after_s=10)
    progress.observe(3, committed=1, end=5, now=0)
    progress.observe(3, committed=1, end=5, now=10)

    progress.keep_only({0, 1})

    assert progress.stuck == set()


def test_ready_when_the_agent_runs_no_batch_is_over_budget_and_no_partition_is_stuck() -> None:
    assert not_ready_reason(**READY) is None  # type: ignore[arg-type]


def test_not_ready_when_the_agent_has_stopped() -> None:
    reason = not_ready_reason(**{**READY, "agent_stopped": True})  # type: ignore[arg-type]
    assert reason == "the masking agent has stopped"


def test_not_ready_while_a_batch_is_over_its_budget() -> None:
    reason = not_ready_reason(**{**READY, "batch_running_s": 6.0})  # type: ignore[arg-type]
    assert reason is not None and "budget 5 s" in reason


def test_not_ready_while_a_partition_is_stuck() -> None:
    reason = not_ready_reason(**{**READY, "stuck_partitions": {2, 0}})  # type: ignore[arg-type]
    assert reason is not None and "partitions 0,2" in reason


def test_alive_through_a_slow_batch_until_the_stuck_limit() -> None:
    assert not_alive_reason(agent_stopped=False, batch_running_s=60, stuck_after_s=120) is None
    assert not_alive_reason(agent_stopped=False, batch_running_s=121, stuck_after_s=120)


def test_not_alive_once_the_agent_has_stopped() -> None:
    assert not_alive_reason(agent_stopped=True, batch_running_s=0, stuck_after_s=120)
