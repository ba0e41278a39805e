"""SQL tasks end to end: the real API, a real agent process, DuckDB and the Trino test server.

Covers the issue's acceptance through an agent: a million-row result streamed to Parquet whose preview
and further pages the API serves; history rows with state, rows and timing for both engines; a query
over a cap refused before it runs; a cancel reaching the Trino server and ending the task cancelled.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from control_room.services.demo import DEMO_WAREHOUSE_SPEC
from tests.engines.sql.agent_process import AgentProcess, sql_agent
from tests.live import LiveServer, Provisioner
from tests.trino_server.process import TrinoTestServer

API = "/api/v1"
MILLION = 1_000_000


def client(server: LiveServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.base_url + API, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def sql_pool() -> str:
    return f"sql-agent-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def agent(
    live_api: LiveServer,
    provision: Provisioner,
    trino_server: TrinoTestServer,
    sql_pool: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentProcess]:
    """One agent process for the module, running DuckDB and Trino (the session's test server)."""
    with sql_agent(
        tmp_path_factory.mktemp("sql-agent"),
        url=live_api.base_url,
        token=provision.executor_token(sql_pool),
        trino_url=trino_server.url,
    ) as process:
        yield process


def submit(operator: httpx.Client, project: Any, pool: str, task: dict[str, Any]) -> dict[str, Any]:
    spec = {"name": "sql", "tasks": [{"key": "query", "pool": pool, **task}]}
    response = operator.post("/runs", json={"project": str(project), "spec": spec})
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for(operator: httpx.Client, run_id: str, agent: AgentProcess, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = dict(operator.get(f"/runs/{run_id}").json())
        if detail["status"] in ("succeeded", "failed", "cancelled"):
            return detail
        assert agent.process.poll() is None, f"the agent exited: {agent.log_path.read_text()[-3000:]}"
        time.sleep(0.2)  # polling the control plane for another process's work
    raise AssertionError(f"run {run_id} not finished in {timeout} s; agent log: {agent.log_path.read_text()[-3000:]}")


def artifacts_by_name(operator: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in operator.get(f"/runs/{run_id}/artifacts").json()["items"]}


def test_a_million_rows_stream_to_parquet_and_the_api_pages_them(
    live_api: LiveServer, provision: Provisioner, agent: AgentProcess, sql_pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    sql = f"select range as id, range * 3 as tripled, 'row ' || range as label from range({MILLION}) order by id"
    run = submit(operator, provision.tenant().project_id, sql_pool, {"engine": "duckdb", "sql": sql})

    detail = wait_for(operator, run["id"], agent)

    assert detail["status"] == "succeeded", detail
    artifacts = artifacts_by_name(operator, run["id"])
    assert artifacts["result.parquet"]["metadata"]["rows"] == MILLION
    preview = json.loads(operator.get(f"/artifacts/{artifacts['result.preview.json']['id']}/content").content)
    assert preview["rows"][:2] == [[0, 0, "row 0"], [1, 3, "row 1"]] and preview["total_rows"] == MILLION
    rows_url = f"/artifacts/{artifacts['result.parquet']['id']}/rows"
    page = operator.get(rows_url, params={"offset": 100, "limit": 500}).json()
    assert [row[0] for row in page["rows"]] == list(range(100, 600)) and page["next_offset"] == 600
    page = operator.get(rows_url, params={"offset": page["next_offset"], "limit": 500}).json()
    assert [row[0] for row in page["rows"]] == list(range(600, 1100)) and page["total_rows"] == MILLION
    tail = operator.get(rows_url, params={"offset": MILLION - 2, "limit": 500}).json()
    assert tail["rows"] == [[MILLION - 2, 3 * (MILLION - 2), f"row {MILLION - 2}"],
                            [MILLION - 1, 3 * (MILLION - 1), f"row {MILLION - 1}"]]  # fmt: skip
    (record,) = operator.get("/queries", params={"run_id": run["id"]}).json()["items"]
    assert record["engine"] == "duckdb" and record["state"] == "finished" and record["rows"] == MILLION
    assert record["elapsed_ms"] > 0 and record["cpu_time_ms"] is not None and record["started_at"]
    assert record["result_artifact"] == "result.parquet"


def test_trino_history_records_state_rows_and_timing(
    live_api: LiveServer, provision: Provisioner, agent: AgentProcess, sql_pool: str, trino_server: TrinoTestServer
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    sql = "SELECT x, x % 7 AS bucket FROM UNNEST(sequence(1, 50000)) AS t(x) ORDER BY x"
    run = submit(operator, provision.tenant().project_id, sql_pool, {"engine": "trino", "sql": sql})

    detail = wait_for(operator, run["id"], agent)

    assert detail["status"] == "succeeded", detail
    (record,) = operator.get("/queries", params={"run_id": run["id"], "engine": "trino"}).json()["items"]
    server_side = trino_server.query(record["query_id"])
    assert server_side["state"] == "FINISHED" and server_side["rows_sent"] == 50_000
    assert record["state"] == "finished" and record["rows"] == 50_000
    assert record["elapsed_ms"] >= 0 and record["queued_ms"] is not None and record["cpu_time_ms"] is not None
    assert record["catalog"] == "lakehouse" and record["schema_name"] == "default"
    page = operator.get(f"/artifacts/{artifacts_by_name(operator, run['id'])['result.parquet']['id']}/rows",
                        params={"offset": 49_998}).json()  # fmt: skip
    assert page["rows"] == [[49_999, 49_999 % 7], [50_000, 50_000 % 7]]


@pytest.mark.parametrize("engine", ["duckdb", "trino"])
def test_a_query_over_the_cap_is_refused_before_it_runs(
    engine: str, live_api: LiveServer, provision: Provisioner, agent: AgentProcess, sql_pool: str,
    trino_server: TrinoTestServer,
) -> None:  # fmt: skip
    tenant = provision.tenant(f"sql-capped-{engine}")
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.caps (org_id, name, scope, project_id, kind, limit_value) "
            "values (%s, 'tiny-scans', 'project', %s, 'scanned_bytes_per_query', 1000)",
            (tenant.org_id, tenant.project_id),
        )
        # The module's agent belongs to the main tenant's org: its pool serves this org too (an audited setting).
        conn.execute("select ops.set_pool_shared(%s, %s, true)", (provision.tenant().org_id, sql_pool))
    operator = client(live_api, provision.user_token("operator", tenant)[1])
    table = f"capped_{uuid.uuid4().hex[:8]}"
    if engine == "duckdb":
        sql = f"create table {table} as select range as id from range(10000); create table {table}_copy (id bigint); " \
              f"insert into {table}_copy select id from {table}"  # fmt: skip
    else:
        sql = f"CREATE TABLE {table} AS SELECT x AS id FROM UNNEST(sequence(1, 10000)) AS t(x); " \
              f"INSERT INTO {table} SELECT id FROM {table}"  # fmt: skip
    run = submit(operator, tenant.project_id, sql_pool, {"engine": engine, "sql": sql})

    detail = wait_for(operator, run["id"], agent)

    assert detail["status"] == "failed"
    error = detail["tasks"][0]["error"]
    assert "estimated scan of 80000 bytes (78.1 KiB) exceeds the scanned-bytes cap of 1000 bytes" in error
    history = {r["statement_index"]: r for r in operator.get("/queries", params={"run_id": run["id"]}).json()["items"]}
    refused = history[max(history)]
    assert refused["state"] == "refused" and refused["estimated_scan_bytes"] == 80_000
    assert refused["scan_cap_bytes"] == 1000 and refused["query_id"] is None
    if engine == "trino":
        inserts = [q for q in trino_server.queries() if q["sql"].startswith(f"INSERT INTO {table}")]
        assert inserts == [], "the refused INSERT never reached the server"


def test_cancelling_a_running_trino_query_reaches_the_server(
    live_api: LiveServer, provision: Provisioner, agent: AgentProcess, sql_pool: str, trino_server: TrinoTestServer
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    marker = uuid.uuid4().hex[:8]
    sql = (
        f"SELECT count(*) AS n_{marker} FROM UNNEST(sequence(1, 1000000)) AS a(x) "
        "CROSS JOIN UNNEST(sequence(1, 100000)) AS b(y) WHERE x + y = -1"
    )
    run = submit(operator, provision.tenant().project_id, sql_pool, {"engine": "trino", "sql": sql})
    running = trino_server.wait_for_query(lambda q: q["sql"] == sql and q["state"] == "RUNNING", timeout_s=60)

    assert operator.post(f"/runs/{run['id']}/cancel").status_code == 200
    detail = wait_for(operator, run["id"], agent, timeout=60)

    assert detail["status"] == "cancelled" and detail["tasks"][0]["status"] == "cancelled"
    cancels = [c for c in trino_server.cancels() if c["query_id"] == running["query_id"]]
    assert cancels and cancels[0]["how"] == "DELETE nextUri"
    (record,) = operator.get("/queries", params={"run_id": run["id"]}).json()["items"]
    assert record["state"] == "cancelled" and record["query_id"] == running["query_id"]


def test_the_demo_warehouse_run_succeeds_through_an_agent(
    live_api: LiveServer, provision: Provisioner, agent: AgentProcess, sql_pool: str
) -> None:
    operator = client(live_api, provision.user_token("operator")[1])
    (task,) = DEMO_WAREHOUSE_SPEC["tasks"]  # type: ignore[misc]
    run = submit(operator, provision.tenant().project_id, sql_pool, {**task, "key": "query"})
    detail = wait_for(operator, run["id"], agent)
    assert detail["status"] == "succeeded", detail
    artifacts = artifacts_by_name(operator, run["id"])
    page = operator.get(f"/artifacts/{artifacts['result-2.parquet']['id']}/rows").json()
    assert [row[:2] for row in page["rows"]] == [[f"region{i}", 25_000] for i in range(4)]
    states = [r["state"] for r in operator.get("/queries", params={"run_id": run["id"]}).json()["items"]]
    assert states == ["finished", "finished", "finished"]
