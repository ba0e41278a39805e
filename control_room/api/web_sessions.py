"""The web app's sign-in and sign-out: plain HTML form posts that set or clear the HttpOnly session cookie
and redirect (303) to the next page, which then loads with a fresh websocket that carries the cookie.

They belong to the web app, not to the contract (API clients sign in with POST /auth/sessions and a
bearer token), so they are left out of the OpenAPI document.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from control_room import routes, session_cookie
from control_room.api.deps import Pool
from control_room.config import get_settings
from control_room.services import users
from control_room.services.errors import ServiceError

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 10_000


def _cross_site(request: Request) -> bool:
    """A form posted by another site (login CSRF): its Origin names another host than ours."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    return urlsplit(origin).netloc != request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", errors="replace")
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _back_to_sign_in(message: str, next_path: str) -> Response:
    response = RedirectResponse(routes.login(next_path=next_path), status_code=303)
    session_cookie.set_sign_in_error(response, message, get_settings())
    return response


@router.post(routes.WEB_SIGN_IN_PATH)
async def sign_in_form(request: Request, db: Pool) -> Response:
    """Check the form's credentials (throttled like every sign-in), set the session cookie, go on."""
    if _cross_site(request):
        return Response("sign-in forms from other sites are refused", status_code=403)
    form = await _form(request)
    wanted = routes.safe_next_path(form.get("next"))
    try:
        async with db.connection() as conn:
            session = await users.sign_in(
                conn,
                email=form.get("email", ""),
                password=form.get("password", ""),
                user_agent=request.headers.get("user-agent"),
                client=request.client.host if request.client else None,
            )
    except ServiceError as exc:
        return _back_to_sign_in(exc.message, wanted)
    response = RedirectResponse(wanted, status_code=303)
    session_cookie.set_session(response, session.token, get_settings())
    return response


@router.post(routes.WEB_SIGN_OUT_PATH)
async def sign_out_form(request: Request, db: Pool) -> Response:
    """End the cookie's session in the database, clear the cookie, and show the sign-in page."""
    if _cross_site(request):
        return Response("sign-out forms from other sites are refused", status_code=403)
    settings = get_settings()
    token = session_cookie.session_token(request.headers.get("cookie", ""), settings)
    if token:
        async with db.connection() as conn:
            await users.sign_out(conn, token=token)
    response = RedirectResponse(routes.LOGIN, status_code=303)
    session_cookie.clear_session(response, settings)
    return response
