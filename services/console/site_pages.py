"""A site's pages: overview and snippet, privacy settings, members, API tokens,
sessions and replay, erasure, audit log; and the instance admin's site list.

Every handler starts with :func:`require` (or :func:`require_admin`), which
checks the account's role on the site named in the URL.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from itsdangerous import BadSignature

from services.console import metrics
from services.console.audit import AuditAction
from services.console.context import (
    Console,
    console_of,
    render,
    require,
    require_admin,
    require_login,
    role_on,
)
from services.console.passwords import hash_password
from services.console.roles import ROLES, Action, parse_role, role_allows
from services.console.site_form import (
    EDITABLE_FIELDS,
    settings_change,
    settings_diff,
    settings_from_form,
)
from services.console.state import (
    MEMBER,
    TOKEN,
    Account,
    ApiToken,
    Membership,
    normalize_email,
    sha256_hex,
)
from services.console.web_auth import current_session
from services.shared.site_settings import PII_DETECTORS, SiteSettings
from services.sink.viewer import PAGE_HEADERS as VIEWER_PAGE_HEADERS

REPLAY_TOKEN_MAX_AGE_S = 15 * 60
# The read API's session filters (services/sink/queries.py, parse_session_filter).
SESSION_FILTERS = (
    "from",
    "to",
    "min_duration",
    "url",
    "visitor",
    "rage",
    "errors",
    "sort",
    "limit",
    "offset",
)


async def index(request: web.Request) -> web.Response:
    """``GET /``: the sites this account may open."""
    user = require_login(request)
    console = console_of(request)
    if user.is_admin:
        sites = {site.site_id: "owner" for site in console.registry.all()}
    else:
        sites = {
            site_id: role
            for site_id, role in console.store.state.sites_of(user.email).items()
            if console.registry.get(site_id) is not None
        }
    return render(request, "index.html", {"sites": sorted(sites.items())})


async def site_overview(request: web.Request) -> web.Response:
    """``GET /sites/{site}``: the recorder snippet with the site key, and what this role may do."""
    user, site = require(request, Action.VIEW_SITE)
    console = console_of(request)
    role = role_on(console, user, site.site_id)
    return render(
        request,
        "site.html",
        {
            "site": site,
            "role": role,
            "can": {a.value: role_allows(role, a) for a in Action},
            "ingest_url": console.settings.ingest_url,
        },
    )


# --- privacy settings -----------------------------------------------------------


def _settings_context(console: Console, site: SiteSettings, **extra: Any) -> dict[str, Any]:
    history = console.store.state.history_of(site.site_id)
    return {
        "site": site,
        "form": {name: getattr(site, name) for name in EDITABLE_FIELDS},
        "problems": {},
        "pii_detectors": PII_DETECTORS,
        "history": [
            {"change": change, "diff": settings_diff(change.before, change.after)}
            for change in history[:50]
        ],
        "saved": False,
        **extra,
    }


async def settings_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/settings``: the privacy settings form and the change history."""
    _, site = require(request, Action.EDIT_SETTINGS)
    saved = request.query.get("saved") == "1"
    return render(
        request, "settings.html", _settings_context(console_of(request), site, saved=saved)
    )


async def save_settings(request: web.Request) -> web.Response:
    """``POST /sites/{site}/settings``: validate; publish to ``sites.config``; record history."""
    user, site = require(request, Action.EDIT_SETTINGS)
    console = console_of(request)
    posted = await request.post()
    form: dict[str, Any] = {k: str(v) for k, v in posted.items() if k != "pii_detectors"}
    form["pii_detectors"] = [str(v) for v in posted.getall("pii_detectors", [])]
    result = settings_from_form(site, form)
    if result.settings is None:
        context = _settings_context(console, site, problems=result.problems)
        context["form"] = {**context["form"], **_typed_back(form)}
        return render(request, "settings.html", context, status=400)
    await save_site_settings(console, user.email, site, result.settings)
    await console.audit(
        request,
        AuditAction.SETTINGS_CHANGED,
        site_id=site.site_id,
        detail=",".join(settings_diff(site.to_dict(), result.settings.to_dict())),
    )
    raise web.HTTPSeeOther(f"/sites/{quote(site.site_id)}/settings?saved=1")


def _typed_back(form: dict[str, Any]) -> dict[str, Any]:
    """What the user typed, shown again next to the problems (lists as lines)."""
    shown: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        if name in form:
            value = form[name]
            shown[name] = tuple(value.splitlines()) if isinstance(value, str) else tuple(value)
    shown["record_inputs"] = form.get("record_inputs") == "on"
    for scalar in ("consent_mode", "ip_mode", "sample_rate", "retention_days"):
        if scalar in form:
            shown[scalar] = form[scalar]
    return shown


async def save_site_settings(
    console: Console, who: str, before: SiteSettings | None, after: SiteSettings
) -> None:
    """Publish new settings for a site and write the change to its history."""
    await console.store.publish_site_settings(after)
    _replace_site(console, after)
    await console.store.put(
        settings_change(who=who, before=before, after=after, at_ms=console.now_ms())
    )
    metrics.SETTINGS_SAVES.inc()


# --- members --------------------------------------------------------------------


async def members_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/members``."""
    _, site = require(request, Action.MANAGE_MEMBERS)
    return _members(request, site, {})


def _members(
    request: web.Request, site: SiteSettings, extra: dict[str, Any], status: int = 200
) -> web.Response:
    console = console_of(request)
    context = {
        "site": site,
        "members": console.store.state.members_of(site.site_id),
        "roles": ROLES,
        "problems": [],
        "created": None,
        **extra,
    }
    return render(request, "members.html", context, status=status)


async def set_member(request: web.Request) -> web.Response:
    """``POST /sites/{site}/members``: add a member or change a role (new accounts get a
    one-time password, shown once to the owner who added them)."""
    user, site = require(request, Action.MANAGE_MEMBERS)
    console = console_of(request)
    form = await request.post()
    email = normalize_email(str(form.get("email", "")))
    role = str(form.get("role", ""))
    if "@" not in email or role not in ROLES:
        return _members(
            request, site, {"problems": ["Type an email address and choose a role."]}, 400
        )
    one_time = None
    if console.store.state.account(email) is None:
        one_time = await create_account(console, email)
    await console.store.put(
        Membership(
            site_id=site.site_id,
            email=email,
            role=parse_role(role),
            granted_by=user.email,
            granted_ms=console.now_ms(),
        )
    )
    await console.audit(
        request, AuditAction.MEMBER_CHANGED, site_id=site.site_id, target=email, detail=role
    )
    created = {"email": email, "password": one_time} if one_time else None
    return _members(request, site, {"created": created})


async def remove_member(request: web.Request) -> web.Response:
    """``POST /sites/{site}/members/remove``: take an account's role on this site away."""
    user, site = require(request, Action.MANAGE_MEMBERS)
    console = console_of(request)
    email = normalize_email(str((await request.post()).get("email", "")))
    if email == user.email:
        return _members(
            request, site, {"problems": ["You cannot remove yourself; ask another owner."]}, 400
        )
    await console.store.delete(f"{MEMBER}:{site.site_id}:{email}")
    await console.audit(
        request, AuditAction.MEMBER_CHANGED, site_id=site.site_id, target=email, detail="removed"
    )
    raise web.HTTPSeeOther(f"/sites/{quote(site.site_id)}/members")


async def create_account(console: Console, email: str, *, is_admin: bool = False) -> str:
    """Create an account with a one-time password (returned, never stored in clear).

    The password must be changed at the first login.
    """
    one_time = secrets.token_urlsafe(15)
    await console.store.put(
        Account(
            email=email,
            password_hash=await asyncio.to_thread(hash_password, one_time),
            is_admin=is_admin,
            must_change_password=True,
            created_ms=console.now_ms(),
        )
    )
    return one_time


# --- API tokens -----------------------------------------------------------------


async def tokens_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/tokens``: the site's read API tokens (names, never values)."""
    _, site = require(request, Action.MANAGE_TOKENS)
    return _tokens(request, site, None)


def _tokens(
    request: web.Request, site: SiteSettings, created: dict[str, str] | None
) -> web.Response:
    tokens = console_of(request).store.state.tokens_of(site.site_id)
    return render(request, "tokens.html", {"site": site, "tokens": tokens, "created": created})


async def create_token(request: web.Request) -> web.Response:
    """``POST /sites/{site}/tokens``: a new read token, shown once; only its SHA-256 is kept."""
    user, site = require(request, Action.MANAGE_TOKENS)
    console = console_of(request)
    name = str((await request.post()).get("name", "")).strip()[:80] or "unnamed"
    token = "rt_" + secrets.token_urlsafe(32)
    digest = sha256_hex(token)
    record = ApiToken(
        token_id=uuid.uuid4().hex[:12],
        site_id=site.site_id,
        name=name,
        sha256=digest,
        created_by=user.email,
        created_ms=console.now_ms(),
    )
    await console.store.put(record)
    updated = replace(site, read_token_sha256=(*site.read_token_sha256, digest))
    await console.store.publish_site_settings(updated)
    _replace_site(console, updated)
    await console.audit(request, AuditAction.TOKEN_CREATED, site_id=site.site_id, target=name)
    return _tokens(request, updated, {"name": name, "token": token})


async def revoke_token(request: web.Request) -> web.Response:
    """``POST /sites/{site}/tokens/{token}/revoke``: the token stops working everywhere."""
    _, site = require(request, Action.MANAGE_TOKENS)
    console = console_of(request)
    record = console.store.state.tokens.get((site.site_id, request.match_info["token"]))
    if record is None:
        raise web.HTTPSeeOther(f"/sites/{quote(site.site_id)}/tokens")
    updated = replace(
        site, read_token_sha256=tuple(h for h in site.read_token_sha256 if h != record.sha256)
    )
    await console.store.publish_site_settings(updated)
    _replace_site(console, updated)
    await console.store.delete(f"{TOKEN}:{site.site_id}:{record.token_id}")
    await console.audit(
        request, AuditAction.TOKEN_REVOKED, site_id=site.site_id, target=record.name
    )
    raise web.HTTPSeeOther(f"/sites/{quote(site.site_id)}/tokens")


def _replace_site(console: Console, site: SiteSettings) -> None:
    """Apply a published change here at once (the feed brings the same record later)."""
    others = [s for s in console.registry.all() if s.site_id != site.site_id]
    console.registry.replace_all([*others, site])


# --- sessions, replay, erasure --------------------------------------------------


async def sink_call(
    console: Console, method: str, path: str, params: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Call the sink's read API with the console's service credential."""
    assert console.http is not None
    started = time.perf_counter()
    try:
        async with console.http.request(
            method,
            console.settings.sink_url + path,
            params=params,
            headers={"Authorization": f"Bearer {console.settings.sink_admin_token}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            return response.status, await response.read()
    except aiohttp.ClientError:
        return 502, b""
    finally:
        metrics.SINK_SECONDS.observe(time.perf_counter() - started)


def _sink_path(site_id: str, *parts: str) -> str:
    return "/v1/sites/" + "/".join(quote(p, safe="") for p in (site_id, *parts))


async def sessions_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/sessions``: the session list with the read API's filters."""
    user, site = require(request, Action.LIST_SESSIONS)
    console = console_of(request)
    params = {k: v for k, v in request.query.items() if k in SESSION_FILTERS and v}
    params.setdefault("limit", "100")
    status, body = await sink_call(console, "GET", _sink_path(site.site_id, "sessions"), params)
    sessions: list[dict[str, Any]] = []
    problem = ""
    if status == 200:
        sessions = orjson.loads(body).get("sessions", [])
    elif status == 400:
        problem = str(orjson.loads(body).get("detail", "A filter is not valid."))
    else:
        problem = f"The sink did not answer ({status}); sessions cannot be listed now."
    await console.audit(request, AuditAction.SESSIONS_LISTED, site_id=site.site_id)
    return render(
        request,
        "sessions.html",
        {
            "site": site,
            "sessions": sessions,
            "filters": params,
            "problem": problem,
            "can_erase": role_allows(role_on(console, user, site.site_id), Action.ERASE),
            "can_export": role_allows(role_on(console, user, site.site_id), Action.EXPORT),
        },
        status=200 if not problem else 502 if status >= 500 else 400,
    )


async def replay_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/sessions/{session}``: the replay; opening it is audited.

    The page is the viewer of the sink; its script fetches the events from the
    console with a bearer token for this one session (15 minutes, in the URL
    fragment, which no server sees).
    """
    _, site = require(request, Action.REPLAY)
    console = console_of(request)
    session_id = request.match_info["session"]
    await console.audit(request, AuditAction.REPLAY_OPENED, site_id=site.site_id, target=session_id)
    login_session = current_session(request)
    assert login_session is not None  # require() passed
    # Bound to this login session too: logging out ends the replay link as well.
    token = console.replay_tokens.dumps([login_session.id_sha256, site.site_id, session_id])
    raise web.HTTPSeeOther(f"/sites/{quote(site.site_id)}/replay/{quote(session_id)}#token={token}")


async def export_session(request: web.Request) -> web.Response:
    """``GET /sites/{site}/sessions/{session}/export``: the session's masked events as an
    NDJSON download (what the replay plays); audited as ``export`` before the sink is
    asked, so no export goes unrecorded."""
    _, site = require(request, Action.EXPORT)
    console = console_of(request)
    session_id = request.match_info["session"]
    await console.audit(request, AuditAction.EXPORT, site_id=site.site_id, target=session_id)
    status, body = await sink_call(
        console, "GET", _sink_path(site.site_id, "sessions", session_id, "export")
    )
    if status != 200:
        detail = (
            "No stored events for this session."
            if status == 404
            else f"The sink answered {status}; try the export again later."
        )
        return render(
            request,
            "error.html",
            {"title": "Export not available", "detail": detail},
            status=404 if status == 404 else 502,
        )
    return web.Response(
        body=body,
        content_type="application/x-ndjson",
        # A fixed name: the session id is the client's text, not put into a header.
        headers={"Content-Disposition": 'attachment; filename="session-events.ndjson"'},
    )


async def replay_shell(request: web.Request) -> web.Response:
    """``GET /sites/{site}/replay/{session}``: the viewer shell (needs the fragment's token)."""
    _, site = require(request, Action.REPLAY)
    response = render(
        request, "replay.html", {"site": site, "session_id": request.match_info["session"]}
    )
    response.headers.update(VIEWER_PAGE_HEADERS)
    return response


async def replay_events(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/sites/{site}/sessions/{session}/events``: one session's events for the
    replay page (bearer replay token; its login session must still be live and its
    account still have the role)."""
    console = console_of(request)
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    site_id, session_id = request.match_info["site"], request.match_info["session"]
    try:
        login_id, token_site, token_session = console.replay_tokens.loads(
            token, max_age=REPLAY_TOKEN_MAX_AGE_S
        )
    except (BadSignature, ValueError, TypeError):
        return web.json_response(
            {"error": "forbidden", "detail": "Open the replay again from the console."}, status=403
        )
    settings = console.settings
    login_session = console.store.state.live_session(
        str(login_id),
        console.now_ms(),
        idle_ms=int(settings.session_idle_s * 1000),
        absolute_ms=int(settings.session_absolute_s * 1000),
    )
    account = None if login_session is None else console.store.state.accounts[login_session.email]
    if (
        account is None
        or (token_site, token_session) != (site_id, session_id)
        or not role_allows(role_on(console, account, site_id), Action.REPLAY)
    ):
        return web.json_response(
            {"error": "forbidden", "detail": "This account may not replay this session."},
            status=403,
        )
    status, body = await sink_call(
        console, "GET", _sink_path(site_id, "sessions", session_id, "events")
    )
    if status != 200:
        return web.json_response(
            {"error": "not_available", "detail": f"The sink answered {status}."}, status=status
        )
    return web.Response(body=body, content_type="application/x-ndjson")


async def erase(request: web.Request) -> web.Response:
    """``POST /sites/{site}/erase``: erase one session or every session of a visitor.

    The form must repeat the id in ``confirm``: an erasure cannot be undone.
    """
    _, site = require(request, Action.ERASE)
    console = console_of(request)
    form = await request.post()
    kind = str(form.get("kind", "session"))
    target = str(form.get("id", "")).strip()
    if kind not in ("session", "visitor") or not target or str(form.get("confirm", "")) != target:
        return render(
            request,
            "error.html",
            {
                "title": "Erasure not confirmed",
                "detail": "Type the session or visitor id again in the confirmation box.",
            },
            status=400,
        )
    path = _sink_path(site.site_id, "sessions" if kind == "session" else "visitors", target)
    status, body = await sink_call(console, "DELETE", path)
    action = AuditAction.SESSION_ERASED if kind == "session" else AuditAction.VISITOR_ERASED
    await console.audit(
        request,
        action,
        site_id=site.site_id,
        target=target,
        outcome="ok" if status == 200 else str(status),
    )
    if status != 200:
        return render(
            request,
            "error.html",
            {
                "title": "Erasure failed",
                "detail": f"The sink answered {status}; nothing was confirmed erased.",
            },
            status=502,
        )
    erased = orjson.loads(body).get("erased_sessions", [])
    return render(
        request, "erased.html", {"site": site, "kind": kind, "target": target, "erased": erased}
    )


async def audit_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/audit``: the site's audit log, newest first (from the sink)."""
    _, site = require(request, Action.VIEW_AUDIT)
    return await _audit(request, _sink_path(site.site_id, "audit"), site.site_id)


async def admin_audit_page(request: web.Request) -> web.Response:
    """``GET /admin/audit``: the events of no site (logins, logouts, account changes)."""
    require_admin(request)
    return await _audit(request, "/v1/audit", "")


async def _audit(request: web.Request, sink_path: str, site_id: str) -> web.Response:
    console = console_of(request)
    params = {k: v for k, v in request.query.items() if k in ("limit", "action", "actor") and v}
    status, body = await sink_call(console, "GET", sink_path, params)
    events = orjson.loads(body).get("events", []) if status == 200 else []
    problem = (
        "" if status == 200 else f"The audit log is not available now (sink answered {status})."
    )
    context = {"site_id": site_id, "events": events, "problem": problem}
    return render(request, "audit.html", context, status=200 if status == 200 else 502)


# --- analysts' SQL ----------------------------------------------------------------


async def sql_page(request: web.Request) -> web.Response:
    """``GET /sites/{site}/sql``: the read-only SQL form (rows of this site only)."""
    _, site = require(request, Action.RUN_SQL)
    return render(request, "sql.html", {"site": site, "sql": "", "result": None, "problem": ""})


async def run_sql(request: web.Request) -> web.Response:
    """``POST /sites/{site}/sql``: run one SELECT through the sink's scoped SQL (audited)."""
    _, site = require(request, Action.RUN_SQL)
    console = console_of(request)
    sql = str((await request.post()).get("sql", ""))
    await console.audit(request, AuditAction.SQL_RUN, site_id=site.site_id, detail=sql)
    status, body = await sink_json(console, "/v1/scoped-sql", {"sql": sql, "sites": [site.site_id]})
    doc = orjson.loads(body) if body else {}
    result = doc if status == 200 else None
    problem = "" if status == 200 else str(doc.get("detail", f"The sink answered {status}."))
    context = {"site": site, "sql": sql, "result": result, "problem": problem}
    return render(request, "sql.html", context, status=200 if status == 200 else 400)


async def sink_json(console: Console, path: str, doc: dict[str, Any]) -> tuple[int, bytes]:
    """POST a JSON document to the sink with the console's service credential."""
    assert console.http is not None
    try:
        async with console.http.post(
            console.settings.sink_url + path,
            data=orjson.dumps(doc),
            headers={
                "Authorization": f"Bearer {console.settings.sink_admin_token}",
                "Content-Type": "application/json",
            },
            timeout=aiohttp.ClientTimeout(total=60),
        ) as response:
            return response.status, await response.read()
    except aiohttp.ClientError:
        return 502, b""


# --- instance admin: sites --------------------------------------------------------


async def admin_sites_page(request: web.Request) -> web.Response:
    """``GET /admin/sites``: every site, and a form to create one with its first owner."""
    require_admin(request)
    return _admin_sites(request, {})


def _admin_sites(request: web.Request, extra: dict[str, Any], status: int = 200) -> web.Response:
    console = console_of(request)
    sites = sorted(console.registry.all(), key=lambda s: s.site_id)
    context = {"sites": sites, "problems": [], "created": None, **extra}
    return render(request, "admin_sites.html", context, status=status)


async def create_site(request: web.Request) -> web.Response:
    """``POST /admin/sites``: a new site with a fresh site key, and its first owner."""
    user = require_admin(request)
    console = console_of(request)
    form = await request.post()
    site_id = str(form.get("site_id", "")).strip()
    owner = normalize_email(str(form.get("owner", "")))
    problems = []
    if not site_id or not all(c.isalnum() or c in "-_" for c in site_id) or len(site_id) > 64:
        problems.append("Site id: 1 to 64 letters, digits, - or _.")
    elif console.registry.get(site_id) is not None:
        problems.append(f"A site {site_id!r} exists already.")
    if "@" not in owner:
        problems.append("Type the first owner's email address.")
    if problems:
        return _admin_sites(request, {"problems": problems}, 400)
    site = SiteSettings(site_id=site_id, public_keys=("pk_" + secrets.token_urlsafe(18),))
    await save_site_settings(console, user.email, None, site)
    one_time = None
    if console.store.state.account(owner) is None:
        one_time = await create_account(console, owner)
    await console.store.put(
        Membership(
            site_id=site_id,
            email=owner,
            role="owner",
            granted_by=user.email,
            granted_ms=console.now_ms(),
        )
    )
    await console.audit(request, AuditAction.SITE_CREATED, site_id=site_id, target=owner)
    created = {"site_id": site_id, "owner": owner, "password": one_time}
    return _admin_sites(request, {"created": created})


def add_site_routes(app: web.Application) -> None:
    """Mount the site and admin pages."""
    app.router.add_get("/", index)
    app.router.add_get("/sites/{site}", site_overview)
    app.router.add_get("/sites/{site}/settings", settings_page)
    app.router.add_post("/sites/{site}/settings", save_settings)
    app.router.add_get("/sites/{site}/members", members_page)
    app.router.add_post("/sites/{site}/members", set_member)
    app.router.add_post("/sites/{site}/members/remove", remove_member)
    app.router.add_get("/sites/{site}/tokens", tokens_page)
    app.router.add_post("/sites/{site}/tokens", create_token)
    app.router.add_post("/sites/{site}/tokens/{token}/revoke", revoke_token)
    app.router.add_get("/sites/{site}/sessions", sessions_page)
    app.router.add_get("/sites/{site}/sessions/{session}", replay_page)
    app.router.add_get("/sites/{site}/sessions/{session}/export", export_session)
    app.router.add_get("/sites/{site}/replay/{session}", replay_shell)
    app.router.add_get("/api/v1/sites/{site}/sessions/{session}/events", replay_events)
    app.router.add_post("/sites/{site}/erase", erase)
    app.router.add_get("/sites/{site}/audit", audit_page)
    app.router.add_get("/sites/{site}/sql", sql_page)
    app.router.add_post("/sites/{site}/sql", run_sql)
    app.router.add_get("/admin/audit", admin_audit_page)
    app.router.add_get("/admin/sites", admin_sites_page)
    app.router.add_post("/admin/sites", create_site)
