"""Viewer pages served by the sink: a site's session list and the replay of one session.

The pages are static shells; their script (built from ``web/`` by
``scripts/setup_browser.sh`` into ``services/sink/static/dist/``) calls the read
API with a read token that the user types in or passes as the URL fragment
``#token=...``. The token never travels in a query string, so it stays out of
access logs; the pages themselves need no token.
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from services.shared.errors import error_response

STATIC_DIR = Path(__file__).resolve().parent / "static"
BUNDLE_DIR = STATIC_DIR / "dist"
# Only these files are served: the viewer's own bundles and the recorder snippet.
BUNDLES = {
    "viewer.js": "text/javascript",
    "viewer.css": "text/css",
    "replaypipe-recorder.min.js": "text/javascript",
}
# The replay runs in rrweb's sandboxed iframe (no scripts); the recorded page's
# images and fonts still load from wherever they were, so img/font/style stay open.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; img-src * data: blob:; font-src * data:; "
        "style-src 'self' 'unsafe-inline' *; media-src * data: blob:"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
BUILD_HINT = "The viewer bundles are not built: run ./scripts/setup_browser.sh (or make setup)."


def render_page(*, page: str, site_id: str, session_id: str = "") -> str:
    """The HTML shell of a viewer page; ``page`` is ``sessions`` or ``replay``."""
    site = html.escape(site_id, quote=True)
    session = html.escape(session_id, quote=True)
    if page == "replay":
        title = f"Replay {session} · {site}"
        back = f'<a href="/viewer/{site}">all sessions of {site}</a>'
    else:
        title = f"Sessions · {site}"
        back = ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · replaypipe</title>
<link rel="stylesheet" href="/viewer/static/viewer.css">
</head>
<body>
<header><h1>{title}</h1>{back}<div id="auth"></div></header>
<main id="viewer" data-page="{page}" data-site="{site}" data-session="{session}" data-base="">
<p id="status" class="status"></p>
<div id="content"></div>
</main>
<script src="/viewer/static/viewer.js"></script>
</body>
</html>
"""


def bundles_built() -> bool:
    """True once ``scripts/setup_browser.sh`` has built the bundles."""
    return all((BUNDLE_DIR / name).is_file() for name in BUNDLES)


def _page_response(body: str) -> web.Response:
    if not bundles_built():
        return error_response(503, "viewer_not_built", BUILD_HINT)
    return web.Response(text=body, content_type="text/html", headers=PAGE_HEADERS)


async def session_list_page(request: web.Request) -> web.Response:
    """``GET /viewer/{site}``: the list of a site's stored sessions."""
    return _page_response(render_page(page="sessions", site_id=request.match_info["site"]))


async def replay_page(request: web.Request) -> web.Response:
    """``GET /viewer/{site}/sessions/{session}``: play one stored session."""
    return _page_response(
        render_page(
            page="replay",
            site_id=request.match_info["site"],
            session_id=request.match_info["session"],
        )
    )


async def bundle(request: web.Request) -> web.StreamResponse:
    """``GET /viewer/static/{name}``: one of the built bundles (nothing else)."""
    name = request.match_info["name"]
    content_type = BUNDLES.get(name)
    if content_type is None:
        # The requested name is not echoed: only the files that exist are named.
        return web.json_response(
            {"error": "not_found", "detail": f"No such viewer file; there are {sorted(BUNDLES)}."},
            status=404,
        )
    path = BUNDLE_DIR / name
    if not path.is_file():
        return error_response(503, "viewer_not_built", BUILD_HINT)
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_viewer_routes(app: web.Application) -> None:
    """Mount the viewer pages and their bundles under ``/viewer``."""
    app.router.add_get("/viewer/static/{name}", bundle)
    app.router.add_get("/viewer/{site}", session_list_page)
    app.router.add_get("/viewer/{site}/sessions/{session}", replay_page)
