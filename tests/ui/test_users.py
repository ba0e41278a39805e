"""Local accounts, sessions with expiry, memberships, and session tokens on the HTTP API."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from control_room.services import users
from control_room.services.auth import ExecutorPrincipal, UserPrincipal, authenticate
from control_room.services.errors import Invalid, Unauthorized
from tests.live import LiveServer, Provisioner
from tests.ui.conftest import Team, run_async


def test_sign_in_starts_a_session_that_the_api_authentication_accepts(database_url: str, team: Team) -> None:
    async def work(conn: psycopg.AsyncConnection) -> tuple[users.NewSession, users.SignedInUser, object]:
        session = await users.sign_in(conn, email=team.operator.email.upper(), password=team.operator.password)
        return session, await users.session_user(conn, token=session.token), await authenticate(conn, session.token)

    session, user, principal = run_async(database_url, work)
    assert session.token.startswith("lhs_")
    assert user.user_id == team.operator.user_id and user.email == team.operator.email
    assert principal == UserPrincipal(user_id=team.operator.user_id, email=team.operator.email)
    assert not isinstance(principal, ExecutorPrincipal)


def test_wrong_password_and_unknown_email_get_the_same_refusal(database_url: str, team: Team) -> None:
    def refusal(email: str, password: str) -> str:
        with pytest.raises(Unauthorized) as caught:
            run_async(database_url, lambda c: users.sign_in(c, email=email, password=password))
        return caught.value.message

    assert refusal(team.viewer.email, team.viewer.password + "x") == users.WRONG_CREDENTIALS
    assert refusal("nobody@ui.example", "whatever-password") == users.WRONG_CREDENTIALS


def test_empty_credentials_name_the_missing_field(database_url: str) -> None:
    with pytest.raises(Invalid) as caught:
        run_async(database_url, lambda c: users.sign_in(c, email="a@b.example", password=""))
    assert caught.value.field == "password"


def test_short_password_is_refused(database_url: str) -> None:
    with pytest.raises(Invalid) as caught:
        run_async(database_url, lambda c: users.create_local_user(c, email="short@ui.example", password="tiny"))
    assert caught.value.field == "password"


def test_expired_and_signed_out_sessions_are_refused(database_url: str, db: psycopg.Connection, team: Team) -> None:
    first = run_async(database_url, lambda c: users.sign_in(c, email=team.viewer.email, password=team.viewer.password))
    second = run_async(database_url, lambda c: users.sign_in(c, email=team.viewer.email, password=team.viewer.password))
    db.execute(
        "update ops.user_sessions set expires_at = now() - interval '1 second' where user_id = %s and token_hash = %s",
        (team.viewer.user_id, users.hash_token(first.token)),
    )
    for token in (first.token,):
        with pytest.raises(Unauthorized):
            run_async(database_url, lambda c, t=token: users.session_user(c, token=t))
        with pytest.raises(Unauthorized):
            run_async(database_url, lambda c, t=token: authenticate(c, t))
    assert run_async(database_url, lambda c: users.session_user(c, token=second.token)).email == team.viewer.email
    run_async(database_url, lambda c: users.sign_out(c, token=second.token))
    with pytest.raises(Unauthorized):
        run_async(database_url, lambda c: users.session_user(c, token=second.token))


def test_session_expiry_follows_the_setting(database_url: str, team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_SESSION_HOURS", "2")
    from control_room.config import Settings

    session = run_async(
        database_url,
        lambda c: users.sign_in(c, email=team.admin.email, password=team.admin.password, settings=Settings()),
    )
    from datetime import UTC, datetime, timedelta

    left = session.expires_at - datetime.now(UTC)
    assert timedelta(hours=1, minutes=59) < left <= timedelta(hours=2)


def test_create_admin_is_admin_of_every_org_and_sees_every_project(database_url: str, team: Team) -> None:
    email = f"boss-{uuid.uuid4().hex[:6]}@ui.example"
    account = run_async(database_url, lambda c: users.create_admin(c, email=email))
    assert len(account.password) >= users.MIN_PASSWORD_LENGTH
    session = run_async(database_url, lambda c: users.sign_in(c, email=email, password=account.password))
    projects, org_admin = run_async(database_url, lambda c: users.memberships(c, session.user))
    assert org_admin
    mine = {p.project_id: p.role for p in projects}
    assert mine[team.tenant.project_id] == "admin"
    # Running it again resets the password: the old one stops working.
    again = run_async(database_url, lambda c: users.create_admin(c, email=email))
    with pytest.raises(Unauthorized):
        run_async(database_url, lambda c: users.sign_in(c, email=email, password=account.password))
    run_async(database_url, lambda c: users.sign_in(c, email=email, password=again.password))


def test_memberships_are_what_rls_lets_the_user_see(database_url: str, team: Team) -> None:
    viewer = users.SignedInUser(team.viewer.user_id, team.viewer.email, "")
    projects, org_admin = run_async(database_url, lambda c: users.memberships(c, viewer))
    assert [(p.project_id, p.role) for p in projects] == [(team.tenant.project_id, "viewer")]
    assert not org_admin
    boss = users.SignedInUser(team.org_admin.user_id, team.org_admin.email, "")
    projects, org_admin = run_async(database_url, lambda c: users.memberships(c, boss))
    assert [(p.project_id, p.role) for p in projects] == [(team.tenant.project_id, "admin")]
    assert org_admin


def test_grant_role_replaces_the_earlier_role(database_url: str, team: Team) -> None:
    run_async(
        database_url,
        lambda c: users.grant_role(c, email=team.viewer.email, project=str(team.tenant.project_id), role="operator"),
    )
    viewer = users.SignedInUser(team.viewer.user_id, team.viewer.email, "")
    projects, _ = run_async(database_url, lambda c: users.memberships(c, viewer))
    assert [p.role for p in projects] == ["operator"]
    with pytest.raises(Invalid) as caught:
        run_async(
            database_url,
            lambda c: users.grant_role(c, email=team.viewer.email, project=str(team.tenant.project_id), role="owner"),
        )
    assert caught.value.field == "role"


def test_the_http_api_accepts_a_web_session_as_bearer_token(
    live_api: LiveServer, provision: Provisioner, api_database_url: str
) -> None:
    email = f"web-{uuid.uuid4().hex[:6]}@ui.example"
    password = users.generate_password()
    tenant = provision.tenant()

    async def sign_up_and_in(conn: psycopg.AsyncConnection) -> users.NewSession:
        await users.create_local_user(conn, email=email, password=password)
        await users.grant_role(conn, email=email, project=str(tenant.project_id), role="viewer")
        return await users.sign_in(conn, email=email, password=password)

    session = run_async(api_database_url, sign_up_and_in)
    headers = {"Authorization": f"Bearer {session.token}"}
    response = httpx.get(
        f"{live_api.base_url}/api/v1/runs", params={"project": str(tenant.project_id)}, headers=headers
    )
    assert response.status_code == 200, response.text
    run_async(api_database_url, lambda c: users.sign_out(c, token=session.token))
    response = httpx.get(f"{live_api.base_url}/api/v1/runs", headers=headers)
    assert response.status_code == 401
