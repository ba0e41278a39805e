"""`lakehouse executors token create|revoke` against the live API: shown once, stored hashed, 401 after revoke."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg

from tests.live import LiveServer, Provisioner

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))


def lakehouse(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEHOUSE_DATABASE_URL": database_url}
    return subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_token_create_then_revoke_gives_401(
    live_api: LiveServer, api_database_url: str, provision: Provisioner
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    tenant = provision.tenant()
    provision.tenant("cli-other-org")
    without_org = lakehouse(api_database_url, "executors", "token", "create", "--name", name, "--pool", "cli-pool")
    assert without_org.returncode == 1 and "--org" in without_org.stderr, "several orgs: the owner must be named"
    created = lakehouse(
        api_database_url,
        "executors",
        "token",
        "create",
        "--name",
        name,
        "--pool",
        "cli-pool",
        "--org",
        str(tenant.org_id),
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("lhx_") and "shown once" in created.stderr
    with psycopg.connect(api_database_url) as conn:
        stored = conn.execute("select token_hash, pool, org_id from ops.executors where name = %s", (name,)).fetchone()
    assert stored is not None and stored[1] == "cli-pool" and token not in stored[0]
    assert stored[2] == tenant.org_id, "the executor belongs to the named org"

    api = httpx.Client(base_url=live_api.base_url + "/api/v1", headers={"Authorization": f"Bearer {token}"})
    registered = api.post("/executors/register", json={"engines": ["shell"]})
    assert registered.status_code == 200 and registered.json()["pool"] == "cli-pool"

    duplicate = lakehouse(api_database_url, "executors", "token", "create", "--name", name, "--org", str(tenant.org_id))
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    revoked = lakehouse(api_database_url, "executors", "token", "revoke", "--name", name)
    assert revoked.returncode == 0, revoked.stderr
    after = api.post("/tasks/claim", json={})
    assert after.status_code == 401 and token not in after.text

    again = lakehouse(api_database_url, "executors", "token", "revoke", "--name", name)
    assert again.returncode == 1 and "no active executor" in again.stderr


def test_bad_pool_name_is_refused_with_a_message(api_database_url: str) -> None:
    result = lakehouse(api_database_url, "executors", "token", "create", "--name", "x", "--pool", "Bad Pool")
    assert result.returncode == 2 and "pool" in result.stderr
