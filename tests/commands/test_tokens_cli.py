"""`lakehouse tokens create|list|revoke`: a person's API token, shown once, used against the API, revoked."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from tests.commands.test_executors_cli import lakehouse
from tests.live import LiveServer, Provisioner


def test_create_list_and_revoke_a_token(live_api: LiveServer, api_database_url: str, provision: Provisioner) -> None:
    user_id, _ = provision.user_token("viewer")
    with psycopg.connect(api_database_url) as conn:
        row = conn.execute("select email from ops.users where id = %s", (user_id,)).fetchone()
    assert row
    email = row[0]
    created = lakehouse(
        api_database_url, "tokens", "create", "--email", email, "--name", "cli", "--role-ceiling", "viewer"
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("lhu_") and "shown once" in created.stderr
    api = httpx.Client(base_url=live_api.base_url + "/api/v1", headers={"Authorization": f"Bearer {token}"})
    assert api.get("/runs").status_code == 200

    listed = lakehouse(api_database_url, "tokens", "list", "--email", email)
    assert listed.returncode == 0 and "cli\t" in listed.stdout and "ceiling=viewer" in listed.stdout
    assert token not in listed.stdout

    revoked = lakehouse(api_database_url, "tokens", "revoke", "--email", email, "--name", "cli")
    assert revoked.returncode == 0, revoked.stderr
    assert api.get("/runs").status_code == 401

    unknown = lakehouse(api_database_url, "tokens", "list", "--email", f"nobody-{uuid.uuid4().hex[:6]}@x.example")
    assert unknown.returncode == 1 and "no active user" in unknown.stderr
