"""Login throttling: failed attempts counted per account and per client address.

A fixed number of failures inside a sliding window locks the key until the
oldest failure leaves the window. Counters live in the memory of one console
replica (docs/console.md says what that means with several replicas).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class FailureWindow:
    """Failures of one kind of key (account or address) inside ``window_s`` seconds."""

    max_failures: int
    window_s: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        failures = self._recent(key, now)
        if len(failures) < self.max_failures:
            return 0.0
        return failures[0] + self.window_s - now

    def record_failure(self, key: str, now: float) -> None:
        """Count one failed attempt of ``key``."""
        self._recent(key, now)
        self._failures.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        """Forget ``key``'s failures (after a successful login)."""
        self._failures.pop(key, None)

    def prune(self, now: float) -> None:
        """Forget keys whose failures all left the window (bounds memory under spraying)."""
        for key in list(self._failures):
            self._recent(key, now)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass
class LoginThrottle:
    """Both limits: an attempt is refused if its account or its address is locked."""

    by_account: FailureWindow
    by_address: FailureWindow

    @classmethod
    def create(
        cls, *, account_failures: int, address_failures: int, window_s: float
    ) -> LoginThrottle:
        """A throttle with the given limits over one window length."""
        return cls(
            FailureWindow(account_failures, window_s), FailureWindow(address_failures, window_s)
        )

    def retry_after(self, account: str, address: str, now: float) -> float:
        """Seconds to wait before this account may try from this address (0: go ahead)."""
        return max(
            self.by_account.retry_after(account, now), self.by_address.retry_after(address, now)
        )

    def record_failure(self, account: str, address: str, now: float) -> None:
        """Count a failed login against both keys."""
        self.by_account.record_failure(account, now)
        self.by_address.record_failure(address, now)

    def record_success(self, account: str) -> None:
        """A good login clears the account's failures (the address keeps its count)."""
        self.by_account.clear(account)

    def prune(self, now: float) -> None:
        """Forget every key with no failure left in the window."""
        self.by_account.prune(now)
        self.by_address.prune(now)
