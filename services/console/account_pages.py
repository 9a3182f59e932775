"""Login, logout, "sign out everywhere", password change and TOTP enrolment."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace

import pyotp
from aiohttp import web

from services.console import metrics
from services.console.audit import AuditAction
from services.console.context import (
    client_address,
    console_of,
    is_owner_anywhere,
    render,
    require_login,
)
from services.console.passwords import hash_password, needs_rehash, verify_password
from services.console.state import (
    SESSION,
    Account,
    LoginSession,
    normalize_email,
    sha256_hex,
)
from services.console.web_auth import (
    PRELOGIN_COOKIE,
    SESSION_COOKIE,
    current_session,
    current_user,
    new_secret,
    set_cookie,
)

LOGIN_FAILED = "The email, password or code is not right."
UNKNOWN_ACCOUNT = "(unknown account)"
TOTP_ISSUER = "replaypipe"


async def login_page(request: web.Request) -> web.Response:
    """``GET /login``: the form (and a pre-login cookie its CSRF token is bound to)."""
    if current_user(request) is not None:
        raise web.HTTPSeeOther("/")
    return _login_form(request, "", status=200)


def _login_form(
    request: web.Request, message: str, *, status: int, email: str = ""
) -> web.Response:
    prelogin = request.cookies.get(PRELOGIN_COOKIE) or new_secret()
    console = console_of(request)
    # The form's token is bound to the pre-login cookie the browser will send back.
    response = render(
        request,
        "login.html",
        {
            "message": message,
            "email": email,
            "csrf_token": console.csrf.token(sha256_hex(prelogin)),
        },
        status=status,
    )
    set_cookie(response, request, PRELOGIN_COOKIE, prelogin, secure=console.settings.cookie_secure)
    return response


async def login(request: web.Request) -> web.Response:
    """``POST /login``: check throttling, password and TOTP; start a fresh session."""
    console = console_of(request)
    form = await request.post()
    email = normalize_email(str(form.get("email", "")))
    password = str(form.get("password", ""))
    code = str(form.get("code", "")).strip()
    address = client_address(request)
    now = console.clock()
    account = console.store.state.account(email)
    # What was typed as an email is only recorded when it names an account: people
    # sometimes type their password into the email field.
    actor = email if account is not None else UNKNOWN_ACCOUNT
    wait_s = console.throttle.retry_after(email, address, now)
    if wait_s > 0:
        metrics.LOGINS.labels("throttled").inc()
        await console.audit(request, AuditAction.LOGIN_FAILED, actor=actor, outcome="throttled")
        minutes = max(1, math.ceil(wait_s / 60))
        return _login_form(
            request,
            f"Too many failed logins for this account or from this address. "
            f"Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            status=429,
            email=email,
        )
    # argon2 takes tens of milliseconds; off the event loop (it releases the GIL).
    ok = await asyncio.to_thread(
        verify_password, account.password_hash if account else None, password
    )
    if ok and account is not None and account.totp_secret:
        ok = pyotp.TOTP(account.totp_secret).verify(code, valid_window=1)
    if not ok or account is None:
        console.throttle.record_failure(email, address, now)
        metrics.LOGINS.labels("failed").inc()
        await console.audit(request, AuditAction.LOGIN_FAILED, actor=actor, outcome="refused")
        return _login_form(request, LOGIN_FAILED, status=401, email=email)
    console.throttle.record_success(email)
    metrics.LOGINS.labels("succeeded").inc()
    if needs_rehash(account.password_hash):
        # Stronger hashing parameters since this hash was made: upgrade it now.
        account = replace(account, password_hash=await asyncio.to_thread(hash_password, password))
        await console.store.put(account)
    response = web.HTTPSeeOther("/")
    await start_session(request, response, account)
    await console.audit(request, AuditAction.LOGIN_SUCCEEDED, actor=email)
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


async def start_session(
    request: web.Request, response: web.StreamResponse, account: Account
) -> None:
    """Create a new login session (a new id: no fixation) and set its cookie."""
    console = console_of(request)
    secret = new_secret()
    now_ms = console.now_ms()
    await console.store.put(
        LoginSession(
            id_sha256=sha256_hex(secret),
            email=account.email,
            created_ms=now_ms,
            last_seen_ms=now_ms,
            epoch=account.session_epoch,
        )
    )
    set_cookie(response, request, SESSION_COOKIE, secret, secure=console.settings.cookie_secure)


async def logout(request: web.Request) -> web.Response:
    """``POST /logout``: end this session."""
    console = console_of(request)
    session = current_session(request)
    if session is not None:
        await console.store.delete(f"{SESSION}:{session.id_sha256}")
        await console.audit(request, AuditAction.LOGOUT)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def sign_out_everywhere(request: web.Request) -> web.Response:
    """``POST /account/sign-out-everywhere``: end every session of this account, everywhere."""
    console = console_of(request)
    user = require_login(request, allow_pending=True)
    await console.store.put(replace(user, session_epoch=user.session_epoch + 1))
    await console.audit(request, AuditAction.SIGNED_OUT_EVERYWHERE)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def password_page(request: web.Request) -> web.Response:
    """``GET /account/password``."""
    user = require_login(request, allow_pending=True)
    return render(request, "password.html", {"problems": [], "forced": user.must_change_password})


async def change_password(request: web.Request) -> web.Response:
    """``POST /account/password``: check the current one, the policy; end every other session."""
    console = console_of(request)
    user = require_login(request, allow_pending=True)
    form = await request.post()
    current = str(form.get("current_password", ""))
    new = str(form.get("new_password", ""))
    problems: list[str] = []
    if not await asyncio.to_thread(verify_password, user.password_hash, current):
        problems.append("The current password is not right.")
    if new != str(form.get("confirm_password", "")):
        problems.append("The new password and its confirmation differ.")
    problems += console.policy.problems(new, email=user.email)
    if problems:
        return render(
            request,
            "password.html",
            {"problems": problems, "forced": user.must_change_password},
            status=400,
        )
    updated = replace(
        user,
        password_hash=await asyncio.to_thread(hash_password, new),
        must_change_password=False,
        session_epoch=user.session_epoch + 1,
    )
    await console.store.put(updated)
    await console.audit(request, AuditAction.PASSWORD_CHANGED)
    # Every other session ended with the epoch; this browser gets a new one.
    response = web.HTTPSeeOther("/")
    await start_session(request, response, updated)
    raise response


async def totp_page(request: web.Request) -> web.Response:
    """``GET /account/totp``: a new secret to enrol, shown with its otpauth:// URI."""
    user = require_login(request, allow_pending=True)
    secret = pyotp.random_base32()
    return _totp_form(request, user, secret, [], status=200)


def _totp_form(
    request: web.Request, user: Account, secret: str, problems: list[str], *, status: int
) -> web.Response:
    console = console_of(request)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return render(
        request,
        "totp.html",
        {
            "secret": secret,
            "uri": uri,
            "problems": problems,
            "enabled": bool(user.totp_secret),
            "required": console.settings.require_totp_for_owners
            and is_owner_anywhere(console, user),
        },
        status=status,
    )


async def enable_totp(request: web.Request) -> web.Response:
    """``POST /account/totp``: enable two-factor once a code from the new secret checks out."""
    console = console_of(request)
    user = require_login(request, allow_pending=True)
    form = await request.post()
    secret = str(form.get("secret", ""))
    code = str(form.get("code", "")).strip()
    try:
        valid = len(secret) >= 32 and pyotp.TOTP(secret).verify(code, valid_window=1)
    except ValueError:  # not base32
        valid = False
    if not valid:
        keep = secret if len(secret) == 32 and secret.isalnum() else pyotp.random_base32()
        return _totp_form(
            request,
            user,
            keep,
            ["That code does not match; type the 6-digit code your app shows now."],
            status=400,
        )
    await console.store.put(replace(user, totp_secret=secret))
    await console.audit(request, AuditAction.TOTP_ENABLED)
    raise web.HTTPSeeOther("/")


def add_account_routes(app: web.Application) -> None:
    """Mount the login and account pages."""
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/account/sign-out-everywhere", sign_out_everywhere)
    app.router.add_get("/account/password", password_page)
    app.router.add_post("/account/password", change_password)
    app.router.add_get("/account/totp", totp_page)
    app.router.add_post("/account/totp", enable_totp)
