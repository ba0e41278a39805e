"""A real Superset (tests/superset/conftest.py): pushing a template twice leaves one dashboard whose charts read
the control plane through the read-only role, and a restricted member's guest token carries the row filter of
their access policy (Superset then returns only the rows they may read here)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from control_room.db.migrate import migrate
from control_room.services import dashboards, superset
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.demo import DEMO_PROJECT_ID, load_demo_data
from tests.superset_server import SERVICE_PASSWORD, SERVICE_USER, RunningSuperset

T = TypeVar("T")
PROJECT = uuid.UUID(DEMO_PROJECT_ID)


class World:
    """The demo project with an operator and a viewer whose runs are filtered to succeeded ones by a policy."""

    def __init__(self, url: str, users: dict[str, uuid.UUID], config: superset.SupersetSettings) -> None:
        self.url, self.users, self.config = url, users, config

    def call(self, who: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        async def main() -> T:
            principal = UserPrincipal(user_id=self.users[who], email=f"{who}@test.example")
            connect = psycopg.AsyncConnection.connect(self.url, autocommit=True)
            async with await connect as conn, scoped(conn, principal):
                return await work(conn)

        return asyncio.run(main())

    def push(self) -> dict[str, Any]:
        return self.call("operator", lambda c: superset.push_dashboard(c, project_id=PROJECT, slug="run-health",
                                                                       config=self.config))  # fmt: skip

    def runs_by_status(self) -> dict[str, int]:
        """What the run-health dashboard's "runs by status" should show: this control plane's runs."""
        with psycopg.connect(self.url) as conn:
            return dict(conn.execute("select status, count(*) from ops.runs where project_id = %s and created_at >= "
                                     "now() - interval '14 days' group by 1", (PROJECT,)).fetchall())  # fmt: skip


def make_world(pg_server: Any, name: str, *, finished: str, superset: Callable[[], RunningSuperset]) -> World:
    """A control plane (database ``name``) with the demo project, its users and policy, and six of its runs finished
    (``finished``: a SQL expression of the run's position ``p.n``), the run-health dashboard cloned. Superset is
    asked for once the database is migrated (the migrations create the read-only role it is given a password of)."""
    url = pg_server.create_database(name)
    migrate(url)
    assert load_demo_data(url)
    users = {who: uuid.uuid4() for who in ("viewer", "operator", "outsider")}
    with psycopg.connect(url, autocommit=True) as conn:
        org = conn.execute("select org_id from ops.projects where id = %s", (PROJECT,)).fetchone()
        assert org
        for who, user in users.items():
            conn.execute("insert into ops.users (id, email) values (%s, %s)", (user, f"{who}@test.example"))
        for who in ("viewer", "operator"):
            conn.execute("insert into ops.project_members (project_id, user_id, role) values (%s, %s, %s)",
                         (PROJECT, users[who], who))  # fmt: skip
        # The control plane's runs as a catalog dataset, with a row filter for the viewer.
        runs = conn.execute(
            "insert into ops.datasets (project_id, namespace, name, kind, columns) values (%s, "
            "'postgres://control-plane', 'ops.runs', 'table', %s::jsonb) returning id",
            (PROJECT, json.dumps([{"name": "status", "type": "text"}, {"name": "name", "type": "text"}])),
        ).fetchone()
        assert runs
        conn.execute(
            "select ops.save_access_policy(%s, null, %s::jsonb, 'tests')",
            (org[0], json.dumps({"name": "viewer-succeeded-only", "kind": "row_filter", "target_kind": "dataset",
                                 "target": str(runs[0]), "principal_kind": "user", "principal": "viewer@test.example",
                                 "row_filter": "status = 'succeeded'"})),
        )  # fmt: skip
        # The demo's runs are queued (no agent here): finish some, as an agent would have, so statuses differ.
        conn.execute(
            "with picked as (select id, row_number() over (order by created_at) as n from ops.runs "
            f"where project_id = %s) update ops.runs r set status = {finished}, "
            "started_at = r.created_at, finished_at = r.created_at + interval '1 minute' "
            "from picked p where p.id = r.id and p.n <= 6",
            (PROJECT,),
        )
        assert conn.execute(
            "select count(distinct status) from ops.runs where project_id = %s", (PROJECT,)
        ).fetchone() >= (2,), "the demo needs runs of more than one status for the filter to show"
    w = World(url, users, superset().settings(url))
    w.call("operator", lambda c: dashboards.clone_template(c, project_id=PROJECT, template="run-health",
                                                           slug="run-health"))  # fmt: skip
    return w


@pytest.fixture(scope="module")
def world(pg_server: Any, request: pytest.FixtureRequest) -> World:
    return make_world(pg_server, "lh_superset", finished="case when p.n %% 3 = 0 then 'failed' else 'succeeded' end",
                      superset=lambda: request.getfixturevalue("superset_instance"))  # fmt: skip


def runs_by_status(c: httpx.Client, dashboard_id: int) -> dict[str, int]:
    """The "runs by status" dataset of a pushed run-health dashboard, as Superset reads it."""
    datasets = c.get(f"/api/v1/dashboard/{dashboard_id}/datasets").json()["result"]
    by_status = next(d for d in datasets if d["table_name"].startswith("run-health__runs_by_status__"))
    return {row["status"]: row["runs"] for row in dataset_rows(c, by_status["id"], ["status", "runs"])}


def admin_client(instance: RunningSuperset) -> httpx.Client:
    login = httpx.post(f"{instance.url}/api/v1/security/login", timeout=120, trust_env=False, json={
        "username": SERVICE_USER, "password": SERVICE_PASSWORD, "provider": "db", "refresh": False})  # fmt: skip
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return httpx.Client(base_url=instance.url, timeout=120, trust_env=False, headers=headers)


def dataset_rows(c: httpx.Client, dataset_id: int, columns: list[str], headers: dict[str, str] | None = None,
                 form_data: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Rows of a dataset as a chart's query reads them (``form_data`` names the chart and dashboard for a guest)."""
    body = {"datasource": {"id": dataset_id, "type": "table"}, "force": True, "result_format": "json",
            "result_type": "full", "queries": [{"columns": columns, "metrics": [], "orderby": [], "row_limit": 1000}],
            "form_data": form_data or {}}  # fmt: skip
    response = c.post("/api/v1/chart/data", json=body, headers=headers or {})
    assert response.status_code == 200, response.text[:500]
    return list(response.json()["result"][0]["data"])


def test_push_twice_leaves_one_dashboard_reading_the_control_plane(
    world: World, superset_instance: RunningSuperset
) -> None:
    first, second = world.push(), world.push()
    assert first["superset_id"] == second["superset_id"] and first["uuid"] == second["uuid"]
    assert first["embedded_uuid"] == second["embedded_uuid"]
    assert first["uuid"] == superset.stable_uuid(PROJECT, "run-health", "dashboard")
    with admin_client(superset_instance) as c:
        q = json.dumps({"filters": [{"col": "slug", "opr": "eq", "value": first["slug"]}]})
        assert c.get("/api/v1/dashboard/", params={"q": q}).json()["count"] == 1
        charts = c.get(f"/api/v1/dashboard/{first['superset_id']}/charts").json()["result"]
        assert sorted(chart["slice_name"] for chart in charts) == sorted(
            chart.title for chart in dashboards.dashboard_of(dashboards.template_yaml("run-health")).charts)
        assert len(c.get(f"/api/v1/dashboard/{first['superset_id']}/datasets").json()["result"]) == 6
        assert runs_by_status(c, first["superset_id"]) == world.runs_by_status()
    # A viewer may not push.
    with pytest.raises(Exception, match="operator"):
        world.call("viewer", lambda c: superset.push_dashboard(c, project_id=PROJECT, slug="run-health",
                                                               config=world.config))  # fmt: skip


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_restricted_member_gets_the_row_filter_of_their_policy(
    world: World, superset_instance: RunningSuperset
) -> None:
    pushed = world.push()
    mint = lambda who: world.call(who, lambda c: superset.guest_token(  # noqa: E731
        c, project_id=PROJECT, slug="run-health", email=f"{who}@test.example", config=world.config))  # fmt: skip
    viewer, operator = mint("viewer"), mint("operator")
    assert operator["rls"] == []
    with admin_client(superset_instance) as c:
        datasets = {d["table_name"].split("__")[1]: d["id"]
                    for d in c.get(f"/api/v1/dashboard/{pushed['superset_id']}/datasets").json()["result"]}
        charts = {chart["slice_name"]: chart
                  for chart in c.get(f"/api/v1/dashboard/{pushed['superset_id']}/charts").json()["result"]}
    clauses = {d["dataset"]: d["clause"] for d in viewer["rls"]}
    assert clauses[datasets["runs_by_status"]] == "(status = 'succeeded')"
    assert clauses[datasets["recent_failures"]] == "(status = 'succeeded')"
    # Datasets of runs that do not show the status cannot carry the filter: nothing of them is shown.
    assert clauses[datasets["runs_per_day"]] == superset.DENY_ALL
    assert datasets["queue_wait"] not in clauses  # it reads tasks, which no policy restricts
    assert _claims(viewer["token"])["rls_rules"] == viewer["rls"]
    # Superset applies it: the "Recent failures" table, queried as the embedded dashboard queries it, lists the
    # failed runs to the operator and none to the viewer (their policy leaves them succeeded runs only).
    table = charts["Recent failures"]
    form_data = table["form_data"] | {"dashboardId": pushed["superset_id"], "slice_id": table["id"]}
    read = lambda token: dataset_rows(  # noqa: E731
        guest, datasets["recent_failures"], form_data["all_columns"], headers={"X-GuestToken": token},
        form_data=form_data)  # fmt: skip
    with httpx.Client(base_url=superset_instance.url, timeout=120, trust_env=False) as guest:
        assert {row["status"] for row in read(operator["token"])} == {"failed"}
        assert read(viewer["token"]) == []
    # Not a member: no token.
    with pytest.raises(Exception, match=r"(?i)role|not"):
        mint("outsider")


def test_control_planes_sharing_a_superset_each_have_their_database_and_a_push_updates_every_object(
    world: World, pg_server: Any, superset_instance: RunningSuperset
) -> None:
    """Another control plane (the same demo project, other runs) pushes the same dashboard with an edited chart: the
    dashboard's datasets now read that control plane through its own database object, and the chart is renamed.
    Pushing again from the first brings back its chart and its runs: a push overwrites database, datasets and charts."""
    other = make_world(pg_server, "lh_superset_other", finished="'cancelled'", superset=lambda: superset_instance)
    assert other.runs_by_status() != world.runs_by_status()
    edited = dashboards.template_yaml("run-health").replace("title: Recent failures", "title: Failures, newest first")
    other.call("operator", lambda c: dashboards.save_dashboard(c, project_id=PROJECT, slug="run-health",
                                                               source_yaml=edited, message="renamed"))  # fmt: skip
    theirs = other.push()
    with admin_client(superset_instance) as c:
        assert runs_by_status(c, theirs["superset_id"]) == other.runs_by_status()
        titles = {chart["slice_name"] for chart in
                  c.get(f"/api/v1/dashboard/{theirs['superset_id']}/charts").json()["result"]}
        assert "Failures, newest first" in titles and "Recent failures" not in titles
        ours = world.push()
        assert ours["superset_id"] == theirs["superset_id"]
        assert runs_by_status(c, ours["superset_id"]) == world.runs_by_status()
        titles = {chart["slice_name"] for chart in
                  c.get(f"/api/v1/dashboard/{ours['superset_id']}/charts").json()["result"]}
        assert "Recent failures" in titles and "Failures, newest first" not in titles
        # One database object per control plane, named after the database it reads.
        names = {d["database_name"]: d["uuid"] for d in
                 c.get("/api/v1/database/", params={"q": json.dumps({"columns": ["database_name", "uuid"],
                                                                     "page_size": 100})}).json()["result"]}
    for w in (world, other):
        database_uuid, name = superset.database_of(w.config.reader_uri)
        assert name.endswith("/" + conninfo_to_dict(w.url)["dbname"]) and names[name] == str(database_uuid)
