"""What every console handler shares: the Console object, the login and role gates, rendering."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp_jinja2
from aiohttp import web
from itsdangerous import URLSafeTimedSerializer

from services.console import metrics
from services.console.audit import AuditAction, audit_event
from services.console.passwords import PasswordPolicy
from services.console.roles import Action, Role, role_allows
from services.console.settings import ConsoleSettings
from services.console.state import Account
from services.console.state_feed import StateStore
from services.console.throttle import LoginThrottle
from services.console.web_auth import CSRF_FIELD, CsrfSigner, csrf_binding, current_user
from services.shared.site_settings import SiteRegistry, SiteSettings


@dataclass
class Console:
    """The console's shared parts (one per process)."""

    settings: ConsoleSettings
    store: StateStore
    registry: SiteRegistry
    throttle: LoginThrottle
    policy: PasswordPolicy
    csrf: CsrfSigner
    # Short-lived bearer tokens the replay page's script uses to fetch one session's events.
    replay_tokens: URLSafeTimedSerializer
    clock: Callable[[], float] = time.time
    http: aiohttp.ClientSession | None = None

    def now_ms(self) -> int:
        """The console's clock in milliseconds (tests may move it)."""
        return int(self.clock() * 1000)

    async def audit(
        self, request: web.Request, action: AuditAction, *, actor: str = "", **fields: str
    ) -> None:
        """Record an audit event; the action fails if the audit log cannot take it."""
        if not actor:
            user = current_user(request)
            actor = user.email if user is not None else ""
        event = audit_event(
            action, actor=actor, address=client_address(request), at_ms=self.now_ms(), **fields
        )
        await self.store.publish_audit(event)
        metrics.AUDIT_EVENTS.labels(str(action)).inc()


CONSOLE_KEY = web.AppKey("console", Console)


def console_of(request: web.Request) -> Console:
    """The Console of the app serving ``request``."""
    return request.app[CONSOLE_KEY]


def client_address(request: web.Request) -> str:
    """The peer address (the console does not trust forwarding headers)."""
    return request.remote or ""


def require_login(request: web.Request, *, allow_pending: bool = False) -> Account:
    """The logged-in account; otherwise redirect to the login page.

    Unless ``allow_pending``, an account that must first change its one-time
    password, or enrol TOTP because the deployment requires it, is sent there.
    """
    user = current_user(request)
    if user is None:
        raise web.HTTPSeeOther("/login")
    if allow_pending:
        return user
    if user.must_change_password:
        raise web.HTTPSeeOther("/account/password")
    console = console_of(request)
    if (
        console.settings.require_totp_for_owners
        and not user.totp_secret
        and is_owner_anywhere(console, user)
    ):
        raise web.HTTPSeeOther("/account/totp")
    return user


def is_owner_anywhere(console: Console, user: Account) -> bool:
    """True for instance admins and for owners of any site."""
    return user.is_admin or "owner" in console.store.state.sites_of(user.email).values()


def role_on(console: Console, user: Account, site_id: str) -> Role | None:
    """The account's role on a site; instance admins act as owners of every site."""
    if user.is_admin:
        return "owner"
    return console.store.state.role(user.email, site_id)


def require(request: web.Request, action: Action) -> tuple[Account, SiteSettings]:
    """The account and the site of ``{site}`` if the account may do ``action`` there; else 403.

    Unknown sites and sites the account is not a member of get the same answer,
    so the console does not tell which site ids exist.
    """
    user = require_login(request)
    console = console_of(request)
    site_id = request.match_info["site"]
    site = console.registry.get(site_id)
    if site is None or not role_allows(role_on(console, user, site_id), action):
        metrics.REFUSED.labels(str(action)).inc()
        raise forbidden(request, "Your account may not do this on this site.")
    return user, site


def require_admin(request: web.Request) -> Account:
    """The account if it is an instance admin; else 403."""
    user = require_login(request)
    if not user.is_admin:
        metrics.REFUSED.labels("admin").inc()
        raise forbidden(request, "Only an instance admin may do this.")
    return user


def forbidden(request: web.Request, detail: str) -> web.HTTPForbidden:
    """A 403 with the console's error page."""
    body = aiohttp_jinja2.render_string(
        "error.html", request, {**page_context(request), "title": "Not allowed", "detail": detail}
    )
    return web.HTTPForbidden(text=body, content_type="text/html")


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """Render a page with :func:`page_context` and ``context``."""
    return aiohttp_jinja2.render_template(
        template, request, {**page_context(request), **context}, status=status
    )


def page_context(request: web.Request) -> dict[str, Any]:
    """What every page gets: the user, their sites, a CSRF token and its field name."""
    console = console_of(request)
    user = current_user(request)
    return {
        "user": user,
        "csrf_field": CSRF_FIELD,
        "csrf_token": console.csrf.token(csrf_binding(request)),
        "sites_of_user": (
            sorted(console.store.state.sites_of(user.email).items()) if user is not None else []
        ),
    }
