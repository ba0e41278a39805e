"""The web app's session cookie: signed with LAKEHOUSE_SESSION_SECRET, HttpOnly, SameSite=Lax, Secure in
production; set by the sign-in form's POST (never by page scripts), cleared by the sign-out form's POST;
opens the API's reads from the same browser but no write; forged or cross-site posts are refused."""

from __future__ import annotations

import base64

import httpx
import psycopg
import pytest
from starlette.responses import Response

from control_room import session_cookie
from control_room.config import Settings
from control_room.services import users
from control_room.services.auth import hash_token
from tests.live import LiveServer, Provisioner
from tests.security.conftest import Person

SECRET = "0f7c1e9a4b2d48e6a1c3b5d7e9f0a2c4"


def _settings(env: str) -> Settings:
    return Settings(env=env, session_secret=SECRET)


def test_the_cookie_is_signed_and_a_forged_or_resigned_one_is_refused() -> None:
    settings = _settings("development")
    signed = session_cookie.sign("lhs_abc", settings)
    assert signed.startswith("lhs_abc.") and session_cookie.unsign(signed, settings) == "lhs_abc"
    assert session_cookie.unsign("lhs_abd" + signed[7:], settings) is None, "another token, same signature"
    assert session_cookie.unsign(signed + "x", settings) is None
    assert session_cookie.unsign("lhs_abc", settings) is None, "an unsigned token"
    other = Settings(env="development", session_secret="another-secret-another-secret-00")
    assert session_cookie.unsign(signed, other) is None, "signed with another secret"
    header = f"theme=dark; lh_session={signed}; other=1"
    assert session_cookie.session_token(header, settings) == "lhs_abc"
    assert session_cookie.session_token("lh_session=lhs_abc", settings) == ""


@pytest.mark.parametrize(("env", "secure"), [("production", True), ("development", False), ("test", False)])
def test_cookie_attributes(env: str, secure: bool) -> None:
    response = Response()
    session_cookie.set_session(response, "lhs_token", _settings(env))
    (header,) = [v.decode() for k, v in response.raw_headers if k == b"set-cookie" and v.startswith(b"lh_session=")]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=lax" in header.lower()
    assert ("secure" in attributes) is secure


def test_form_sign_in_sets_the_cookie_which_reads_but_never_writes_and_sign_out_clears_it(
    live_api: LiveServer, provision: Provisioner, person: Person
) -> None:
    email, password, user_id = person
    browser = httpx.Client(base_url=live_api.base_url, timeout=30, follow_redirects=False)
    signed = browser.post(
        "/api/v1/auth/web-sessions", data={"email": email, "password": password, "next": "/runs/abc?tab=timeline"}
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/runs/abc?tab=timeline"
    set_cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "samesite=lax" in set_cookie.lower() and "Secure" not in set_cookie
    cookie = browser.cookies["lh_session"]
    token = cookie.rsplit(".", 1)[0]
    with psycopg.connect(provision.database_url) as conn:
        row = conn.execute(
            "select user_id from ops.user_sessions where token_hash = %s and revoked_at is null", (hash_token(token),)
        ).fetchone()
    assert row == (user_id,)

    project = str(provision.tenant().project_id)
    assert browser.get("/api/v1/runs", params={"project": project}).status_code == 200, "reads with the cookie"
    spec = {"tasks": [{"key": "a", "engine": "shell"}]}
    write = browser.post("/api/v1/runs", json={"project": project, "spec": spec})
    assert write.status_code == 401, "no write is authenticated by the cookie alone"
    forged = httpx.get(
        live_api.base_url + "/api/v1/runs", params={"project": project}, cookies={"lh_session": token + ".forged"}
    )
    assert forged.status_code == 401

    elsewhere = browser.post("/api/v1/auth/web-sessions/end", headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403, "another site's form cannot sign the person out"
    ended = browser.post("/api/v1/auth/web-sessions/end", headers={"Origin": live_api.base_url})
    assert ended.status_code == 303 and ended.headers["location"] == "/login"
    assert "lh_session" not in browser.cookies, "the cookie is cleared"
    with psycopg.connect(provision.database_url) as conn:
        revoked = conn.execute(
            "select revoked_at is not null from ops.user_sessions where token_hash = %s", (hash_token(token),)
        ).fetchone()
    assert revoked == (True,)
    stale = httpx.get(live_api.base_url + "/api/v1/runs", params={"project": project}, cookies={"lh_session": cookie})
    assert stale.status_code == 401, "the old cookie no longer opens anything"


def test_a_failed_form_sign_in_goes_back_with_the_reason_and_other_sites_cannot_post(
    live_api: LiveServer, person: Person
) -> None:
    email, _, _ = person
    browser = httpx.Client(base_url=live_api.base_url, timeout=30, follow_redirects=False)
    wrong = browser.post("/api/v1/auth/web-sessions", data={"email": email, "password": "nope", "next": "/runs"})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?next=%2Fruns"
    assert "lh_session" not in browser.cookies
    header = f"lh_sign_in_error={browser.cookies['lh_sign_in_error']}"
    assert session_cookie.sign_in_error(header, Settings()) == users.WRONG_CREDENTIALS

    escaped = browser.post(
        "/api/v1/auth/web-sessions", data={"email": email, "password": "x", "next": "//evil.example"}
    )
    assert escaped.headers["location"] == "/login?next=%2Fruns", "never sent to another site afterwards"
    login_csrf = browser.post(
        "/api/v1/auth/web-sessions",
        data={"email": email, "password": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert login_csrf.status_code == 403
    unsigned = base64.urlsafe_b64encode(b"made up").decode()
    assert session_cookie.sign_in_error(f"lh_sign_in_error={unsigned}", Settings()) == "", "only messages we signed"
