"""Lineage over the contract against a real server: reports under a lease, idempotency, reads, visibility."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

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
            "spec": {"name": "lineage", "tasks": [{"key": "build", "engine": "dbt", "pool": pool}]},
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
