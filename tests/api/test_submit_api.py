"""The submit in one round trip (issue 25, dispatch latency): the project's look-up, the submit, the engines'
note, the read of the run and the COMMIT travel together. What a submit refuses is still a problem naming its
field, a refused submit keeps nothing but its refusal, and the same idempotency key answers the same run."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.api.test_executor_flow import SHELL_TASK, client
from tests.integration.factories import make_tenant
from tests.live import LiveServer, Provisioner

SPEC = {"name": "one-trip", "tasks": [{"key": "a", **SHELL_TASK}]}


def runs_of(provision: Provisioner, project_id: uuid.UUID) -> int:
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        row = conn.execute("select count(*) from ops.runs where project_id = %s", (project_id,)).fetchone()
    assert row
    return int(row[0])


def test_a_submit_by_slug_or_id_and_the_projects_it_cannot_name(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant()
    user_id, token = provision.user_token("operator")
    operator = client(live_api, token)
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        row = conn.execute("select slug from ops.projects where id = %s", (tenant.project_id,)).fetchone()
        assert row
        slug = row[0]
        hidden = make_tenant(conn)

    by_slug = operator.post("/runs", json={"project": slug, "spec": SPEC})
    assert by_slug.status_code == 201, by_slug.text
    assert (by_slug.json()["project_id"], by_slug.json()["status"]) == (str(tenant.project_id), "queued")

    def refused(project: str) -> dict[str, Any]:
        answer = operator.post("/runs", json={"project": project, "spec": SPEC})
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("application/problem+json")
        return dict(answer.json())

    for project in ("no-such-project", str(hidden.project_id), str(hidden.project_id).upper()):
        problem = refused(project)
        assert problem["field"] == "project", problem
        assert problem["detail"] == f'project "{project}" does not exist or is not visible to you', problem
    assert runs_of(provision, hidden.project_id) == 0

    # The same slug in a second org the operator also works in: ambiguous, so the id is asked for.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        twin = make_tenant(conn)
        conn.execute("update ops.projects set slug = %s where id = %s", (slug, twin.project_id))
        conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'operator')",
            (twin.project_id, user_id),
        )
    ambiguous = operator.post("/runs", json={"project": slug, "spec": SPEC})
    assert ambiguous.status_code == 422 and ambiguous.json()["field"] == "project", ambiguous.text
    assert f'project slug "{slug}" exists in several orgs; pass the project id' in ambiguous.json()["detail"]
    assert runs_of(provision, twin.project_id) == 0
    by_id = operator.post("/runs", json={"project": str(twin.project_id), "spec": SPEC})
    assert by_id.status_code == 201 and by_id.json()["project_id"] == str(twin.project_id), by_id.text


def test_an_idempotent_submit_and_a_refused_one(live_api: LiveServer, provision: Provisioner) -> None:
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        tenant = make_tenant(conn)
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    body = {"project": str(tenant.project_id), "spec": SPEC, "idempotency_key": "nightly-2026-12-05"}
    first = operator.post("/runs", json=body)
    again = operator.post("/runs", json=body)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.json()["name"] == "one-trip"

    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        cap = conn.execute(
            "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
            "values (%s, 'none-today', 'project', %s, 'runs_per_day', 0) returning id",
            (tenant.org_id, tenant.project_id),
        ).fetchone()
    assert cap
    for _ in range(2):
        refused = operator.post("/runs", json={"project": str(tenant.project_id), "spec": SPEC})
        assert refused.status_code == 429 and 'cap "none-today"' in refused.json()["detail"], refused.text
    assert runs_of(provision, tenant.project_id) == 1, "a refused submit creates no run"
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        refusals = conn.execute(
            "select layer, run_name, repeats from ops.cap_refusal_events where cap_id = %s", (cap[0],)
        ).fetchall()
        usage = conn.execute("select runs, breaches from ops.cap_usage where cap_id = %s", (cap[0],)).fetchone()
    assert refusals == [("submit", "one-trip", 2)], "both refusals are kept, as one row repeated"
    assert usage == (0, 2), "the cap's day counts both breaches and no run"


def test_an_error_inside_the_one_trip_rolls_it_all_back(live_api: LiveServer, provision: Provisioner) -> None:
    """The statement after the submit (the run's read) and the COMMIT were sent with it: a submit SQL refuses
    rolls back, answers the problem naming its field, and leaves the connection fit for the next request."""
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        tenant = make_tenant(conn)
        conn.execute("delete from ops.environments where project_id = %s and name = 'prod'", (tenant.project_id,))
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    for _ in range(3):  # more times than the pool has idle connections to hand out
        refused = operator.post("/runs", json={"project": str(tenant.project_id), "environment": "prod", "spec": SPEC})
        assert refused.status_code == 422 and refused.json()["field"] == "environment", refused.text
        assert '"prod" is not an environment of this project' in refused.json()["detail"]
    assert runs_of(provision, tenant.project_id) == 0
    ok = operator.post("/runs", json={"project": str(tenant.project_id), "environment": "staging", "spec": SPEC})
    assert ok.status_code == 201 and ok.json()["environment"] == "staging", ok.text
    assert runs_of(provision, tenant.project_id) == 1
