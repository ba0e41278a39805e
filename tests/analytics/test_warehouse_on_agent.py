"""Warehouse SQL of Ask and dashboards on a real agent and DuckDB warehouse.

Ask's scanned-bytes guardrail: the reviewed SQL is EXPLAINed on DuckDB before it runs; under the cap that applies
it runs, over it the run is refused before running with a message giving the estimate and the cap. Dashboards'
warehouse datasets: computed on the agent as the viewer (the shop-sales template), filters bound, the viewer's
access policies applied (a row filter), a viewer without the right to run SQL seeing only what result policies allow.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest

from control_room.config import Settings, get_settings
from control_room.dashboards.loader import shipped_templates
from control_room.services import bundles, dashboards
from control_room.services.auth import UserPrincipal, scoped
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
            f"create table fct_orders as select i as order_id, i % 1000 as customer_id, "
            f"['GB', 'NL', 'US'][i % 3 + 1] as country_code, date '2026-01-01' + (i % 300)::int as ordered_on, "
            f"['completed', 'returned'][i % 2 + 1] as status, (i % 97)::double as amount from range({ORDERS}) t(i)"
        )
        con.execute("create table dim_customers as select i as customer_id, 'customer ' || i as full_name "
                    "from range(1000) t(i)")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def tenant(provision: Provisioner, shop: Path) -> Tenant:
    tenant = provision.tenant(f"ask-cap-{uuid.uuid4().hex[:6]}")
    columns = [("order_id", "BIGINT"), ("customer_id", "BIGINT"), ("country_code", "VARCHAR"), ("ordered_on", "DATE"),
               ("status", "VARCHAR"), ("amount", "DOUBLE")]  # fmt: skip
    customers = [("customer_id", "BIGINT"), ("full_name", "VARCHAR")]
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        for name, cols in (("fct_orders", columns), ("dim_customers", customers)):
            conn.execute(
                "insert into ops.datasets (project_id, namespace, name, kind, columns) values (%s, %s, %s, 'table', "
                "%s)",
                (tenant.project_id, f"duckdb://{shop}", f"shop.main.{name}",
                 json.dumps([{"name": c, "type": t} for c, t in cols])),
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
    try:
        refused = _ask_and_run(live_api, provision, tenant, agent)
    finally:
        with psycopg.connect(provision.database_url, autocommit=True) as conn:
            conn.execute("delete from ops.caps where org_id = %s and name = 'duckdb-scan'", (tenant.org_id,))
    assert refused["status"] == "failed", refused
    error = str(refused.get("error") or "")
    expected = "refused before running: its estimated scan of 1600000 bytes (1.5 MiB) exceeds the scanned-bytes cap of "
    assert expected in error, error
    assert _history(provision, refused["id"]) == ("refused", Settings().nl2sql_max_scan_bytes)


def test_the_ask_spec_carries_its_own_cap() -> None:
    spec = ask_task_spec("SELECT 1", AccessPolicy({}), max_scan_bytes=5_000)
    assert spec["tasks"][0]["max_scan_bytes"] == 5_000
    assert "max_scan_bytes" not in ask_task_spec("SELECT 1", AccessPolicy({}))["tasks"][0]


# Dashboards' warehouse datasets ------------------------------------------------------------------------------


def _person(provision: Provisioner, tenant: Tenant, role: str) -> UserPrincipal:
    user_id, _token = provision.user_token(role, tenant)
    return UserPrincipal(user_id=user_id, email=f"{role}-{user_id.hex[:6]}@test.example")


def _draw(
    provision: Provisioner,
    tenant: Tenant,
    who: UserPrincipal,
    dataset: str,
    country: str | None,
    *,
    wait: bool,
    now: datetime | None = None,
) -> dashboards.DatasetResult:
    """A shop-sales dataset as ``who`` at ``now`` (polling while it computes on the agent, when ``wait``)."""
    spec = shipped_templates()["shop-sales"].dashboard
    since, until = dashboards.window("90d")
    scope = dashboards.DatasetScope(tenant.project_id, since, until, {"country": country})

    async def once() -> dashboards.DatasetResult:
        conn = await psycopg.AsyncConnection.connect(provision.database_url, autocommit=True)
        try:
            async with scoped(conn, who):
                return await dashboards.run_warehouse_dataset(conn, spec.datasets[dataset], scope, at=dataset,
                                                              now=now)  # fmt: skip
        finally:
            await conn.close()

    deadline = time.monotonic() + 120
    while True:
        result = asyncio.run(once())
        if not (wait and result.pending) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)  # the dataset computes on another process (the agent)


def _expected(shop: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(shop), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def server_store(live_api: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process reads results from the live server's artifact store (as the control room it stands for)."""
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(live_api.data_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("server_store")
def test_warehouse_datasets_compute_on_the_agent_as_the_viewer(
    provision: Provisioner, tenant: Tenant, agent: AgentProcess, shop: Path
) -> None:
    operator, viewer = _person(provision, tenant, "operator"), _person(provision, tenant, "viewer")
    first = _draw(provision, tenant, operator, "revenue_by_country", None, wait=False)
    assert first.pending and first.note.startswith("computing on the warehouse"), first
    by_country = _draw(provision, tenant, operator, "revenue_by_country", None, wait=True)
    assert by_country.columns == ["country", "revenue", "orders"] and not by_country.pending, by_country
    assert [tuple(r) for r in by_country.rows] == _expected(
        shop, "select country_code, sum(amount), count(*) from fct_orders group by 1 order by 2 desc"
    )
    gb = _draw(provision, tenant, operator, "orders_by_status", "GB", wait=True)
    assert sorted(tuple(r) for r in gb.rows) == sorted(_expected(
        shop, "select status, count(*) from fct_orders where country_code = 'GB' group by 1"))  # fmt: skip
    top = _draw(provision, tenant, operator, "top_customers", "NL", wait=True)
    assert len(top.rows) == 10 and top.rows[0][0].startswith("customer "), top

    # A viewer may not run SQL: they see the latest result computed for the project (no policies restrict them).
    seen = _draw(provision, tenant, viewer, "revenue_by_country", None, wait=False)
    assert seen.rows == by_country.rows and not seen.pending

    # A row filter for everyone: the operator's next computation sees only US orders; the viewer, whose
    # policies now filter the source, no longer sees a result computed for someone else.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        dataset = bundles.dataset_id_by_name(conn, tenant.org_id, "shop.main.fct_orders")
        bundles.save_access_policy(conn, tenant.org_id, None, {
            "name": "us-only", "kind": "row_filter", "target_kind": "dataset", "target": str(dataset),
            "principal_kind": "everyone", "principal": "", "row_filter": "country_code = 'US'",
        }, actor="test")  # fmt: skip
    later = datetime.now(UTC) + timedelta(seconds=dashboards.WAREHOUSE_WINDOW_S)  # the next window: a new run
    filtered = _draw(provision, tenant, operator, "revenue_by_country", None, wait=True, now=later)
    assert [r[0] for r in filtered.rows] == ["US"], filtered
    withheld = _draw(provision, tenant, viewer, "revenue_by_country", None, wait=False, now=later)
    assert not withheld.rows and withheld.note, withheld
