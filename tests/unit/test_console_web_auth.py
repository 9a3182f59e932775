"""CSRF tokens (itsdangerous) and the session cookie's flags."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from services.console.web_auth import CsrfSigner, set_cookie


def test_csrf_token_is_valid_only_for_its_binding() -> None:
    signer = CsrfSigner.create("key", max_age_s=60)
    token = signer.token("session-a")
    assert signer.valid(token, "session-a")
    assert not signer.valid(token, "session-b")
    assert not signer.valid("", "session-a")


def test_csrf_token_signed_with_another_key_is_refused() -> None:
    forged = CsrfSigner.create("other-key", max_age_s=60).token("session-a")
    assert not CsrfSigner.create("key", max_age_s=60).valid(forged, "session-a")


def test_csrf_token_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = CsrfSigner.create("key", max_age_s=60)
    token = signer.token("session-a")
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert not signer.valid(token, "session-a")


@pytest.mark.parametrize(("mode", "secure"), [("true", True), ("false", False), ("auto", False)])
def test_session_cookie_is_httponly_samesite_and_secure_as_configured(
    mode: str, secure: bool
) -> None:
    request = make_mocked_request("GET", "/")  # plain HTTP
    response = web.Response()
    set_cookie(response, request, "rp_session", "value", secure=mode)
    morsel = response.cookies["rp_session"]
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert bool(morsel["secure"]) is secure
