"""What the masker's probes report (pure; the faust app feeds it facts).

Readiness (``/readyz``) fails while the masker cannot make progress for a
while: the agent has stopped, a batch is over its time budget, or a partition
with lag has not committed for ``MASKER_STUCK_AFTER_S``. Liveness (``/healthz``)
fails only when a restart is the cure: the agent has stopped, or one batch has
been masking for ``MASKER_STUCK_AFTER_S`` (the budget normally ends a batch long
before). docs/masker-operations.md lists the metrics and alerts for each.
"""

from __future__ import annotations


class PartitionProgress:
    """Which partitions have lag but have not committed for ``stuck_after_s`` seconds."""

    def __init__(self, stuck_after_s: float) -> None:
        self.stuck_after_s = stuck_after_s
        # partition -> (committed offset, when it was first seen at that offset)
        self._since: dict[int, tuple[int, float]] = {}
        self.stuck: set[int] = set()

    def observe(self, partition: int, committed: int, end: int, now: float) -> bool:
        """Record a partition's committed and end offsets at ``now``; True if it is stuck."""
        seen = self._since.get(partition)
        if end <= committed or seen is None or seen[0] != committed:
            self._since[partition] = (committed, now)
            self.stuck.discard(partition)
            return False
        if now - seen[1] >= self.stuck_after_s:
            self.stuck.add(partition)
            return True
        return False

    def keep_only(self, partitions: set[int]) -> None:
        """Forget partitions no longer assigned to this worker."""
        for partition in set(self._since) - partitions:
            del self._since[partition]
        self.stuck &= partitions


def not_ready_reason(
    *,
    agent_stopped: bool,
    batch_running_s: float,
    budget_s: float,
    stuck_partitions: set[int],
    stuck_after_s: float,
) -> str | None:
    """Why ``/readyz`` fails now, or None."""
    if agent_stopped:
        return "the masking agent has stopped"
    if batch_running_s > budget_s:
        return f"a batch has been masking for {batch_running_s:.0f} s (budget {budget_s:g} s)"
    if stuck_partitions:
        listed = ",".join(str(p) for p in sorted(stuck_partitions))
        return f"recordings.raw partitions {listed} have lag and no commit for {stuck_after_s:g} s"
    return None


def not_alive_reason(
    *, agent_stopped: bool, batch_running_s: float, stuck_after_s: float
) -> str | None:
    """Why ``/healthz`` fails now (a restart is needed), or None."""
    if agent_stopped:
        return "the masking agent has stopped"
    if batch_running_s > stuck_after_s:
        return f"a batch has been masking for {batch_running_s:.0f} s"
    return None
