"""Sign-in through Supabase Auth (supabase-py's GoTrue client) against the GoTrue test server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from control_room.config import Settings
from control_room.services import users
from control_room.services.errors import Unauthorized
from tests.gotrue_server import GoTrueServer, gotrue_server
from tests.ui.conftest import run_async


@pytest.fixture(scope="module")
def gotrue() -> Iterator[GoTrueServer]:
    with gotrue_server() as server:
        yield server


def _settings(server: GoTrueServer, monkeypatch: pytest.MonkeyPatch, *, key: str | None = None) -> Settings:
    monkeypatch.setenv("SUPABASE_URL", server.url)
    monkeypatch.setenv("SUPABASE_ANON_KEY", key if key is not None else server.anon_key)
    return Settings()


def test_supabase_user_signs_in_with_their_supabase_id(
    database_url: str, db: psycopg.Connection, gotrue: GoTrueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = gotrue.add_user(f"ana-{uuid.uuid4().hex[:6]}@supa.example", "correct horse battery")
    settings = _settings(gotrue, monkeypatch)
    gotrue.requests.clear()
    session = run_async(
        database_url,
        lambda c: users.sign_in(c, email=person.email.upper(), password=person.password, settings=settings),
    )
    assert session.user.user_id == uuid.UUID(person.id)
    assert session.token.startswith("lhs_")
    row = db.execute("select email, password_hash from ops.users where id = %s", (person.id,)).fetchone()
    assert row == (person.email, None)
    # Identity confirmed with the issued token, then the Supabase session was handed back.
    assert [method + " " + path for method, path in gotrue.requests] == [
        "POST /auth/v1/token?grant_type=password",
        "GET /auth/v1/user",
        "POST /auth/v1/logout?scope=local",
    ]
    assert gotrue.sessions == {}
    # Roles come from ops memberships keyed by the same id.
    assert run_async(database_url, lambda c: users.session_user(c, token=session.token)).email == person.email


def test_wrong_supabase_password_and_unconfirmed_email_are_refused(
    database_url: str, gotrue: GoTrueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = gotrue.add_user(f"bo-{uuid.uuid4().hex[:6]}@supa.example", "correct horse battery")
    pending = gotrue.add_user(f"cy-{uuid.uuid4().hex[:6]}@supa.example", "correct horse battery", confirmed=False)
    settings = _settings(gotrue, monkeypatch)
    with pytest.raises(Unauthorized) as caught:
        run_async(database_url, lambda c: users.sign_in(c, email=person.email, password="wrong", settings=settings))
    assert caught.value.message == users.WRONG_CREDENTIALS
    with pytest.raises(Unauthorized):
        run_async(
            database_url, lambda c: users.sign_in(c, email=pending.email, password=pending.password, settings=settings)
        )


def test_local_passwords_do_not_sign_in_when_supabase_is_configured(
    database_url: str, gotrue: GoTrueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"local-{uuid.uuid4().hex[:6]}@supa.example"
    run_async(database_url, lambda c: users.create_local_user(c, email=email, password="local password 1"))
    settings = _settings(gotrue, monkeypatch)
    with pytest.raises(Unauthorized):
        run_async(database_url, lambda c: users.sign_in(c, email=email, password="local password 1", settings=settings))


def test_a_wrong_api_key_or_unreachable_server_is_a_provider_error(
    database_url: str, gotrue: GoTrueServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = gotrue.add_user(f"di-{uuid.uuid4().hex[:6]}@supa.example", "correct horse battery")
    settings = _settings(gotrue, monkeypatch, key="not-the-key")
    with pytest.raises(users.AuthProviderUnavailable) as caught:
        run_async(
            database_url, lambda c: users.sign_in(c, email=person.email, password=person.password, settings=settings)
        )
    assert "Invalid API key" in caught.value.message
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(users.AuthProviderUnavailable) as caught:
        run_async(
            database_url,
            lambda c: users.sign_in(c, email=person.email, password=person.password, settings=Settings()),
        )
    assert "unreachable" in caught.value.message
