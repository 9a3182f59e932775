"""Login sessions and CSRF for the console's pages (aiohttp glue over the pure state).

* The session cookie holds 256 random bits; ``console.state`` holds only their
  SHA-256, so a copy of the topic does not let anyone log in.
* CSRF: every state-changing request carries a token signed with itsdangerous
  (HMAC) and bound to the session (or, before login, to a random pre-login
  cookie); the cookies are also ``SameSite=Strict``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from services.console.state import Account, LoginSession, sha256_hex

SESSION_COOKIE = "rp_session"
PRELOGIN_COOKIE = "rp_prelogin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

USER_KEY = web.RequestKey("user", Account)
SESSION_KEY = web.RequestKey("login_session", LoginSession)


def new_secret() -> str:
    """A fresh 256-bit random value for a cookie or a token."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CsrfSigner:
    """Signs and checks CSRF tokens bound to one session (or pre-login cookie)."""

    serializer: URLSafeTimedSerializer
    max_age_s: int

    @classmethod
    def create(cls, secret_key: str, max_age_s: int) -> CsrfSigner:
        """A signer with its own salt, so these signatures are valid for nothing else."""
        return cls(URLSafeTimedSerializer(secret_key, salt="replaypipe-console-csrf"), max_age_s)

    def token(self, binding: str) -> str:
        """The token to put into forms of the browser identified by ``binding``."""
        return str(self.serializer.dumps(binding))

    def valid(self, token: str, binding: str) -> bool:
        """True if ``token`` was signed here, is fresh, and belongs to ``binding``."""
        if not token or not binding:
            return False
        try:
            signed = self.serializer.loads(token, max_age=self.max_age_s)
        except BadSignature:
            return False
        return isinstance(signed, str) and secrets.compare_digest(signed, binding)


def csrf_binding(request: web.Request) -> str:
    """What this browser's CSRF tokens are bound to: its session, else its pre-login cookie."""
    session = current_session(request)
    if session is not None:
        return session.id_sha256
    prelogin = request.cookies.get(PRELOGIN_COOKIE, "")
    return sha256_hex(prelogin) if prelogin else ""


def current_user(request: web.Request) -> Account | None:
    """The logged-in account of this request, or None."""
    return request.get(USER_KEY)


def current_session(request: web.Request) -> LoginSession | None:
    """The login session of this request, or None."""
    return request.get(SESSION_KEY)


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, *, secure: str
) -> None:
    """Set a console cookie: HttpOnly, SameSite=Strict, Secure over TLS (or when told)."""
    is_secure = secure == "true" or (secure == "auto" and request.secure)
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=is_secure, path="/")
