"""The Spark engine through a real agent against the real API: a Delta -> Spark -> Delta DAG, end to end.

A memory cap on the agent's pool comes back in the claim's limits; the demo job asks for more and runs
with the capped value. Events, artifacts and lineage are read back through the API, and the output
table through deltalake.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from executor_agent.config import AgentSettings
from executor_agent.engines.delta import DeltaEngine
from executor_agent.engines.spark import SparkEngine
from executor_agent.runner import Agent
from tests.agent.conftest import TERMINAL_RUN, operator_client, run_events, submit
from tests.live import LiveServer, Provisioner

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
REGIONS = [
    {"region_id": 1, "region_name": "north"},
    {"region_id": 2, "region_name": "south"},
    {"region_id": 3, "region_name": "east"},
    {"region_id": 4, "region_name": "west"},
]
MEMORY_CAP_MB = 640


@pytest.fixture
def spark_pool(api_database_url: str, provision: Provisioner) -> str:
    """A pool of its own with memory and core caps, so no other test's tasks are capped."""
    pool = f"spark-{uuid.uuid4().hex[:8]}"
    tenant = provision.tenant()
    with psycopg.connect(api_database_url, autocommit=True) as conn:
        for kind, value in (("max_memory_mb", MEMORY_CAP_MB), ("max_cores", 2)):
            conn.execute(
                "insert into ops.caps (org_id, name, scope, pool, kind, limit_value)"
                " values (%s, %s, 'pool', %s, %s, %s)",
                (tenant.org_id, f"{pool}-{kind}", pool, kind, value),
            )
    return pool


@pytest.fixture
def spark_agent(live_api: LiveServer, provision: Provisioner, spark_pool: str, tmp_path: Path) -> Iterator[Agent]:
    settings = AgentSettings(
        url=live_api.base_url,
        token=provision.executor_token(spark_pool),
        spool_dir=tmp_path / "spool",
        work_dir=tmp_path / "work",
        concurrency=1,
        claim_wait_s=2.0,
        grace_period_s=5.0,
        kill_grace_s=2.0,
        engines=["spark", "delta"],
    )
    agent = Agent(settings, engines={"spark": SparkEngine, "delta": DeltaEngine})
    thread = threading.Thread(target=agent.run, name="spark-agent", daemon=True)
    thread.start()
    assert agent.started.wait(30), "the agent did not register"
    yield agent
    agent.request_stop()
    agent.request_stop()
    thread.join(60)
    assert not thread.is_alive(), "the agent did not stop"


def test_the_demo_dag_runs_through_an_agent(
    live_api: LiveServer, provision: Provisioner, spark_pool: str, spark_agent: Agent, tmp_path: Path
) -> None:
    data = tmp_path / "lake"
    regions, orders, output = data / "regions", data / "orders", data / "out" / "daily_sales"
    tasks: list[dict[str, Any]] = [
        {
            "key": "regions",
            "engine": "delta",
            "pool": spark_pool,
            "delta": {"operation": "create", "table": str(regions), "source": {"rows": REGIONS}},
        },
        {
            "key": "daily_sales",
            "engine": "spark",
            "pool": spark_pool,
            "depends_on": ["regions"],
            "timeout_s": 240,
            "application": str(REPO / "examples" / "spark" / "daily_sales.py"),
            "master": "local[2]",
            "driver_memory": "2g",  # more than the pool's cap
            "output_path": str(data / "out"),  # the agent deletes the work dir when the task ends
            "args": ["--orders", str(orders), "--generate-orders", "20000", "--regions", str(regions),
                     "--output", "{output_path}/daily_sales"],
            "lineage": {"inputs": [str(orders), str(regions)], "outputs": ["{output_path}/daily_sales"]},
            "progress_interval_s": 0.5,
        },
        {
            "key": "snapshot",
            "engine": "spark",
            "pool": spark_pool,
            "depends_on": ["daily_sales"],
            "delta": {"operation": "read", "table": str(output), "version": 0, "format": "json"},
        },
    ]  # fmt: skip
    operator = operator_client(live_api, provision.user_token("operator")[1])
    run = submit(operator, provision.tenant().project_id, tasks)

    logs_while_running = watch_logs_while_running(operator, run["id"], "daily_sales", timeout=300)
    detail = operator.get(f"/runs/{run['id']}").json()
    assert detail["status"] == "succeeded", json.dumps(detail, indent=1)[:4000]
    assert logs_while_running > 0, "log lines must be visible while the job is still running"
    task_ids = {t["key"]: t["id"] for t in detail["tasks"]}
    events = run_events(operator, run["id"])
    spark_events = [e for e in events if e["task_id"] == task_ids["daily_sales"]]

    # Log lines with their levels.
    logs = [e for e in spark_events if e["type"] == "log"]
    assert any(
        re.search(r" INFO SparkContext: Running Spark version", e["message"]) and e["level"] == "info" for e in logs
    )
    assert all(e["level"] == "warning" for e in logs if re.match(r"^\S+ WARN ", e["message"]))

    # Capped memory: the claim carried the pool's cap, the event says so, the JVM ran with it.
    (config,) = [e for e in spark_events if e["type"] == "spark.config"]
    assert config["level"] == "warning"
    assert (
        f"spark.driver.memory capped from 2048m to {MEMORY_CAP_MB}m by max_memory_mb={MEMORY_CAP_MB}"
        in config["message"]
    )
    heap = next(e["message"] for e in logs if "driver JVM max heap" in e["message"])
    assert f"driver memory setting: {MEMORY_CAP_MB}m" in heap

    # Progress from the REST API while it ran and from the event log at the end; the UI URL.
    progress = [e["data"] for e in spark_events if e["type"] == "progress"]
    assert any(p["source"] == "rest" and p["stages_total"] >= 1 for p in progress)
    final = [p for p in progress if p["source"] == "event_log"]
    assert len(final) == 1 and final[0]["stages_done"] == final[0]["stages_total"] >= 3
    (ui,) = [e for e in spark_events if e["type"] == "spark.ui"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ui["data"]["url"])

    # Logs as artifacts, stored bytes verified against their SHA-256.
    artifacts = operator.get(f"/runs/{run['id']}/artifacts").json()["items"]
    by_name = {(a["task_id"], a["name"]): a for a in artifacts}
    driver_log = by_name[(task_ids["daily_sales"], "spark/logs/driver.log")]
    content = operator.get(f"/artifacts/{driver_log['id']}/content")
    assert hashlib.sha256(content.content).hexdigest() == driver_log["sha256"]
    assert "INFO SparkContext: Successfully stopped SparkContext" in content.text
    assert (task_ids["daily_sales"], "spark/logs/console.log") in by_name

    # The output table, checked independently of Spark.
    expected: dict[tuple[Any, str], list[int]] = defaultdict(list)
    names: dict[Any, str] = {r["region_id"]: str(r["region_name"]) for r in REGIONS}
    for order in ds.dataset(str(orders), format="parquet").to_table().to_pylist():
        expected[(order["order_date"], names[order["region_id"]])].append(order["amount_cents"])
    rows = DeltaTable(str(output)).to_pyarrow_table().to_pylist()
    assert {
        (r["order_date"], r["region"]): (r["orders"], r["revenue_cents"], r["largest_order_cents"]) for r in rows
    } == {key: (len(amounts), sum(amounts), max(amounts)) for key, amounts in expected.items()}

    # The Delta read task's artifact holds the same rows.
    snapshot = by_name[(task_ids["snapshot"], "daily_sales-v0.json")]
    snapshot_rows = operator.get(f"/artifacts/{snapshot['id']}/content").json()
    assert sum(r["orders"] for r in snapshot_rows) == 20_000 and len(snapshot_rows) == len(rows)

    # Lineage reached the control plane: the output table, its columns and both upstream edges.
    found = operator.get("/datasets", params={"project": str(provision.tenant().project_id), "q": "daily_sales"})
    assert found.status_code == 200, found.text
    (dataset,) = [d for d in found.json()["items"] if d["name"] == str(output)]
    dataset_detail = operator.get(f"/datasets/{dataset['id']}").json()
    assert [c["name"] for c in dataset_detail["columns"]] == [
        "order_date", "region", "orders", "revenue_cents", "largest_order_cents"
    ]  # fmt: skip
    assert dataset_detail["kind"] == "table" and dataset_detail["namespace"] == "file"
    assert len(dataset_detail["upstream"]) == 2, dataset_detail["upstream"]


def watch_logs_while_running(client: httpx.Client, run_id: str, task_key: str, *, timeout: float) -> int:
    """Poll until the run ends; count the task's log events the API served while the task was running."""
    deadline = time.monotonic() + timeout
    seen_while_running = 0
    while time.monotonic() < deadline:
        detail = client.get(f"/runs/{run_id}").json()
        if detail["status"] in TERMINAL_RUN:
            return seen_while_running
        task = next(t for t in detail["tasks"] if t["key"] == task_key)
        if task["status"] == "running" and not seen_while_running:
            events = run_events(client, run_id)
            logs = [e for e in events if e["task_id"] == task["id"] and e["type"] == "log"]
            finished = any(e["task_id"] == task["id"] and e["type"] == "finish" for e in events)
            if logs and not finished:
                seen_while_running = len(logs)
        time.sleep(0.5)  # polling the control plane: there is nothing to await
    raise AssertionError(f"run {run_id} not finished after {timeout} s")
