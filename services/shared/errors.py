"""The JSON error body every HTTP endpoint answers with: ``{"error": code, "detail": sentence}``.

``code`` is a stable snake_case word a client can branch on; ``detail`` is one
sentence for a person that says what to change. Neither ever echoes the
request's content, a token or a masked value.
"""

from __future__ import annotations

import orjson
from aiohttp import web

JSON_CONTENT_TYPE = "application/json"


def error_response(
    status: int,
    code: str,
    detail: str,
    *,
    retry_after_s: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer; ``retry_after_s`` adds ``Retry-After`` (429, 503)."""
    out = dict(headers or {})
    if retry_after_s is not None:
        out["Retry-After"] = str(retry_after_s)
    body = orjson.dumps({"error": code, "detail": detail})
    return web.Response(body=body, status=status, headers=out, content_type=JSON_CONTENT_TYPE)
