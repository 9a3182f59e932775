"""Who may send and how much: per-site rate limits and session sampling (pure)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``."""

    rate: float
    burst: float
    tokens: float
    updated_s: float

    def take(self, now_s: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; returns 0 on success, else seconds until they would be there."""
        elapsed = max(0.0, now_s - self.updated_s)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated_s = now_s
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return math.inf
        return (cost - self.tokens) / self.rate


class SiteRateLimiter:
    """One token bucket per site, one token per batch; follows live changes of the limits."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def wait_s(self, site_id: str, rate: float, burst: int, now_s: float) -> float:
        """Admit one batch of ``site_id`` (0.0) or say how many seconds until one would be."""
        bucket = self._buckets.get(site_id)
        capacity = float(max(burst, 1))
        if bucket is None:
            bucket = TokenBucket(rate, capacity, capacity, now_s)
            self._buckets[site_id] = bucket
        elif bucket.rate != rate or bucket.burst != capacity:
            bucket.rate = rate
            bucket.burst = capacity
            bucket.tokens = min(bucket.tokens, capacity)
        return bucket.take(now_s)


def retry_after_s(wait_s: float) -> int:
    """A ``Retry-After`` value in whole seconds for a wait (at least 1, capped at an hour)."""
    if math.isinf(wait_s):
        return 3600
    return max(1, min(3600, math.ceil(wait_s)))


def session_sampled_in(site_id: str, session_id: str, sample_rate: float) -> bool:
    """Whether a session is recorded under ``sample_rate``.

    Deterministic in (site, session), the same in every replica and every
    restart, so a session is kept or dropped whole, batch after batch.
    """
    if sample_rate >= 1.0:
        return True
    if sample_rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{site_id}:{session_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < sample_rate
