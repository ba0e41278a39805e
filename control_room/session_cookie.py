"""The browser's session cookie: an ``lhs_`` session token signed with LAKEHOUSE_SESSION_SECRET, set
HttpOnly and SameSite=Lax by our sign-in endpoint (Secure in production), never readable by page scripts.

The web app reads it on the server side only, from the cookie header of the websocket connection
(``router.headers.cookie``), and keeps the token in backend-only state vars. The signature lets the
server refuse a cookie it did not issue before any database lookup, and makes a leaked database
backup of session hashes useless for forging cookies without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie

from starlette.responses import Response

from control_room.config import Settings

SESSION_COOKIE = "lh_session"
# A sign-in failure's message, shown once by the sign-in page after the form's redirect back.
SIGN_IN_ERROR_COOKIE = "lh_sign_in_error"
SIGN_IN_ERROR_SECONDS = 30


def _signature(value: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(value: str, settings: Settings) -> str:
    """``value.signature``: what the cookie holds."""
    return f"{value}.{_signature(value, settings.session_secret)}"


def unsign(signed: str, settings: Settings) -> str | None:
    """The value of a cookie we signed; None when it is malformed or signed with another secret."""
    value, dot, signature = signed.rpartition(".")
    if not dot or not value:
        return None
    return value if hmac.compare_digest(signature, _signature(value, settings.session_secret)) else None


def read_cookie(header: str, name: str, settings: Settings) -> str | None:
    """One signed cookie's value from a ``Cookie`` request header (None when absent or not ours)."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header or "")
    except CookieError:
        return None
    morsel = jar.get(name)
    return unsign(morsel.value, settings) if morsel is not None and morsel.value else None


def session_token(header: str, settings: Settings) -> str:
    """The session token the browser's cookie carries ("" when none or forged)."""
    return read_cookie(header, SESSION_COOKIE, settings) or ""


def _set(response: Response, name: str, value: str, *, max_age: int, path: str, settings: Settings) -> None:
    response.set_cookie(
        name,
        sign(value, settings),
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",
        secure=settings.env == "production",
    )


def set_session(response: Response, token: str, settings: Settings) -> None:
    """Give the browser its session: HttpOnly, SameSite=Lax, Secure in production, for the session's life."""
    _set(response, SESSION_COOKIE, token, max_age=int(settings.session_hours * 3600), path="/", settings=settings)
    response.delete_cookie(SIGN_IN_ERROR_COOKIE, path="/", httponly=True, samesite="lax")


def clear_session(response: Response, settings: Settings) -> None:
    """Make the browser forget its session cookie (same attributes, so it replaces the one set)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.env == "production")


def set_sign_in_error(response: Response, message: str, settings: Settings) -> None:
    """Hand the sign-in page the reason a sign-in failed (short-lived, HttpOnly, signed)."""
    encoded = base64.urlsafe_b64encode(message.encode()).rstrip(b"=").decode()
    _set(response, SIGN_IN_ERROR_COOKIE, encoded, max_age=SIGN_IN_ERROR_SECONDS, path="/", settings=settings)


def sign_in_error(header: str, settings: Settings) -> str:
    """The failure message the last sign-in left for the sign-in page ("" when none)."""
    encoded = read_cookie(header, SIGN_IN_ERROR_COOKIE, settings)
    if not encoded:
        return ""
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""
