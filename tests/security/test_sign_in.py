"""Sign-in over HTTP: a bearer session for API clients, brute force throttled per account and per client
address, API tokens created (shown once, stored hashed), capped by a role ceiling, revoked."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from control_room.services.auth import TOKEN_TOUCH_SECONDS, hash_token, look_up
from tests.live import LiveServer, Provisioner
from tests.security.conftest import Person

API = "/api/v1"


async def look_up_once(database_url: str, token: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await look_up(conn, token)


def test_sign_in_gives_a_bearer_token_that_submits_a_run(
    live_api: LiveServer, provision: Provisioner, person: Person
) -> None:
    email, password, _ = person
    api = httpx.Client(base_url=live_api.base_url + API, timeout=30)
    signed = api.post("/auth/sessions", json={"email": email, "password": password})
    assert signed.status_code == 201, signed.text
    token = signed.json()["token"]
    assert token.startswith("lhs_") and signed.json()["email"] == email
    headers = {"Authorization": f"Bearer {token}"}
    spec = {"tasks": [{"key": "hello", "engine": "shell", "command": "echo hi"}]}
    run = api.post("/runs", json={"project": str(provision.tenant().project_id), "spec": spec}, headers=headers)
    assert run.status_code == 201, run.text
    assert api.delete("/auth/sessions/current", headers=headers).status_code == 204
    assert api.get("/runs", headers=headers).status_code == 401, "a signed-out session is refused"


def test_brute_force_is_throttled_per_account_with_a_clear_message(live_api: LiveServer, person: Person) -> None:
    email, password, _ = person
    api = httpx.Client(base_url=live_api.base_url + API, timeout=30)
    for _ in range(5):
        wrong = api.post("/auth/sessions", json={"email": email, "password": "not-the-password"})
        assert wrong.status_code == 401 and "email or password is wrong" in wrong.text
    throttled = api.post("/auth/sessions", json={"email": email, "password": "not-the-password"})
    assert throttled.status_code == 429 and "too many failed sign-ins for this account" in throttled.text
    right = api.post("/auth/sessions", json={"email": email, "password": password})
    assert right.status_code == 429, "even the right password waits until the window has passed"


def test_brute_force_is_throttled_per_client_address(live_api: LiveServer, provision: Provisioner) -> None:
    api = httpx.Client(base_url=live_api.base_url + API, timeout=30)
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("delete from ops.sign_in_failures where client = '127.0.0.1'")
    statuses = [
        api.post("/auth/sessions", json={"email": f"spray-{i}@test.example", "password": "guess"}).status_code
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("delete from ops.sign_in_failures where client = '127.0.0.1'")


def test_api_tokens_are_shown_once_capped_by_their_ceiling_and_revocable(
    live_api: LiveServer, provision: Provisioner, person: Person
) -> None:
    email, password, user_id = person
    api = httpx.Client(base_url=live_api.base_url + API, timeout=30)
    session = api.post("/auth/sessions", json={"email": email, "password": password}).json()["token"]
    as_session = {"Authorization": f"Bearer {session}"}
    created = api.post("/tokens", json={"name": "read-only", "role_ceiling": "viewer", "expires_in_days": 7},
                       headers=as_session)  # fmt: skip
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("lhu_") and created.json()["role_ceiling"] == "viewer"
    with psycopg.connect(provision.database_url) as conn:
        stored = conn.execute("select token_hash from ops.api_tokens where user_id = %s", (user_id,)).fetchone()
    assert stored == (hash_token(token),), "only the hash is stored"
    listed = api.get("/tokens", headers=as_session).json()["items"]
    assert [t["name"] for t in listed] == ["read-only"] and "token" not in listed[0]

    capped = {"Authorization": f"Bearer {token}"}
    spec = {"tasks": [{"key": "x", "engine": "shell", "command": "true"}]}
    refused = api.post("/runs", json={"project": str(provision.tenant().project_id), "spec": spec}, headers=capped)
    assert refused.status_code == 403, "an operator's viewer-capped token cannot submit"
    assert api.get("/runs", headers=capped).status_code == 200, "but can read"
    assert api.get("/tokens", headers=as_session).json()["items"][0]["last_used_at"] is not None

    assert api.delete("/tokens/read-only", headers=as_session).status_code == 204
    assert api.get("/runs", headers=capped).status_code == 401, "a revoked token is refused"


def test_a_tokens_last_use_is_written_when_unset_or_older_than_the_touch_interval(
    live_api: LiveServer, provision: Provisioner
) -> None:
    user_id, token = provision.user_token("viewer")
    api = httpx.Client(base_url=live_api.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def last_used() -> tuple[object, object]:
        with psycopg.connect(provision.database_url) as conn:
            row = conn.execute(
                "select last_used_at, xmin::text from ops.api_tokens where user_id = %s", (user_id,)
            ).fetchone()
        assert row is not None
        return row[0], row[1]

    assert last_used()[0] is None
    assert api.get("/runs").status_code == 200
    first = last_used()
    assert first[0] is not None, "the first use is recorded"
    assert api.get("/runs").status_code == 200
    assert last_used() == first, f"a use within {TOKEN_TOUCH_SECONDS} s of the last one writes nothing"

    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "update ops.api_tokens set last_used_at = now() - make_interval(secs => %s) where user_id = %s",
            (TOKEN_TOUCH_SECONDS + 5, user_id),
        )
    stale = last_used()
    # The API remembers the token's user for at most TOKEN_TOUCH_SECONDS (control_room/api/principals.py),
    # so its next look-up comes within that; the look-up is what writes.
    asyncio.run(look_up_once(provision.database_url, token))
    assert last_used()[0] > stale[0], "a use after the interval moves it to now"  # type: ignore[operator]
