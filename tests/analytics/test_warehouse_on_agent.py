"""Ask's scanned-bytes guardrail on a real agent: the reviewed SQL is EXPLAINed on DuckDB before it runs; under the
cap that applies it runs, over it the run is refused before running with a message giving the estimate and the cap."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest

from control_room.config import Settings
from control_room.services.nl2sql import AccessPolicy, ask_task_spec
from tests.engines.sql.agent_process import AgentProcess, sql_agent
from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

API = "/api/v1"
ORDERS = 200_000


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse with 200 000 orders (the estimate of SUM(amount): 200 000 rows x 8 bytes)."""
    path = tmp_path_factory.mktemp("ask-cap") / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"create table fct_orders as select i as order_id, i % 1000 as customer_id, 'FR' as country_code, "
            f"date '2026-01-01' + (i % 300)::int as ordered_on, 'completed' as status, (i % 97)::double as amount "
            f"from range({ORDERS}) t(i)"
        )
    return path


@pytest.fixture(scope="module")
def tenant(provision: Provisioner, shop: Path) -> Tenant:
    tenant = provision.tenant(f"ask-cap-{uuid.uuid4().hex[:6]}")
    columns = [("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("country_code", "VARCHAR"), ("ordered_on", "DATE"),
               ("status", "VARCHAR"), ("amount", "DOUBLE")]  # fmt: skip
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.datasets (project_id, namespace, name, kind, columns) values (%s, %s, %s, 'table', %s)",
            (tenant.project_id, f"duckdb://{shop}", "shop.main.fct_orders",
             json.dumps([{"name": c, "type": t} for c, t in columns])),
        )  # fmt: skip
    return tenant


@pytest.fixture(scope="module")
def agent(
    live_api: LiveServer, provision: Provisioner, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    """An agent in the tenant org's default pool (where Ask's tasks are routed), running DuckDB."""
    token = provision.executor_token("default", tenant=tenant)
    with sql_agent(tmp_path_factory.mktemp("ask-agent"), url=live_api.base_url, token=token, engines="duckdb") as p:
        yield p


def _ask_and_run(live_api: LiveServer, provision: Provisioner, tenant: Tenant, agent: AgentProcess) -> dict[str, Any]:
    token = provision.user_token("operator", tenant)[1]
    with httpx.Client(base_url=live_api.base_url + API, headers={"Authorization": f"Bearer {token}"}) as api:
        project = {"project": str(tenant.project_id)}
        asked = api.post("/ask", params=project, json={"question": "total order amount"}).json()
        assert not asked["refused"] and "SUM(t.amount)" in asked["sql"], asked
        ran = api.post(f"/ask/{asked['question_id']}/run", params=project, json={"sql": asked["sql"]})
        assert ran.status_code == 201, ran.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run = dict(api.get(f"/runs/{ran.json()['run_id']}").json())
            if run["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
                return run
            assert agent.process.poll() is None, agent.log_path.read_text()[-3000:]
            time.sleep(0.2)  # polling another process's work
    raise AssertionError(f"the Ask run did not finish; agent log: {agent.log_path.read_text()[-3000:]}")


def _history(provision: Provisioner, run_id: str) -> tuple[Any, ...] | None:
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        return conn.execute(
            "select h.state, (t.spec ->> 'max_scan_bytes')::bigint from ops.query_history h "
            "join ops.tasks t on t.id = h.task_id where h.run_id = %s",
            (run_id,),
        ).fetchone()


def test_ask_runs_under_the_cap_and_is_refused_over_it(
    live_api: LiveServer, provision: Provisioner, tenant: Tenant, agent: AgentProcess
) -> None:
    passed = _ask_and_run(live_api, provision, tenant, agent)
    assert passed["status"] == "succeeded", passed
    assert _history(provision, passed["id"]) == ("finished", Settings().nl2sql_max_scan_bytes)

    # An admin caps DuckDB statements at 1 MB a query: the same question's scan (1.6 MB estimated) is over it.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.caps (org_id, name, scope, engine, kind, limit_value) "
            "values (%s, 'duckdb-scan', 'engine', 'duckdb', 'scanned_bytes_per_query', 1000000)",
            (tenant.org_id,),
        )
    refused = _ask_and_run(live_api, provision, tenant, agent)
    assert refused["status"] == "failed", refused
    error = str(refused.get("error") or "")
    expected = "refused before running: its estimated scan of 1600000 bytes (1.5 MiB) exceeds the scanned-bytes cap of "
    assert expected in error, error
    assert _history(provision, refused["id"]) == ("refused", Settings().nl2sql_max_scan_bytes)


def test_the_ask_spec_carries_its_own_cap() -> None:
    spec = ask_task_spec("SELECT 1", AccessPolicy({}), max_scan_bytes=5_000)
    assert spec["tasks"][0]["max_scan_bytes"] == 5_000
    assert "max_scan_bytes" not in ask_task_spec("SELECT 1", AccessPolicy({}))["tasks"][0]
