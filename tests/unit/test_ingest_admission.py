"""Per-site rate limits and deterministic session sampling."""

from __future__ import annotations

from services.ingest.admission import (
    SiteRateLimiter,
    TokenBucket,
    retry_after_s,
    session_sampled_in,
)


def test_a_bucket_admits_its_burst_then_refuses_until_it_refills() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, tokens=3.0, updated_s=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5
    assert bucket.take(0.5) == 0.0


def test_sites_have_separate_buckets() -> None:
    limiter = SiteRateLimiter()
    assert limiter.wait_s("a", 1.0, 1, 0.0) == 0.0
    assert limiter.wait_s("a", 1.0, 1, 0.0) > 0
    assert limiter.wait_s("b", 1.0, 1, 0.0) == 0.0


def test_a_lowered_limit_applies_at_once() -> None:
    limiter = SiteRateLimiter()
    limiter.wait_s("a", 100.0, 100, 0.0)
    assert limiter.wait_s("a", 100.0, 1, 0.0) == 0.0  # tokens cut to the new burst
    assert limiter.wait_s("a", 100.0, 1, 0.0) > 0


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_s(0.01) == 1
    assert retry_after_s(2.2) == 3
    assert retry_after_s(float("inf")) == 3600


def test_sampling_is_deterministic_per_session() -> None:
    decisions = {session_sampled_in("shop", f"s-{i}", 0.3) for _ in range(3) for i in [7]}
    assert len(decisions) == 1


def test_sampling_keeps_about_the_sample_rate_of_sessions() -> None:
    kept = sum(session_sampled_in("shop", f"s-{i}", 0.25) for i in range(4000))
    assert 800 < kept < 1200


def test_rate_one_keeps_every_session_and_zero_keeps_none() -> None:
    assert all(session_sampled_in("shop", f"s-{i}", 1.0) for i in range(100))
    assert not any(session_sampled_in("shop", f"s-{i}", 0.0) for i in range(100))
