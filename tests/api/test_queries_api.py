"""Query history (reported under a lease, listed through RLS) and result pages read from Parquet artifacts."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.live import LiveServer, Provisioner

API = "/api/v1"


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def pool() -> str:
    return f"sql-{uuid.uuid4().hex[:8]}"


def claimed_sql_task(server: LiveServer, provision: Provisioner, pool: str, engine: str = "duckdb") -> tuple[
    httpx.Client, httpx.Client, dict[str, Any], dict[str, Any]
]:  # fmt: skip
    """(operator, agent, run, claimed task) for one SQL task of a new run."""
    operator = client(server, provision.user_token("operator")[1])
    spec = {"name": "sql", "tasks": [{"key": "q", "engine": engine, "pool": pool, "sql": "select 1"}]}
    run = operator.post("/runs", json={"project": str(provision.tenant().project_id), "spec": spec}).json()
    agent = client(server, provision.executor_token(pool))
    assert agent.post("/executors/register", json={"engines": [engine]}).status_code == 200
    (task,) = agent.post("/tasks/claim", json={"max_tasks": 1}).json()["tasks"]
    return operator, agent, run, task


def record(index: int, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "statement_index": index,
        "engine": "duckdb",
        "sql_text": f"select {index} from sales",
        "state": state,
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        **extra,
    }


def upload(agent: httpx.Client, task: dict[str, Any], name: str, body: bytes, content_type: str) -> dict[str, Any]:
    lease = task["lease_token"]
    ticket = agent.post(
        f"/tasks/{task['task_id']}/artifacts",
        json={"lease_token": lease, "name": name, "size_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
              "content_type": content_type},
    ).json()  # fmt: skip
    with httpx.Client(timeout=30, headers=agent.headers if "/api/v1/uploads/" in ticket["upload_url"] else None) as c:
        put = c.request(ticket["method"], ticket["upload_url"], content=body, headers=ticket["headers"])
        assert put.status_code in (200, 204), put.text
    done = agent.post(f"/tasks/{task['task_id']}/artifacts/{ticket['upload_id']}/complete", json={"lease_token": lease})
    assert done.status_code == 200, done.text
    return dict(done.json())


def parquet_bytes(rows: int, row_group_rows: int) -> bytes:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "amount": pa.array([f"{i}.50" for i in range(rows)]).cast(pa.decimal128(12, 2)),
            "day": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i % 365) for i in range(rows)]),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_rows)
    return sink.getvalue()


def test_history_is_reported_under_the_lease_and_completed_once(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator, agent, run, task = claimed_sql_task(live_api, provision, pool)
    url = f"/tasks/{task['task_id']}/queries"
    lease = task["lease_token"]

    running = agent.post(url, json={"lease_token": lease, "queries": [record(1, "running", estimated_scan_bytes=800)]})
    assert running.status_code == 200 and running.json() == {"accepted": 1, "unchanged": 0}
    finished = record(1, "finished", query_id="duckdb_1", rows=3, bytes_read=96, cpu_time_ms=4, elapsed_ms=9,
                      peak_memory_bytes=1024, estimated_scan_bytes=800, scan_cap_bytes=10_000,
                      result_artifact="result.parquet", finished_at=dt.datetime.now(dt.UTC).isoformat())  # fmt: skip
    assert agent.post(url, json={"lease_token": lease, "queries": [finished]}).json() == {"accepted": 1, "unchanged": 0}
    # Re-sent reports (an agent retrying) change nothing once the statement is finished.
    late = agent.post(url, json={"lease_token": lease, "queries": [record(1, "running"), finished]})
    assert late.json() == {"accepted": 0, "unchanged": 2}

    (row,) = operator.get("/queries", params={"run_id": run["id"]}).json()["items"]
    assert row["state"] == "finished" and row["rows"] == 3 and row["query_id"] == "duckdb_1"
    assert row["estimated_scan_bytes"] == 800 and row["scan_cap_bytes"] == 10_000 and row["elapsed_ms"] == 9
    assert row["task_key"] == "q" and row["attempt"] == 1 and row["engine"] == "duckdb"
    assert operator.get(f"/queries/{row['id']}").json()["sql_text"] == "select 1 from sales"

    stale = agent.post(url, json={"lease_token": str(uuid.uuid4()), "queries": [record(2, "running")]})
    assert stale.status_code == 409
    invalid = agent.post(url, json={"lease_token": lease, "queries": [record(2, "exploded")]})
    assert invalid.status_code == 422 and invalid.json()["field"] == "queries[0].state"
    negative = agent.post(url, json={"lease_token": lease, "queries": [record(2, "running", rows=-1)]})
    assert negative.status_code == 422 and negative.json()["field"] == "queries[0].rows"
    as_user = operator.post(url, json={"lease_token": lease, "queries": [record(2, "running")]})
    assert as_user.status_code == 403


def test_history_lists_with_filters_and_keyset_pages_through_rls(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator, agent, run, task = claimed_sql_task(live_api, provision, pool)
    items = [record(i, "failed" if i == 4 else "finished", query_id=f"marker-{run['id'][:8]}-{i}") for i in range(1, 6)]
    assert agent.post(f"/tasks/{task['task_id']}/queries", json={"lease_token": task["lease_token"],
                                                                  "queries": items}).status_code == 200  # fmt: skip

    first = operator.get("/queries", params={"run_id": run["id"], "limit": 2}).json()
    second = operator.get("/queries", params={"run_id": run["id"], "limit": 2, "cursor": first["next_cursor"]}).json()
    third = operator.get("/queries", params={"run_id": run["id"], "limit": 2, "cursor": second["next_cursor"]}).json()
    pages = [first, second, third]
    assert [len(p["items"]) for p in pages] == [2, 2, 1] and third["next_cursor"] is None
    assert len({row["id"] for p in pages for row in p["items"]}) == 5
    failed = operator.get("/queries", params={"run_id": run["id"], "state": "failed"}).json()["items"]
    assert [row["statement_index"] for row in failed] == [4]
    by_text = operator.get("/queries", params={"q": f"marker-{run['id'][:8]}-3"}).json()["items"]
    assert [row["statement_index"] for row in by_text] == [3]
    assert operator.get("/queries", params={"run_id": run["id"], "engine": "trino"}).json()["items"] == []
    # The contract lists the states, so the first unknown one is named: state[0].
    assert operator.get("/queries", params={"state": "exploded"}).json()["field"] == "state[0]"
    assert operator.get("/queries", params={"cursor": "not-a-cursor"}).json()["field"] == "cursor"

    stranger = client(live_api, provision.user_token("viewer", provision.tenant("other-sql"))[1])
    assert stranger.get("/queries", params={"run_id": run["id"]}).json()["items"] == []
    assert stranger.get(f"/queries/{first['items'][0]['id']}").status_code == 404


@pytest.mark.parametrize("store", ["local", "s3"])
def test_result_rows_are_paged_from_the_parquet_artifact(
    store: str, request: pytest.FixtureRequest, provision: Provisioner, pool: str
) -> None:
    server: LiveServer = request.getfixturevalue("live_api" if store == "local" else "live_api_s3")
    operator, agent, _run, task = claimed_sql_task(server, provision, pool)
    artifact = upload(agent, task, "result.parquet", parquet_bytes(2500, 1000), "application/vnd.apache.parquet")
    preview = upload(agent, task, "result.preview.json", b'{"rows": []}', "application/json")

    page = operator.get(f"/artifacts/{artifact['id']}/rows", params={"offset": 990, "limit": 20}).json()
    assert page["columns"] == [
        {"name": "id", "type": "int64"}, {"name": "amount", "type": "decimal128(12, 2)"},
        {"name": "day", "type": "date32[day]"},
    ]  # fmt: skip
    assert [row[0] for row in page["rows"]] == list(range(990, 1010))  # across a row group boundary
    assert page["rows"][0][1:] == ["990.50", "2026-09-18"]
    assert page["total_rows"] == 2500 and page["next_offset"] == 1010
    last = operator.get(f"/artifacts/{artifact['id']}/rows", params={"offset": 2490, "limit": 100}).json()
    assert [row[0] for row in last["rows"]] == list(range(2490, 2500)) and last["next_offset"] is None
    beyond = operator.get(f"/artifacts/{artifact['id']}/rows", params={"offset": 5000}).json()
    assert beyond["rows"] == [] and beyond["next_offset"] is None

    not_parquet = operator.get(f"/artifacts/{preview['id']}/rows")
    assert not_parquet.status_code == 422 and not_parquet.json()["field"] == "artifact_id"
    assert operator.get(f"/artifacts/{artifact['id']}/rows", params={"limit": 0}).json()["field"] == "limit"
    stranger = client(server, provision.user_token("viewer", provision.tenant("other-sql"))[1])
    assert stranger.get(f"/artifacts/{artifact['id']}/rows").status_code == 404


def test_result_rows_of_an_artifact_whose_bytes_are_gone_is_a_404_problem(
    live_api: LiveServer, provision: Provisioner, pool: str
) -> None:
    operator, agent, _run, task = claimed_sql_task(live_api, provision, pool)
    artifact = upload(agent, task, "lost.parquet", parquet_bytes(10, 10), "application/vnd.apache.parquet")
    (stored,) = [p for p in live_api.data_dir.rglob("lost.parquet") if p.is_file()]
    stored.unlink()

    gone = operator.get(f"/artifacts/{artifact['id']}/rows")
    assert gone.status_code == 404, gone.text
    assert gone.headers["content-type"] == "application/problem+json"
    assert "not in this store" in gone.json()["detail"]
