"""The console's pure core: password policy and hashing, throttling, roles, the state records."""

from __future__ import annotations

import pytest

from services.console.passwords import (
    PasswordPolicy,
    hash_password,
    is_common_password,
    verify_password,
)
from services.console.roles import ROLE_ACTIONS, Action, parse_role, role_allows
from services.console.state import (
    Account,
    ApiToken,
    ConsoleState,
    LoginSession,
    Membership,
    record_key,
    record_value,
    sha256_hex,
)
from services.console.throttle import LoginThrottle

IDLE_MS = 30 * 60_000
ABSOLUTE_MS = 12 * 3_600_000


def test_password_hash_is_argon2id_and_verifies() -> None:
    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "correct horse battery stapler")


def test_unknown_account_never_verifies() -> None:
    assert not verify_password(None, "replaypipe-no-such-account")


def test_short_password_is_refused_with_the_minimum() -> None:
    assert PasswordPolicy(min_length=12).problems("short-pass1") == ["Use at least 12 characters."]


def test_common_password_is_refused_whatever_its_case() -> None:
    assert is_common_password("Password123")
    problems = PasswordPolicy(min_length=8).problems("PASSWORD123")
    assert any("common or breached" in p for p in problems)


def test_password_containing_the_email_name_is_refused() -> None:
    problems = PasswordPolicy().problems("jane.roe-is-great-2026", email="jane.roe@example.org")
    assert problems == ["Do not use your email address in the password."]


def test_long_uncommon_password_is_accepted() -> None:
    assert PasswordPolicy().problems("quokka lantern 7 marmalade") == []


def test_throttle_locks_an_account_after_its_failures_until_the_window_passes() -> None:
    throttle = LoginThrottle.create(account_failures=3, address_failures=100, window_s=60)
    for second in range(3):
        throttle.record_failure("a@x", f"10.0.0.{second}", now=float(second))
    assert throttle.retry_after("a@x", "10.0.0.9", now=3.0) == pytest.approx(57.0)
    assert throttle.retry_after("b@x", "10.0.0.9", now=3.0) == 0.0
    assert throttle.retry_after("a@x", "10.0.0.9", now=60.5) == 0.0


def test_throttle_locks_an_address_trying_many_accounts() -> None:
    throttle = LoginThrottle.create(account_failures=100, address_failures=3, window_s=60)
    for n in range(3):
        throttle.record_failure(f"user{n}@x", "192.0.2.1", now=0.0)
    assert throttle.retry_after("someone-else@x", "192.0.2.1", now=1.0) > 0
    assert throttle.retry_after("someone-else@x", "192.0.2.2", now=1.0) == 0


def test_successful_login_clears_the_account_failures() -> None:
    throttle = LoginThrottle.create(account_failures=2, address_failures=100, window_s=60)
    throttle.record_failure("a@x", "h", now=0.0)
    throttle.record_success("a@x")
    throttle.record_failure("a@x", "h", now=1.0)
    assert throttle.retry_after("a@x", "h", now=2.0) == 0


@pytest.mark.parametrize("action", list(Action))
def test_owner_may_do_everything(action: Action) -> None:
    assert role_allows("owner", action)


def test_viewer_lists_replays_and_exports_but_changes_nothing() -> None:
    assert ROLE_ACTIONS["viewer"] == {
        Action.VIEW_SITE,
        Action.LIST_SESSIONS,
        Action.REPLAY,
        Action.EXPORT,
    }


def test_analyst_runs_sql_but_does_not_watch_replays() -> None:
    assert role_allows("analyst", Action.RUN_SQL)
    assert not role_allows("analyst", Action.REPLAY)


@pytest.mark.parametrize("action", list(Action))
def test_non_member_may_do_nothing(action: Action) -> None:
    assert not role_allows(None, action)


def test_parse_role_names_the_choices() -> None:
    with pytest.raises(ValueError, match="owner, analyst, viewer"):
        parse_role("superuser")


def _state_with(*entities: Account | Membership | LoginSession | ApiToken) -> ConsoleState:
    state = ConsoleState()
    for offset, entity in enumerate(entities):
        state.apply(record_key(entity), record_value(entity), offset)
    return state


def _account(email: str = "o@x", epoch: int = 0) -> Account:
    return Account(email=email, password_hash="h", session_epoch=epoch)


def test_state_rebuilds_accounts_memberships_and_tokens_from_records() -> None:
    token = ApiToken("t1", "shop", "ci", sha256_hex("rt_x"), "o@x", 5)
    state = _state_with(_account(), Membership("shop", "o@x", "owner"), token)
    assert state.account("O@X ") == _account()
    assert state.role("o@x", "shop") == "owner"
    assert state.role("o@x", "other-shop") is None
    assert state.tokens_of("shop") == [token]


def test_tombstone_removes_the_entity() -> None:
    member = Membership("shop", "o@x", "viewer")
    state = _state_with(member)
    state.apply(record_key(member), None, 1)
    assert state.role("o@x", "shop") is None


def test_an_older_record_does_not_overwrite_a_newer_one() -> None:
    state = ConsoleState()
    newer = Membership("shop", "o@x", "owner")
    state.apply(record_key(newer), record_value(newer), 7)
    older = Membership("shop", "o@x", "viewer")
    state.apply(record_key(older), record_value(older), 3)
    assert state.role("o@x", "shop") == "owner"


def test_session_is_live_until_idle_timeout() -> None:
    session = LoginSession("s", "o@x", created_ms=0, last_seen_ms=1_000)
    state = _state_with(_account(), session)
    live = state.live_session("s", 1_000 + IDLE_MS, idle_ms=IDLE_MS, absolute_ms=ABSOLUTE_MS)
    assert live == session
    late = 1_001 + IDLE_MS
    assert state.live_session("s", late, idle_ms=IDLE_MS, absolute_ms=ABSOLUTE_MS) is None


def test_session_ends_at_absolute_timeout_even_when_active() -> None:
    session = LoginSession("s", "o@x", created_ms=0, last_seen_ms=ABSOLUTE_MS)
    state = _state_with(_account(), session)
    at = ABSOLUTE_MS + 1
    assert state.live_session("s", at, idle_ms=IDLE_MS, absolute_ms=ABSOLUTE_MS) is None


def test_sign_out_everywhere_ends_sessions_of_the_old_epoch() -> None:
    state = _state_with(_account(epoch=0), LoginSession("s", "o@x", 0, 0, epoch=0))
    bumped = _account(epoch=1)
    state.apply(record_key(bumped), record_value(bumped), 10)
    assert state.live_session("s", 1, idle_ms=IDLE_MS, absolute_ms=ABSOLUTE_MS) is None


def test_state_never_holds_a_session_id_or_token_in_clear() -> None:
    session = LoginSession(sha256_hex("cookie-secret"), "o@x", 0, 0)
    token = ApiToken("t1", "shop", "ci", sha256_hex("rt_secret"), "o@x", 0)
    for entity in (session, token):
        stored = record_key(entity).encode() + record_value(entity)
        assert b"cookie-secret" not in stored and b"rt_secret" not in stored


def test_ended_sessions_lists_timed_out_and_signed_out_ones_only() -> None:
    state = _state_with(
        _account(epoch=1),
        LoginSession("live", "o@x", created_ms=0, last_seen_ms=0, epoch=1),
        LoginSession("old-epoch", "o@x", created_ms=0, last_seen_ms=0, epoch=0),
        LoginSession("idle", "o@x", created_ms=0, last_seen_ms=-IDLE_MS - 1, epoch=1),
    )
    ended = state.ended_sessions(0, idle_ms=IDLE_MS, absolute_ms=ABSOLUTE_MS)
    assert sorted(ended) == ["session:idle", "session:old-epoch"]


def test_throttle_prune_forgets_keys_outside_the_window() -> None:
    throttle = LoginThrottle.create(account_failures=3, address_failures=3, window_s=60)
    for n in range(100):
        throttle.record_failure(f"user{n}@x", f"10.0.{n}.1", now=0.0)
    throttle.prune(now=61.0)
    assert len(throttle.by_account) == 0 and len(throttle.by_address) == 0
