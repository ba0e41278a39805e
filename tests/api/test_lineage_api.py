"""Lineage over the contract against a real server: reports under a lease, idempotency, reads, visibility."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner, refused_soon

API = "/api/v1"
NS = "duckdb:///warehouse/shop.duckdb"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def claimed_task(live_api: LiveServer, provision: Provisioner, tenant: Tenant | None = None) -> dict[str, Any]:
    """A dbt task submitted by an operator of the tenant and claimed by an agent of a fresh pool."""
    tenant = tenant or provision.tenant()
    pool = f"lineage-{uuid.uuid4().hex[:8]}"
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    submitted = operator.post(
        "/runs",
        json={
            "project": str(tenant.project_id),
            "spec": {
                "name": "lineage",
                "tasks": [
                    {"key": "build", "engine": "dbt", "command": "build", "project": "examples/dbt", "pool": pool}
                ],
            },
        },
    )
    assert submitted.status_code == 201, submitted.text
    agent = client(live_api, provision.executor_token(pool, tenant=tenant))
    assert agent.post("/executors/register", json={"engines": ["dbt"]}).status_code == 200
    tasks = agent.post("/tasks/claim", json={"max_tasks": 1}).json()["tasks"]
    assert len(tasks) == 1
    return {"agent": agent, "task": tasks[0], "run_id": submitted.json()["id"]}


def dataset(name: str, kind: str = "model", **extra: Any) -> dict[str, Any]:
    return {"namespace": NS, "name": f"shop.main.{name}", "kind": kind, **extra}


def edge(upstream: str, downstream: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": {"namespace": NS, "name": f"shop.main.{upstream}"},
        "downstream": {"namespace": NS, "name": f"shop.main.{downstream}"},
        **extra,
    }


def run_event(event_type: str, run_id: str, time: str, job: str = "shop.model.orders") -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": time,
        "producer": "https://example.com/lakehouse",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "lakehouse", "name": job},
        "inputs": [{"namespace": NS, "name": "shop.main.raw_orders"}],
        "outputs": [{"namespace": NS, "name": "shop.main.orders"}],
    }


def report(claimed: dict[str, Any], **payload: Any) -> httpx.Response:
    task = claimed["task"]
    agent: httpx.Client = claimed["agent"]
    return agent.post(f"/tasks/{task['task_id']}/lineage", json={"lease_token": task["lease_token"], **payload})


def full_report() -> dict[str, Any]:
    ol_run = str(uuid.uuid4())
    return {
        "datasets": [
            dataset("raw_orders", "seed", columns=[{"name": "order_id", "type": "INTEGER", "description": "key"}]),
            dataset("orders", owner="analytics@shop.example", description="One row per order."),
            dataset("order_totals", metadata={"unique_id": "model.shop.order_totals"}),
        ],
        "edges": [
            edge("raw_orders", "orders", job_name="model.shop.orders"),
            edge(
                "orders",
                "order_totals",
                column_lineage=[{"upstream_column": "amount", "downstream_column": "total"}],
            ),
        ],
        "openlineage_events": [
            run_event("START", ol_run, "2026-11-26T08:00:00Z"),
            run_event("COMPLETE", ol_run, "2026-11-26T08:00:03.5+00:00"),
        ],
    }


def test_a_report_is_stored_once_and_read_back_as_a_graph(live_api: LiveServer, provision: Provisioner) -> None:
    claimed = claimed_task(live_api, provision)
    body = full_report()

    first = report(claimed, **body)
    again = report(claimed, **body)

    assert first.status_code == 200, first.text
    assert first.json() == {
        "datasets": 3,
        "edges": 2,
        "openlineage_events_accepted": 2,
        "openlineage_events_duplicates": 0,
    }
    assert again.json()["openlineage_events_accepted"] == 0
    assert again.json()["openlineage_events_duplicates"] == 2
    viewer = client(live_api, provision.user_token("viewer")[1])
    run_id = claimed["run_id"]
    page = viewer.get("/datasets", params={"last_run_id": run_id}).json()
    assert [d["name"] for d in page["items"]] == ["shop.main.order_totals", "shop.main.orders", "shop.main.raw_orders"]
    orders = next(d for d in page["items"] if d["name"] == "shop.main.orders")
    assert orders["owner"] == "analytics@shop.example"
    assert orders["last_run_id"] == orders["first_run_id"] == run_id
    detail = viewer.get(f"/datasets/{orders['id']}").json()
    assert [(e["dataset"]["name"], e["dataset"]["kind"], e["job_name"]) for e in detail["upstream"]] == [
        ("shop.main.raw_orders", "seed", "model.shop.orders")
    ]
    assert [(e["dataset"]["name"], e["column_lineage"]) for e in detail["downstream"]] == [
        ("shop.main.order_totals", [{"upstream_column": "amount", "downstream_column": "total"}])
    ]
    raw = next(d for d in page["items"] if d["name"] == "shop.main.raw_orders")
    assert raw["columns"] == [{"name": "order_id", "type": "INTEGER", "description": "key"}]
    events = viewer.get(f"/runs/{run_id}/openlineage").json()["items"]
    assert [(e["event_type"], e["task_key"], e["job_name"]) for e in events] == [
        ("START", "build", "shop.model.orders"),
        ("COMPLETE", "build", "shop.model.orders"),
    ]
    assert events[1]["event"]["outputs"] == body["openlineage_events"][1]["outputs"]


def test_a_later_run_updates_datasets_without_losing_what_it_did_not_say(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("lineage-later")
    first = claimed_task(live_api, provision, tenant)
    assert report(first, **full_report()).status_code == 200
    second = claimed_task(live_api, provision, tenant)

    # A Spark-style report: the same table as a plain `table`, no columns or owner, one new edge
    # from a dataset known only from the first report.
    response = report(
        second,
        datasets=[dataset("orders", "table"), dataset("orders_delta", "table")],
        edges=[edge("raw_orders", "orders_delta", job_name="spark.orders_delta")],
    )

    assert response.status_code == 200, response.text
    _, token = provision.user_token("viewer", tenant)
    viewer = client(live_api, token)
    items = viewer.get("/datasets", params={"project": str(tenant.project_id), "q": "orders"}).json()["items"]
    by_name = {d["name"]: d for d in items}
    orders = by_name["shop.main.orders"]
    assert orders["kind"] == "model", "a generic `table` report must not downgrade the dbt kind"
    assert orders["owner"] == "analytics@shop.example"
    assert orders["first_run_id"] == first["run_id"]
    assert orders["last_run_id"] == second["run_id"]
    raw = viewer.get(f"/datasets/{by_name['shop.main.raw_orders']['id']}").json()
    assert sorted(e["dataset"]["name"] for e in raw["downstream"]) == ["shop.main.orders", "shop.main.orders_delta"]


def test_a_table_only_read_keeps_its_last_write_and_a_table_written_keeps_column_docs(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("lineage-read-only")
    first = claimed_task(live_api, provision, tenant)
    assert report(first, **full_report()).status_code == 200
    second = claimed_task(live_api, provision, tenant)

    # A SQL task's report: it read raw_orders (known) and never_seen (new), and rewrote orders_copy.
    response = report(
        second,
        datasets=[
            dataset("raw_orders", "table", read_only=True, columns=[{"name": "order_id", "type": "BIGINT"}]),
            dataset("never_seen", "table", read_only=True, columns=[{"name": "id", "type": "INTEGER"}]),
            dataset("orders_copy", "table", columns=[{"name": "order_id", "type": "BIGINT"}]),
        ],
        edges=[edge("raw_orders", "orders_copy"), edge("never_seen", "orders_copy")],
    )
    assert response.status_code == 200, response.text
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])

    def by_name() -> dict[str, dict[str, Any]]:
        items = viewer.get("/datasets", params={"project": str(tenant.project_id)}).json()["items"]
        return {d["name"]: d for d in items}

    seen = by_name()
    assert seen["shop.main.raw_orders"]["last_run_id"] == first["run_id"], "a read is no write"
    assert seen["shop.main.raw_orders"]["columns"] == [{"name": "order_id", "type": "INTEGER", "description": "key"}]
    assert seen["shop.main.never_seen"]["last_run_id"] == second["run_id"]
    assert [(c["name"], c["type"]) for c in seen["shop.main.never_seen"]["columns"]] == [("id", "INTEGER")]
    assert seen["shop.main.orders_copy"]["last_run_id"] == second["run_id"]

    # The raw table rewritten by a generic engine: the new type stands, the dbt description stays.
    third = claimed_task(live_api, provision, tenant)
    retyped = dataset("raw_orders", "table", columns=[{"name": "order_id", "type": "HUGEINT"}])
    response = report(third, datasets=[retyped])
    assert response.status_code == 200, response.text
    raw = by_name()["shop.main.raw_orders"]
    assert raw["kind"] == "seed" and raw["last_run_id"] == third["run_id"]
    assert raw["columns"] == [{"name": "order_id", "type": "HUGEINT", "description": "key"}]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"datasets": [dataset("a", "view")]}, "datasets[0].kind"),
        ({"datasets": [dataset("a"), dataset("a")]}, "datasets[1]"),
        ({"datasets": [dataset("a")], "edges": [edge("a", "a")]}, "edges[0].downstream"),
        ({"datasets": [dataset("a")], "edges": [edge("a", "never_reported")]}, "edges[0].downstream"),
        ({"openlineage_events": [run_event("START", "not-a-uuid", "2026-11-26T08:00:00Z")]}, None),
        ({"openlineage_events": [run_event("START", str(uuid.uuid4()), "2026-11-26T08:00:00")]}, None),
        ({"datasets": [{**dataset("a"), "colums": []}]}, "datasets[0].colums"),
    ],
)
def test_bad_reports_are_refused_naming_the_field_and_store_nothing(
    live_api: LiveServer, provision: Provisioner, payload: dict[str, Any], field: str | None
) -> None:
    claimed = claimed_task(live_api, provision)

    response = report(claimed, **payload)

    assert response.status_code == 422, response.text
    problem = response.json()
    if field is not None:
        assert problem["field"] == field
    else:
        assert problem["field"].startswith("openlineage_events[0].")
    viewer = client(live_api, provision.user_token("viewer")[1])
    assert viewer.get("/datasets", params={"last_run_id": claimed["run_id"]}).json()["items"] == []


def test_a_report_needs_the_tasks_own_lease(live_api: LiveServer, provision: Provisioner) -> None:
    claimed = claimed_task(live_api, provision)
    other = claimed_task(live_api, provision)
    task = claimed["task"]

    foreign_lease = claimed["agent"].post(
        f"/tasks/{task['task_id']}/lineage", json={"lease_token": other["task"]["lease_token"], "datasets": []}
    )
    as_user = client(live_api, provision.user_token("admin")[1]).post(
        f"/tasks/{task['task_id']}/lineage", json={"lease_token": task["lease_token"]}
    )

    assert foreign_lease.status_code == 409, foreign_lease.text
    assert as_user.status_code == 403, as_user.text


def test_datasets_are_visible_only_to_members_of_their_project(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("lineage-private")
    claimed = claimed_task(live_api, provision, tenant)
    assert report(claimed, **full_report()).status_code == 200
    outsider = client(live_api, provision.user_token("admin", provision.tenant("lineage-outsider"))[1])
    member = client(live_api, provision.user_token("viewer", tenant)[1])
    dataset_id = member.get("/datasets", params={"last_run_id": claimed["run_id"]}).json()["items"][0]["id"]

    assert outsider.get("/datasets", params={"last_run_id": claimed["run_id"]}).json()["items"] == []
    assert outsider.get(f"/datasets/{dataset_id}").status_code == 404
    assert outsider.get(f"/runs/{claimed['run_id']}/openlineage").status_code == 404


def test_the_datasets_list_pages_by_keyset(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("lineage-pages")
    claimed = claimed_task(live_api, provision, tenant)
    names = [f"t{i:02d}" for i in range(7)]
    assert report(claimed, datasets=[dataset(n, "table") for n in reversed(names)]).status_code == 200
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"project": str(tenant.project_id), "kind": ["table"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = viewer.get("/datasets", params=params).json()
        seen += [d["name"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [f"shop.main.{n}" for n in names]
    bad = viewer.get("/datasets", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"


# OpenLineage ingest (POST /lineage, as Marquez takes it) ---------------------------------------------

OL_NS = "postgres://warehouse.example:5432"
FACET = {"_producer": "https://github.com/apache/airflow", "_schemaURL": "https://openlineage.io/spec/facets/x.json"}


def external_event(event_type: str, run_id: str, time: str, *, job: str = "etl.load_orders") -> dict[str, Any]:
    """An Airflow-like RunEvent: one job reading a landing table and writing a warehouse table."""
    return {
        "eventType": event_type,
        "eventTime": time,
        "producer": "https://github.com/apache/airflow/tree/providers-openlineage/1.0",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {
            "namespace": "airflow-prod",
            "name": job,
            "facets": {"jobType": {**FACET, "processingType": "BATCH", "integration": "AIRFLOW", "jobType": "TASK"}},
        },
        "inputs": [{"namespace": OL_NS, "name": "landing.public.orders_raw"}],
        "outputs": [
            {
                "namespace": OL_NS,
                "name": "analytics.public.orders",
                "facets": {
                    "schema": {
                        **FACET,
                        "fields": [{"name": "id", "type": "BIGINT"}, {"name": "total", "type": "NUMERIC"}],
                    },
                    "documentation": {**FACET, "description": "Orders loaded by Airflow."},
                    "columnLineage": {
                        **FACET,
                        "fields": {
                            "total": {
                                "inputFields": [
                                    {"namespace": OL_NS, "name": "landing.public.orders_raw", "field": "amount"}
                                ]
                            }
                        },
                    },
                },
            }
        ],
    }


def test_an_ingested_run_event_adds_its_job_datasets_and_edge_once(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("openlineage-ingest")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    run_id = str(uuid.uuid4())
    start = external_event("START", run_id, "2026-12-03T10:00:00Z")
    complete = external_event("COMPLETE", run_id, "2026-12-03T10:00:07.25Z")

    replies = [operator.post("/lineage", json=event) for event in (start, complete, complete)]

    assert [r.status_code for r in replies] == [201, 201, 201], replies[0].text
    assert [r.json()["stored"] for r in replies] == [True, True, False], "a re-sent event is stored once"
    assert replies[0].json() == {"project_id": str(tenant.project_id), "kind": "RunEvent", "stored": True}
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])
    items = viewer.get("/datasets", params={"project": str(tenant.project_id), "limit": 50}).json()["items"]
    names = {d["name"]: d for d in items}
    assert set(names) == {"landing.public.orders_raw", "analytics.public.orders"}
    orders = names["analytics.public.orders"]
    assert orders["namespace"] == OL_NS and orders["kind"] == "table" and orders["first_run_id"] is None
    assert orders["columns"] == [{"name": "id", "type": "BIGINT", "description": None}, {
        "name": "total", "type": "NUMERIC", "description": None}]  # fmt: skip
    assert orders["description"] == "Orders loaded by Airflow."
    detail = viewer.get(f"/datasets/{orders['id']}").json()
    assert [(e["dataset"]["name"], e["job_name"], e["column_lineage"]) for e in detail["upstream"]] == [
        ("landing.public.orders_raw", "etl.load_orders", [{"upstream_column": "amount", "downstream_column": "total"}])
    ]
    with psycopg.connect(provision.database_url) as conn:
        job = conn.execute(
            "select j.namespace, j.name, j.last_event_type, j.facets ? 'jobType', "
            "(select array_agg(d.name || ':' || x.direction order by x.direction) from ops.lineage_job_datasets x "
            " join ops.datasets d on d.id = x.dataset_id where x.job_id = j.id) "
            "from ops.lineage_jobs j where j.project_id = %s",
            (tenant.project_id,),
        ).fetchall()
        stored = conn.execute(
            "select event_type, ingested_by is not null, run_id from ops.openlineage_events "
            "where openlineage_run_id = %s order by event_time",
            (run_id,),
        ).fetchall()
    assert job == [
        (
            "airflow-prod", "etl.load_orders", "COMPLETE", True,
            ["landing.public.orders_raw:input", "analytics.public.orders:output"],
        )
    ]  # fmt: skip
    assert stored == [("START", True, None), ("COMPLETE", True, None)]


def test_dataset_and_job_events_are_accepted_too(live_api: LiveServer, provision: Provisioner) -> None:
    tenant = provision.tenant("openlineage-static")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    dataset_event = {
        "eventTime": "2026-12-03T11:00:00Z",
        "producer": "https://example.com/catalog-sync",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": {"namespace": "s3://lake", "name": "bronze/clicks", "facets": {}},
    }
    job_event = {
        "eventTime": "2026-12-03T11:00:00Z",
        "producer": "https://example.com/catalog-sync",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent",
        "job": {"namespace": "spark", "name": "clicks_to_silver"},
        "inputs": [{"namespace": "s3://lake", "name": "bronze/clicks"}],
        "outputs": [{"namespace": "s3://lake", "name": "silver/clicks"}],
    }

    replies = [operator.post("/lineage", json=event) for event in (dataset_event, job_event)]

    assert [(r.status_code, r.json()["kind"]) for r in replies] == [(201, "DatasetEvent"), (201, "JobEvent")]
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])
    items = viewer.get("/datasets", params={"project": str(tenant.project_id)}).json()["items"]
    silver = next(d for d in items if d["name"] == "silver/clicks")
    upstream = viewer.get(f"/datasets/{silver['id']}").json()["upstream"]
    assert [(e["dataset"]["name"], e["job_name"]) for e in upstream] == [("bronze/clicks", "clicks_to_silver")]


@pytest.mark.parametrize(
    ("break_it", "path"),
    [
        (lambda e: e["run"].update(runId="not-a-uuid"), "$.run.runId"),
        (lambda e: e.update(eventTime="yesterday"), "$.eventTime"),
        (lambda e: e.pop("producer"), "$"),
        (lambda e: e["job"].pop("name"), "$.job"),
        (lambda e: e["outputs"][0]["facets"]["schema"].update(fields="id, total"), "$.outputs[0].facets.schema.fields"),
        (lambda e: e["job"]["facets"]["jobType"].pop("_producer"), "$.job.facets.jobType"),
    ],
)
def test_an_invalid_event_is_refused_naming_the_json_path(
    live_api: LiveServer, provision: Provisioner, break_it: Any, path: str
) -> None:
    tenant = provision.tenant("openlineage-invalid")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    event = external_event("START", str(uuid.uuid4()), "2026-12-03T10:00:00Z")
    break_it(event)

    reply = operator.post("/lineage", json=event)

    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["field"] == path, reply.json()
    assert reply.json()["detail"].startswith(path)
    viewer = client(live_api, provision.user_token("viewer", tenant)[1])
    assert viewer.get("/datasets", params={"project": str(tenant.project_id)}).json()["items"] == []


def test_ingest_refuses_a_revoked_token_at_once_through_the_api_and_on_the_notice_from_elsewhere(
    live_api: LiveServer, provision: Provisioner
) -> None:
    """The API remembers who a token stands for (control_room/api/principals.py): a revoke through this
    server's API forgets it at once; one written by another process (another replica, the CLI) as soon as the
    database's notice of it arrives."""
    tenant = provision.tenant("openlineage-revoke")
    event = external_event("START", str(uuid.uuid4()), "2026-12-03T10:00:00Z")
    through_api = client(live_api, provision.user_token("operator", tenant)[1])
    user_id, token = provision.user_token("operator", tenant)
    elsewhere = client(live_api, token)
    assert [c.post("/lineage", json=event).status_code for c in (through_api, elsewhere)] == [201, 201]

    assert through_api.delete("/tokens/test").status_code == 204
    assert through_api.post("/lineage", json=event).status_code == 401

    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("update ops.api_tokens set revoked_at = now() where user_id = %s", (user_id,))
    revoked_at = time.monotonic()
    assert refused_soon(lambda: elsewhere.post("/lineage", json=event), within=30).status_code == 401
    assert time.monotonic() - revoked_at < 10  # a notice, not the TTL (entries are kept for a minute)


def test_ingest_needs_an_operator_token_of_the_project(live_api: LiveServer, provision: Provisioner) -> None:
    tenant, other = provision.tenant("openlineage-auth"), provision.tenant("openlineage-other")
    event = external_event("START", str(uuid.uuid4()), "2026-12-03T10:00:00Z")

    anonymous = httpx.post(live_api.base_url + API + "/lineage", json=event)
    viewer = client(live_api, provision.user_token("viewer", tenant)[1]).post("/lineage", json=event)
    outsider = client(live_api, provision.user_token("operator", other)[1]).post(
        "/lineage", params={"project": str(tenant.project_id)}, json=event
    )
    agent = client(live_api, provision.executor_token("ol-pool", tenant=tenant)).post("/lineage", json=event)
    not_json = client(live_api, provision.user_token("operator", tenant)[1]).post(
        "/lineage", content=b"{nope", headers={"Content-Type": "application/json"}
    )

    assert anonymous.status_code == 401
    assert viewer.status_code == 403 and viewer.json()["field"] == "project", viewer.text
    assert outsider.status_code in (403, 404), outsider.text
    assert agent.status_code == 403
    assert not_json.status_code == 400 and not_json.json()["field"] == "$"
    with psycopg.connect(provision.database_url) as conn:
        count = conn.execute(
            "select count(*) from ops.openlineage_events where openlineage_run_id = %s", (event["run"]["runId"],)
        ).fetchone()
    assert count == (0,)


def _versions(conn: psycopg.Connection, project_id: uuid.UUID) -> dict[str, list[tuple[str, str]]]:
    """The row versions (xmin) of the project's datasets, edges, job and job links: a rewrite changes them."""
    queries = {
        "datasets": "select name, xmin::text from ops.datasets where project_id = %s order by name",
        "edges": "select job_name, e.xmin::text from ops.lineage_edges e where project_id = %s order by 1",
        "links": "select x.direction, x.xmin::text from ops.lineage_job_datasets x join ops.lineage_jobs j "
        "on j.id = x.job_id where j.project_id = %s order by 1",
        "job": "select name, xmin::text from ops.lineage_jobs where project_id = %s",
    }
    return {
        name: [(str(r[0]), str(r[1])) for r in conn.execute(q, (project_id,)).fetchall()] for name, q in queries.items()
    }


def test_a_job_sent_again_as_it_was_rewrites_only_its_state_and_a_changed_schema_is_written(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("openlineage-writes")
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    first = str(uuid.uuid4())
    for event in (
        external_event("START", first, "2026-12-03T10:00:00Z"),
        external_event("COMPLETE", first, "2026-12-03T10:00:05Z"),
    ):
        assert operator.post("/lineage", json=event).status_code == 201
    with psycopg.connect(provision.database_url) as conn:
        before = _versions(conn, tenant.project_id)

    second = str(uuid.uuid4())
    assert operator.post("/lineage", json=external_event("START", second, "2026-12-03T11:00:00Z")).json()["stored"]
    with psycopg.connect(provision.database_url) as conn:
        again = _versions(conn, tenant.project_id)
    assert {k: v for k, v in again.items() if k != "job"} == {k: v for k, v in before.items() if k != "job"}, (
        "datasets, edge and job links sent as they were are not rewritten"
    )
    assert again["job"] != before["job"], "the job's last state moves to the new run"

    changed = external_event("COMPLETE", second, "2026-12-03T11:00:09Z")
    changed["outputs"][0]["facets"]["schema"]["fields"].append({"name": "currency", "type": "TEXT"})
    assert operator.post("/lineage", json=changed).json()["stored"]
    with psycopg.connect(provision.database_url) as conn:
        columns = conn.execute(
            "select d.columns, (select c.changes from ops.dataset_schema_changes c where c.dataset_id = d.id) "
            "from ops.datasets d where d.project_id = %s and d.name = 'analytics.public.orders'",
            (tenant.project_id,),
        ).fetchone()
        job = conn.execute(
            "select last_openlineage_run_id::text, last_event_type from ops.lineage_jobs where project_id = %s",
            (tenant.project_id,),
        ).fetchone()
    assert columns is not None and [c["name"] for c in columns[0]] == ["id", "total", "currency"]
    assert columns[1] == [{"column": "currency", "change": "added", "new_type": "TEXT"}]
    assert job == (second, "COMPLETE")


def test_ingest_names_the_project_when_the_token_may_write_to_several(
    live_api: LiveServer, provision: Provisioner
) -> None:
    first, second = provision.tenant("openlineage-first"), provision.tenant("openlineage-second")
    user_id, token = provision.user_token("operator", first)
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.project_members (project_id, user_id, role) values (%s, %s, 'operator')",
            (second.project_id, user_id),
        )
        slug = conn.execute("select slug from ops.projects where id = %s", (second.project_id,)).fetchone()
    assert slug is not None
    operator = client(live_api, token)
    event = external_event("START", str(uuid.uuid4()), "2026-12-03T10:00:00Z")

    unnamed = operator.post("/lineage", json=event)
    by_slug = operator.post("/lineage", params={"project": slug[0]}, json=event)
    unknown = operator.post("/lineage", params={"project": "no-such-project"}, json=event)

    assert unnamed.status_code == 422 and unnamed.json()["field"] == "project", unnamed.text
    assert "several projects" in unnamed.json()["detail"] and slug[0] in unnamed.json()["detail"]
    assert by_slug.status_code == 201 and by_slug.json()["project_id"] == str(second.project_id), by_slug.text
    assert unknown.status_code == 404 and unknown.json()["field"] == "project", unknown.text
