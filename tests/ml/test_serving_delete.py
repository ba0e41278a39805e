"""`DELETE /api/v1/serving/endpoints/{name}`: the endpoint goes with its tokens, its replicas' runs are
cancelled, the audit log names who deleted what, and a missing endpoint is a 404 that names it."""

from __future__ import annotations

import httpx
import psycopg

from tests.agent.conftest import operator_client
from tests.live import LiveServer, Provisioner

API = "/api/v1"


def test_delete_an_endpoint_stops_its_replicas_and_its_tokens(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("serving-delete")
    user, secret = provision.user_token("operator", tenant)
    operator = operator_client(live_api, secret)
    project = {"project": str(tenant.project_id)}
    created = operator.post(
        "/serving/endpoints",
        json={**project, "name": "churn-del", "model": "churn", "version": "1", "replicas": 2},
    )
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    runs = {r["run_id"] for r in created.json()["replica_list"]}
    assert len(runs) == 2
    kept = operator.post("/serving/endpoints", json={**project, "name": "churn-kept", "model": "churn", "version": "1"})
    assert kept.status_code == 201, kept.text
    token = operator.post("/serving/endpoints/churn-del/tokens", params=project, json={"name": "app"}).json()["token"]

    deleted = operator.delete("/serving/endpoints/churn-del", params=project)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""

    missing = operator.get("/serving/endpoints/churn-del", params=project)
    assert missing.status_code == 404 and "churn-del" in missing.json()["detail"]
    again = operator.delete("/serving/endpoints/churn-del", params=project)
    assert again.status_code == 404 and again.json()["detail"].startswith("endpoint churn-del does not exist")
    assert again.headers["content-type"] == "application/problem+json"
    listed = operator.get("/serving/endpoints", params=project).json()
    assert [e["name"] for e in listed] == ["churn-kept"]
    with httpx.Client(base_url=live_api.base_url + API, timeout=30) as anonymous:
        answer = anonymous.post(
            "/serving/churn-del/invocations", json={"inputs": [[1]]}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code in (401, 404), answer.text  # its token went with it
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        statuses = conn.execute("select status from ops.runs where id = any(%s)", (list(runs),)).fetchall()
        audit = conn.execute(
            "select actor, detail from ops.audit_log where entity = 'serving_endpoints' and entity_id = %s "
            "and action = 'delete'",
            (endpoint_id,),
        ).fetchall()
        tokens = conn.execute(
            "select count(*) from ops.serving_tokens where endpoint_id = %s", (endpoint_id,)
        ).fetchone()
    assert [s for (s,) in statuses] == ["cancelled", "cancelled"]
    assert len(audit) == 1 and audit[0][1]["name"] == "churn-del" and audit[0][1]["replicas"] == 2
    assert audit[0][0] == str(user)  # who deleted it
    assert tokens == (0,)


def test_numbers_beyond_the_columns_are_refused_naming_the_field(live_api: LiveServer, provision: Provisioner) -> None:
    # Found by the contract fuzzer: a memory limit beyond a 32-bit integer reached the database as a bigint
    # and came back as a 500; it is a 422 that names the field, and nothing is created.
    tenant = provision.tenant("serving-bounds")
    operator = operator_client(live_api, provision.user_token("operator", tenant)[1])
    project = {"project": str(tenant.project_id)}
    body = {**project, "name": "churn-big", "model": "churn", "version": "1", "max_memory_mb": 1_811_043_702_632}
    too_big = operator.post("/serving/endpoints", json=body)
    assert too_big.status_code == 422, too_big.text
    assert "max_memory_mb" in too_big.text
    assert operator.get("/serving/endpoints", params=project).json() == []
    created = operator.post("/serving/endpoints", json={**body, "max_memory_mb": 2048})
    assert created.status_code == 201, created.text
    stale = operator.post(
        "/serving/endpoints/churn-big/canary",
        params=project,
        json={"version": "2", "percent": 10, "expected_revision": 2**40},
    )
    assert stale.status_code == 422 and "expected_revision" in stale.text, stale.text
