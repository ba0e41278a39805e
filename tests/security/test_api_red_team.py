"""Org B against org A through the HTTP API: B's executor claims none of A's tasks, a forged pool in a spec
is not honoured, routing problems are shown, and revoked or expired tokens are refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from tests.integration.factories import TEST_OVERRIDE_RULE
from tests.live import LiveServer, Provisioner, refused_soon

API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def submit(c: httpx.Client, project: uuid.UUID, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    response = c.post("/runs", json={"project": str(project), "environment": "dev", "spec": {"tasks": tasks}})
    assert response.status_code == 201, response.text
    return response.json()


def claim(c: httpx.Client, max_tasks: int = 50) -> list[dict[str, Any]]:
    response = c.post("/tasks/claim", json={"max_tasks": max_tasks, "wait_s": 0})
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def test_an_executor_of_org_b_claims_none_of_org_a_tasks(live_api: LiveServer, provision: Provisioner) -> None:
    pool = f"shared-name-{uuid.uuid4().hex[:6]}"
    a, b = provision.tenant("red-a"), provision.tenant("red-b")
    operator_a = client(live_api, provision.user_token("operator", a)[1])
    agent_b = client(live_api, provision.executor_token(pool, tenant=b))
    agent_a = client(live_api, provision.executor_token(pool, tenant=a))
    for agent in (agent_a, agent_b):
        assert agent.post("/executors/register", json={"engines": ["shell"], "max_concurrency": 50}).status_code == 200
    run = submit(
        operator_a,
        a.project_id,
        [{"key": f"t{i}", "engine": "shell", "command": "true", "pool": pool} for i in range(5)],
    )
    assert claim(agent_b) == [], "same pool name, another org: nothing"
    got = claim(agent_a)
    assert {t["run_id"] for t in got} == {run["id"]} and len(got) == 5


def test_a_forged_pool_is_not_honoured_without_a_routing_rule_allowing_it(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("red-forged")
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "delete from ops.routing_rules where org_id = %s and name = %s", (tenant.org_id, TEST_OVERRIDE_RULE)
        )
    forged = f"vip-{uuid.uuid4().hex[:6]}"
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    vip = client(live_api, provision.executor_token(forged, tenant=tenant))
    assert vip.post("/executors/register", json={"engines": ["shell"]}).status_code == 200
    run = submit(operator, tenant.project_id, [{"key": "sneaky", "engine": "shell", "command": "true", "pool": forged}])
    assert claim(vip) == [], "the spec's pool is ignored: routing sends the task to 'default'"
    detail = operator.get(f"/runs/{run['id']}").json()
    (task,) = detail["tasks"]
    assert task["pool"] == "default"
    assert task["routing_problem"] == "no executor in pool default offers engine shell"


def test_a_routing_rule_may_allow_the_override_for_its_project(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("red-override")  # the test tenants' catch-all rule allows overrides
    pool = f"own-{uuid.uuid4().hex[:6]}"
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    run = submit(operator, tenant.project_id, [{"key": "mine", "engine": "python", "script": "job.py", "pool": pool}])
    (task,) = operator.get(f"/runs/{run['id']}").json()["tasks"]
    assert task["pool"] == pool
    assert task["routing_problem"] == f"no executor in pool {pool} offers engine python"
    agent = client(live_api, provision.executor_token(pool, tenant=tenant))
    assert agent.post("/executors/register", json={"engines": ["python"]}).status_code == 200
    assert [t["task_key"] for t in claim(agent)] == ["mine"]
    (task,) = operator.get(f"/runs/{run['id']}").json()["tasks"]
    assert task["routing_problem"] is None, "a claimed task has no routing problem left"


def test_revoked_and_expired_tokens_are_refused(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("red-tokens")
    user_id, token = provision.user_token("operator", tenant)
    user = client(live_api, token)
    assert user.get("/runs").status_code == 200
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "update ops.api_tokens set expires_at = now() - interval '1 second' where user_id = %s", (user_id,)
        )
    expired = refused_soon(lambda: user.get("/runs"))
    assert expired.status_code == 401 and token not in expired.text
    executor_token = provision.executor_token(f"p-{uuid.uuid4().hex[:6]}", tenant=tenant)
    agent = client(live_api, executor_token)
    assert agent.post("/executors/register", json={"engines": ["shell"]}).status_code == 200
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "update ops.executors set token_revoked_at = now(), status = 'revoked' where token_hash = "
            "encode(sha256(%s::bytea), 'hex')",
            (executor_token,),
        )
    replayed = refused_soon(lambda: agent.post("/tasks/claim", json={}))
    assert replayed.status_code == 401 and executor_token not in replayed.text
    forged = client(live_api, "lhx_" + "A" * 43).post("/tasks/claim", json={})
    assert forged.status_code == 401


def test_openlineage_ingest_refuses_forged_expired_and_inactive_users_tokens(
    live_api: LiveServer, provision: Provisioner
) -> None:
    """Tokens the API has not seen are looked up (control_room/api/principals.py), and refusals are never
    remembered as successes nor echo the token."""
    tenant = provision.tenant("red-ingest")
    event = {"eventType": "START", "eventTime": "2026-12-03T10:00:00Z", "producer": "p", "schemaURL": "s",
             "run": {"runId": str(uuid.uuid4())}, "job": {"namespace": "red", "name": "j"}}  # fmt: skip
    expired_user, expired = provision.user_token("operator", tenant)
    inactive_user, inactive = provision.user_token("operator", tenant)
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("update ops.api_tokens set expires_at = now() - interval '1 second' where user_id = %s",
                     (expired_user,))  # fmt: skip
        conn.execute("update ops.users set is_active = false where id = %s", (inactive_user,))
    forged = "lhu_" + "A" * 43
    for token in (forged, expired, inactive, forged):  # the forged token twice: a refusal is not cached
        reply = client(live_api, token).post("/lineage", json=event)
        assert reply.status_code == 401 and token not in reply.text, reply.text
    with psycopg.connect(provision.database_url) as conn:
        stored = conn.execute("select count(*) from ops.openlineage_events where job_namespace = 'red'").fetchone()
    assert stored == (0,)


def test_org_b_reads_no_caps_refusals_or_effective_caps_of_org_a(live_api: LiveServer, provision: Provisioner) -> None:
    a, b = provision.tenant("red-a"), provision.tenant("red-b")
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        row = conn.execute("select slug from ops.orgs where id = %s", (a.org_id,)).fetchone()
        project = conn.execute("select slug from ops.projects where id = %s", (a.project_id,)).fetchone()
    assert row and project
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    assert admin_b.get("/caps", params={"org": row[0]}).status_code == 404
    effective = admin_b.post(
        "/effective-caps",
        json={"org": row[0], "project": project[0], "environment": "dev", "spec": {"engine": "shell"}},
    )
    assert effective.status_code == 404, effective.text
    assert admin_b.post(
        "/effective-caps", json={"org": str(a.org_id), "project": project[0], "environment": "dev",
                                 "spec": {"engine": "shell"}},
    ).status_code == 404  # fmt: skip

    # A submit org A's cap refused (429, no run) is listed beside the cap for A, and for no one in B.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        cap = conn.execute(
            "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
            "values (%s, 'red-no-runs', 'project', %s, 'runs_per_day', 0) returning id",
            (a.org_id, a.project_id),
        ).fetchone()
    assert cap
    try:
        operator_a = client(live_api, provision.user_token("operator", a)[1])
        spec = {"name": "a-secret-run", "tasks": [{"key": "a", "engine": "shell", "command": "true"}]}
        refused = operator_a.post("/runs", json={"project": str(a.project_id), "environment": "dev", "spec": spec})
        assert refused.status_code == 429 and "red-no-runs" in refused.text, refused.text
        listed = {c["name"]: c for c in operator_a.get("/caps", params={"org": row[0]}).json()["items"]}
        (recent,) = listed["red-no-runs"]["recent_refusals"]
        assert (recent["layer"], recent["run_id"], recent["run_name"], recent["environment"]) == (
            "submit", None, "a-secret-run", "dev"
        )  # fmt: skip
        page = operator_a.get("/caps/red-no-runs/refusals", params={"org": row[0], "limit": 10})
        assert page.status_code == 200 and [r["run_name"] for r in page.json()["items"]] == ["a-secret-run"]
        assert page.json()["next_cursor"] is None
        assert admin_b.get("/caps/red-no-runs/refusals", params={"org": row[0]}).status_code == 404
        own_org = admin_b.get("/caps/red-no-runs/refusals", params={"org": str(b.org_id)})
        assert own_org.status_code == 404, "not a cap of org B"
        bad = operator_a.get("/caps/red-no-runs/refusals", params={"org": row[0], "cursor": "nonsense"})
        assert bad.status_code == 422 and "cursor" in bad.text
    finally:
        with psycopg.connect(provision.database_url, autocommit=True) as conn:
            conn.execute("update ops.caps set enabled = false where id = %s", (cap[0],))


def test_serving_endpoints_are_org_scoped_role_checked_and_token_bound(
    live_api: LiveServer, provision: Provisioner
) -> None:
    a, b = provision.tenant("red-serve-a"), provision.tenant("red-serve-b")
    operator_a = client(live_api, provision.user_token("operator", a)[1])
    viewer_a = client(live_api, provision.user_token("viewer", a)[1])
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    body = {"project": str(a.project_id), "name": "fraud", "model": "fraud-model", "version": "1"}
    assert viewer_a.post("/serving/endpoints", json=body).status_code == 403
    created = operator_a.post("/serving/endpoints", json=body)
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    other = operator_a.post("/serving/endpoints", json={**body, "name": "other"}).json()["id"]
    # Org B sees nothing of it and changes nothing.
    assert admin_b.get(f"/serving/endpoints/{endpoint_id}").status_code == 404
    assert admin_b.post(f"/serving/endpoints/{endpoint_id}/stop").status_code == 404
    assert admin_b.get("/serving/endpoints", params={"project": str(a.project_id)}).json() == []
    assert admin_b.post(f"/serving/endpoints/{endpoint_id}/tokens", json={"name": "steal"}).status_code == 404
    # A viewer reads but neither changes it nor gets a token.
    assert viewer_a.get(f"/serving/endpoints/{endpoint_id}").status_code == 200
    assert viewer_a.post(f"/serving/endpoints/{endpoint_id}/stop").status_code == 403
    assert viewer_a.post(f"/serving/endpoints/{endpoint_id}/tokens", json={"name": "v"}).status_code == 403
    # A token opens its own endpoint only; user and executor tokens open none.
    token = operator_a.post(f"/serving/endpoints/{endpoint_id}/tokens", json={"name": "app"}).json()["token"]
    with httpx.Client(base_url=live_api.base_url + API, timeout=30) as anonymous:
        invoke = lambda name, bearer: anonymous.post(  # noqa: E731
            f"/serving/{name}/invocations", json={"inputs": [[1]]}, headers={"Authorization": f"Bearer {bearer}"}
        )
        assert invoke(other, token).status_code == 403
        assert invoke(endpoint_id, token).status_code == 503  # its replica is not running: no agent here
        assert invoke("fraud", provision.user_token("admin", a)[1]).status_code == 401
        assert invoke("fraud", provision.executor_token("default", tenant=a)).status_code == 401
        assert operator_a.delete(f"/serving/endpoints/{endpoint_id}/tokens/app").status_code == 204
    # Org B's executor cannot report an address for org A's replica task.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        task = conn.execute(
            "select task_id from ops.serving_replicas where endpoint_id = %s", (endpoint_id,)
        ).fetchone()
    assert task
    agent_b = client(live_api, provision.executor_token("default", tenant=b))
    forged = agent_b.post(
        f"/tasks/{task[0]}/serving", json={"lease_token": str(uuid.uuid4()), "address": "10.0.0.1:80"}
    )
    assert forged.status_code == 409


def test_deleting_a_serving_endpoint_is_org_scoped_and_for_operators(
    live_api: LiveServer, provision: Provisioner
) -> None:
    a, b = provision.tenant("red-serve-del-a"), provision.tenant("red-serve-del-b")
    operator_a = client(live_api, provision.user_token("operator", a)[1])
    viewer_a = client(live_api, provision.user_token("viewer", a)[1])
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    body = {"project": str(a.project_id), "name": "scoring", "model": "scoring-model", "version": "1"}
    endpoint_id = operator_a.post("/serving/endpoints", json=body).json()["id"]
    by_name = {"project": str(a.project_id)}
    # Org B cannot delete it, by id or by name in A's project, nor learn it exists.
    for attempt in (
        admin_b.delete(f"/serving/endpoints/{endpoint_id}"),
        admin_b.delete("/serving/endpoints/scoring", params=by_name),
    ):
        assert attempt.status_code == 404, attempt.text
    # A viewer of A reads it but cannot delete it; without a token nobody can.
    assert viewer_a.delete(f"/serving/endpoints/{endpoint_id}").status_code == 403
    with httpx.Client(base_url=live_api.base_url + API, timeout=30) as anonymous:
        assert anonymous.delete(f"/serving/endpoints/{endpoint_id}").status_code == 401
    assert operator_a.get(f"/serving/endpoints/{endpoint_id}").status_code == 200
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        audited = conn.execute(
            "select count(*) from ops.audit_log where entity_id = %s and action = 'delete'", (endpoint_id,)
        ).fetchone()
    assert audited == (0,)
    assert operator_a.delete(f"/serving/endpoints/{endpoint_id}").status_code == 204
    assert admin_b.get(f"/serving/endpoints/{endpoint_id}").status_code == 404


def test_superset_push_and_guest_tokens_authorise_by_role_and_org(live_api: LiveServer, provision: Provisioner) -> None:
    """Push is for operators of the project, a guest token for its members: org B gets neither, and nothing is
    asked of Superset before the caller is authorised (this server has no Superset configured: 502 after)."""
    a, b = provision.tenant("red-superset-a"), provision.tenant("red-superset-b")
    operator_a = client(live_api, provision.user_token("operator", a)[1])
    viewer_a = client(live_api, provision.user_token("viewer", a)[1])
    admin_b = client(live_api, provision.user_token("admin", b)[1])
    params = {"project": str(a.project_id)}
    cloned = operator_a.post("/dashboards", params=params, json={"template": "run-health", "slug": "health"})
    assert cloned.status_code == 201, cloned.text
    # Org B: no push, no token, for A's dashboard (not even by naming A's project).
    assert admin_b.post("/dashboards/health/superset", params=params).status_code == 403
    assert admin_b.post("/dashboards/health/superset/guest-token", params=params).status_code == 403
    # A viewer may not push; the project's members pass authorisation and meet the missing Superset.
    assert viewer_a.post("/dashboards/health/superset", params=params).status_code == 403
    unconfigured = viewer_a.post("/dashboards/health/superset/guest-token", params=params)
    assert unconfigured.status_code == 502 and "LAKEHOUSE_SUPERSET_URL" in unconfigured.text
    assert operator_a.post("/dashboards/health/superset", params=params).status_code == 502
    # A dashboard that does not exist is not found, for a member too.
    assert viewer_a.post("/dashboards/nope/superset/guest-token", params=params).status_code == 404
