"""Runs from job templates: the run records template and version, params are checked against the
version's JSON Schema (422 with a JSON pointer), operators may run and viewers may not (in SQL)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from control_room.api import api
from control_room.config import get_settings
from control_room.services import jobs
from control_room.services.auth import USER_TOKEN_PREFIX, UserPrincipal, hash_token, new_token, scoped
from control_room.services.errors import Invalid
from tests.jobs.conftest import JobWorld, run_async


def api_token(world: JobWorld, role: str) -> str:
    user_id = world.user(role)
    token = new_token(USER_TOKEN_PREFIX)
    world.conn.execute(
        "insert into ops.api_tokens (user_id, name, token_prefix, token_hash) values (%s, 'test', %s, %s)",
        (user_id, token[:8], hash_token(token)),
    )
    return token


def call_api(
    monkeypatch: pytest.MonkeyPatch, database_url: str, requests: list[tuple[str, str, str, Any]]
) -> list[httpx.Response]:
    """Send (method, path, token, json) requests to the in-process API on ``database_url``."""
    monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
    get_settings.cache_clear()

    async def main() -> list[httpx.Response]:
        async with api.router.lifespan_context(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://control-room") as client:
                return [
                    await client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
                    for method, path, token, body in requests
                ]

    try:
        return asyncio.run(main())
    finally:
        get_settings.cache_clear()


def test_a_template_run_records_template_and_version_and_flattens_the_tasks(world: JobWorld, jobs_db: str) -> None:
    second = world.add_version(
        tasks=[{"key": "only", "engine": "shell", "max_attempts": 5, "config": {"command": "echo v2"}}]
    )

    async def work(conn: psycopg.AsyncConnection) -> tuple[dict[str, Any], dict[str, Any]]:
        latest, created = await jobs.run_template(
            conn, template_id=world.template_id, environment="dev", params={"source": "orders"}
        )
        assert created
        first, _ = await jobs.run_template(
            conn, template_id=world.template_id, environment="staging", params={"source": "customers"}, version=1
        )
        return latest, first

    latest, first = run_async(jobs_db, work)
    assert latest["template_version"] == second == 2
    assert first["template_version"] == 1
    rows = world.conn.execute(
        "select r.id, r.template_id, v.version, r.spec, r.params, r.tags, e.name from ops.runs r "
        "join ops.job_template_versions v on v.id = r.template_version_id "
        "join ops.environments e on e.id = r.environment_id where r.template_id = %s order by v.version",
        (world.template_id,),
    ).fetchall()
    assert [(r[2], r[6]) for r in rows] == [(1, "staging"), (2, "dev")]
    v1_spec, v2_spec = rows[0][3], rows[1][3]
    # config fields are flattened into the task; the version's retries apply where the task sets none
    assert v1_spec["tasks"][0] == {
        "key": "land",
        "engine": "shell",
        "command": "echo landed",
        "max_attempts": 2,
        "retry_backoff_s": 5,
    }
    assert v1_spec["tasks"][1]["depends_on"] == ["land"] and v1_spec["tasks"][1]["timeout_s"] == 60
    assert v2_spec["tasks"][0]["max_attempts"] == 5
    # defaults of the params schema are filled in; the template's tags are the run's
    assert rows[0][4] == {"source": "customers", "full_refresh": False}
    assert rows[0][5] == ["ingest"]
    tasks = world.conn.execute(
        "select key, status, max_attempts from ops.tasks where run_id = %s order by key", (rows[0][0],)
    ).fetchall()
    assert tasks == [("land", "queued", 2), ("report", "pending", 2)]


def test_the_origin_of_a_run_is_immutable(world: JobWorld, jobs_db: str) -> None:
    run, _ = run_async(
        jobs_db,
        lambda c: jobs.run_template(c, template_id=world.template_id, environment="dev", params={"source": "orders"}),
    )
    with pytest.raises(psycopg.Error) as err:
        world.conn.execute("update ops.runs set template_id = null where id = %s", (run["id"],))
    assert "immutable" in str(err.value)
    with pytest.raises(psycopg.Error):
        world.conn.execute("update ops.runs set schedule_id = gen_random_uuid() where id = %s", (run["id"],))


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        ({}, "/params/source"),
        ({"source": "nope"}, "/params/source"),
        ({"source": "orders", "limit": "ten"}, "/params/limit"),
        ({"source": "orders", "limit": 0}, "/params/limit"),
        ({"source": "orders", "typo": 1}, "/params/typo"),
    ],
)
def test_params_are_checked_against_the_schema_with_a_json_pointer(params: dict[str, Any], pointer: str) -> None:
    schema = {
        "type": "object",
        "properties": {
            "source": {"type": "string", "enum": ["orders", "customers"]},
            "limit": {"type": "integer", "minimum": 1},
        },
        "required": ["source"],
        "additionalProperties": False,
    }
    with pytest.raises(Invalid) as err:
        jobs.validate_params(schema, params)
    assert err.value.field == pointer


def test_interval_params_pass_a_closed_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    params = {"n": 1, "logical_date": "2026-01-01T00:00:00+00:00", "data_interval_end": "2026-01-01T00:00:00+00:00"}
    assert jobs.validate_params(schema, params) == params


def test_operators_may_run_and_viewers_may_not(world: JobWorld, jobs_db: str) -> None:
    operator = UserPrincipal(world.user("operator"), "op@test.example")
    viewer = UserPrincipal(world.user("viewer"), "viewer@test.example")

    async def as_user(conn: psycopg.AsyncConnection, who: UserPrincipal) -> dict[str, Any]:
        async with scoped(conn, who):
            run, _ = await jobs.run_template(
                conn, template_id=world.template_id, environment="dev", params={"source": "orders"}
            )
            return run

    run = run_async(jobs_db, lambda c: as_user(c, operator))
    assert run["requested_by"] is None or run["status"] == "queued"
    with pytest.raises(psycopg.Error) as err:
        run_async(jobs_db, lambda c: as_user(c, viewer))
    assert err.value.sqlstate == "LH403"
    assert "operator role" in str(err.value)
    # and in SQL directly, as PostgREST would call it
    with world.conn.transaction(force_rollback=True):
        world.conn.execute("set local role authenticated")
        world.conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (f'{{"sub": "{viewer.user_id}", "role": "authenticated"}}',),
        )
        with pytest.raises(psycopg.Error) as err2:
            world.conn.execute(
                "select * from ops.submit_template_run(%s, 'dev', '{\"source\": \"orders\"}')", (world.template_id,)
            )
    assert err2.value.sqlstate == "LH403"


def test_archived_templates_do_not_run(world: JobWorld, jobs_db: str) -> None:
    world.conn.execute("update ops.job_templates set archived_at = now() where id = %s", (world.template_id,))
    with pytest.raises(psycopg.Error) as err:
        run_async(
            jobs_db,
            lambda c: jobs.run_template(
                c, template_id=world.template_id, environment="dev", params={"source": "orders"}
            ),
        )
    assert "archived" in str(err.value)


def test_the_api_runs_templates_lists_them_and_refuses_bad_params(
    world: JobWorld, jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator, viewer = api_token(world, "operator"), api_token(world, "viewer")
    path = f"/api/v1/templates/{world.template_id}"
    created, bad, missing, forbidden, again, listed, detail, template_runs, unknown = call_api(
        monkeypatch,
        jobs_db,
        [
            (
                "POST",
                path + "/runs",
                operator,
                {"environment": "dev", "params": {"source": "orders"}, "idempotency_key": "k1"},
            ),
            ("POST", path + "/runs", operator, {"params": {"source": "orders", "limit": -1}}),
            ("POST", path + "/runs", operator, {"params": {}}),
            ("POST", path + "/runs", viewer, {"params": {"source": "orders"}}),
            (
                "POST",
                path + "/runs",
                operator,
                {"environment": "dev", "params": {"source": "orders"}, "idempotency_key": "k1"},
            ),
            ("GET", "/api/v1/templates", viewer, None),
            ("GET", path, viewer, None),
            ("GET", path + "/runs", viewer, None),
            ("POST", f"/api/v1/templates/{uuid.uuid4()}/runs", operator, {"params": {}}),
        ],
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["template_id"] == str(world.template_id) and body["template_version"] == 1
    assert body["trigger"] == "api" and body["params"]["full_refresh"] is False
    assert bad.status_code == 422 and bad.json()["field"] == "/params/limit"
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert missing.status_code == 422 and missing.json()["field"] == "/params/source"
    assert forbidden.status_code == 403, forbidden.text
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert item["id"] == str(world.template_id) and item["runs"] == 1 and item["last_status"] == "queued"
    assert detail.json()["versions"][0]["params_schema"]["required"] == ["source"]
    assert [r["id"] for r in template_runs.json()["items"]] == [body["id"]]
    assert unknown.status_code == 404


def test_a_template_run_warns_when_no_live_executor_offers_its_engine(world: JobWorld, jobs_db: str) -> None:
    """As for a submitted spec (issue 15): the run carries the reason, and a project that requires an
    available engine refuses the run."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        run, _ = await jobs.run_template(
            conn, template_id=world.template_id, environment="dev", params={"source": "orders"}
        )
        return run

    run = run_async(jobs_db, work)
    warnings = world.conn.execute("select warnings from ops.runs where id = %s", (run["id"],)).fetchone()
    assert warnings and warnings[0] and "engine shell" in warnings[0][0]

    world.conn.execute(
        "update ops.projects set require_available_engine = true where id = %s", (world.tenant.project_id,)
    )

    async def refused(conn: psycopg.AsyncConnection) -> None:
        async with conn.transaction():
            await work(conn)

    with pytest.raises(Exception, match="require_available_engine"):
        run_async(jobs_db, refused)
