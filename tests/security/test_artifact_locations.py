"""Artifact store locations are shown to project admins only; other members get an opaque id and can still
download the bytes."""

from __future__ import annotations

import hashlib
import uuid

import httpx

from tests.live import LiveServer, Provisioner

API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_members_see_an_opaque_id_admins_the_store_location(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("artifact-locations")
    pool = f"loc-{uuid.uuid4().hex[:6]}"
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    admin = client(live_api, provision.user_token("admin", tenant)[1])
    agent = client(live_api, provision.executor_token(pool, tenant=tenant))
    assert agent.post("/executors/register", json={"engines": ["shell"]}).status_code == 200
    spec = {"tasks": [{"key": "make", "engine": "shell", "pool": pool, "command": "true"}]}
    run = operator.post("/runs", json={"project": str(tenant.project_id), "spec": spec}).json()
    (task,) = agent.post("/tasks/claim", json={"max_tasks": 1}).json()["tasks"]
    body = b"secret-free bytes"
    sha = hashlib.sha256(body).hexdigest()
    ticket = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={"lease_token": task["lease_token"], "name": "out.txt", "size_bytes": len(body), "sha256": sha},
    ).json()
    put = agent.request(ticket["method"], ticket["upload_url"], headers=ticket["headers"], content=body)
    assert put.status_code in (200, 204), put.text
    done = agent.post(
        f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete", json={"lease_token": task["lease_token"]}
    )
    assert done.status_code == 200 and done.json()["uri"].startswith("file://"), "the executor (trusted) is told"

    (seen,) = operator.get(f"/runs/{run['id']}/artifacts").json()["items"]
    assert seen["uri"] == f"artifact:{seen['id']}", "an operator sees an opaque id, no server path"
    assert operator.get(f"/artifacts/{seen['id']}").json()["uri"] == f"artifact:{seen['id']}"
    assert operator.get(f"/artifacts/{seen['id']}/content").content == body
    (as_admin,) = admin.get(f"/runs/{run['id']}/artifacts").json()["items"]
    assert as_admin["uri"].startswith("file://") and as_admin["uri"].endswith("out.txt")
