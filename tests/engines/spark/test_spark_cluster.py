"""Spark tasks on a real standalone cluster: a master and two workers started from the pyspark distribution
on 127.0.0.1 (one cluster for the module), the demo job with ``master: spark://…`` (logs, progress, caps and
the outcome as in local mode), and a worker killed mid-job: Spark finishes on the other and the task succeeds.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from examples.spark.daily_sales import generate_orders
from executor_agent.engines.base import EngineResult, ResourceLimits
from executor_agent.engines.spark import SparkEngine, free_port
from tests.engines.harness import HarnessContext, group_is_gone, wait_until
from tests.engines.spark.conftest import HarnessFactory

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
JOBS = Path(__file__).resolve().parent / "jobs"
WORKER_MEMORY = "1g"
MEMORY_CAP_MB = 768  # below Spark's 1g executor default: the engine must say the executor's size
# Where the driver listens: the executors (other JVMs) connect back to it on this address.
DRIVER_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


@dataclass
class Cluster:
    master_url: str
    ui_url: str
    root: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """The master's JSON status: its workers, running and completed applications."""
        response = httpx.get(f"{self.ui_url}/json/", timeout=10)
        # Starting, the web UI answers 404 (an HTML page) for a moment before the master's pages are
        # registered: an HTTPStatusError, which master_up reads as "not up yet" (CI once failed on the HTML).
        response.raise_for_status()
        return dict(response.json())

    def alive_workers(self) -> list[dict[str, Any]]:
        return [w for w in self.state()["workers"] if w["state"] == "ALIVE"]

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


def _spark_class(cluster: Cluster, name: str, *args: str) -> None:
    home = SparkEngine().spark_home
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    with (cluster.root / f"{name}.log").open("wb") as log:
        # A session of its own: killing a worker's group kills it and the executors it launched, as when a
        # machine of the cluster goes away.
        cluster.processes[name] = subprocess.Popen(
            [str(home / "bin" / "spark-class"), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
            cwd=cluster.root, start_new_session=True,
        )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("spark-cluster")
    port, ui_port = free_port(), free_port()
    cluster = Cluster(master_url=f"spark://127.0.0.1:{port}", ui_url=f"http://127.0.0.1:{ui_port}", root=root)
    try:
        _spark_class(
            cluster, "master", "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port),
        )  # fmt: skip

        def master_up() -> bool:
            try:
                return bool(cluster.state())
            except httpx.HTTPError:
                assert cluster.processes["master"].poll() is None, cluster.log("master")
                return False

        wait_until(master_up, timeout=120, what="the Spark master answering")
        for index in (1, 2):
            work = root / f"worker-{index}"
            work.mkdir()
            _spark_class(
                cluster, f"worker-{index}", "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--cores", "1", "--memory", WORKER_MEMORY,
                "--webui-port", str(free_port()), "--work-dir", str(work), cluster.master_url,
            )  # fmt: skip
        wait_until(lambda: len(cluster.alive_workers()) == 2, timeout=120, what="two workers registered")
        yield cluster
    finally:
        for process in cluster.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class DemoRun:
    context: HarnessContext
    result: EngineResult
    orders: Path
    output: Path


@pytest.fixture(scope="module")
def demo(cluster: Cluster, harness_session: HarnessFactory, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    data = tmp_path_factory.mktemp("cluster-demo-data")
    orders = data / "orders"
    generate_orders(orders, rows=20_000, seed=13)
    spec = {
        "key": "daily_sales",
        "engine": "spark",
        "application": str(REPO / "examples" / "spark" / "daily_sales.py"),
        "master": cluster.master_url,
        "conf": DRIVER_CONF,
        "args": ["--orders", str(orders), "--output", "{output_path}/daily_sales"],
        "lineage": {"inputs": [str(orders)], "outputs": ["{output_path}/daily_sales"]},
        "progress_interval_s": 0.5,
    }
    context = harness_session(
        spec, limits=ResourceLimits(max_memory_mb=MEMORY_CAP_MB, max_cores=1, max_output_bytes=50_000_000)
    )
    result = SparkEngine().run(context)
    return DemoRun(context, result, orders, context.work_dir / "output" / "daily_sales")


def test_the_demo_job_succeeds_on_the_standalone_cluster(cluster: Cluster, demo: DemoRun) -> None:
    assert demo.result.outcome == "succeeded", demo.result.error
    assert demo.result.result["master"] == cluster.master_url
    assert demo.result.result["exit_code"] == 0
    app_id = demo.result.result["app_id"]
    assert app_id.startswith("app-"), "a standalone master names applications app-…, local mode local-…"
    # The master ran it, on executors of its workers.
    (completed,) = [a for a in cluster.state()["completedapps"] if a["id"] == app_id]
    assert completed["state"] == "FINISHED"
    assert completed["cores"] >= 1
    assert "Granted executor ID" in demo.context.artifact("spark/logs/driver.log").path.read_text()


def test_the_output_is_right_and_lineage_is_reported(demo: DemoRun) -> None:
    expected: dict[tuple[Any, int], list[int]] = defaultdict(list)
    for order in ds.dataset(str(demo.orders), format="parquet").to_table().to_pylist():
        expected[(order["order_date"], order["region_id"])].append(order["amount_cents"])
    rows = DeltaTable(str(demo.output)).to_pyarrow_table().to_pylist()
    assert sum(r["orders"] for r in rows) == 20_000
    assert sum(r["revenue_cents"] for r in rows) == sum(sum(v) for v in expected.values())
    ((operation, payload),) = demo.context.reports
    assert operation == "lineage"
    assert {d["name"] for d in payload["datasets"]} == {str(demo.orders), str(demo.output)}


def test_logs_and_progress_stream_as_in_local_mode(demo: DemoRun) -> None:
    process = demo.context.processes[0]
    assert process.ended_at is not None
    logs = demo.context.events_of("log")
    assert len([e for e in logs if e.ts < process.ended_at]) > 20, "log lines arrive while the job runs"
    assert any(re.search(r"StandaloneSchedulerBackend|StandaloneAppClient", e.message) for e in logs)
    assert not [e for e in logs if e.level == "error"], "a clean run logs no errors"
    progress = demo.context.events_of("progress")
    assert [e for e in progress if e.data["source"] == "rest"], "the driver's REST API was polled"
    final = progress[-1].data
    assert final["source"] == "event_log"
    assert final["stages_done"] == final["stages_total"] >= 2
    assert final["tasks_done"] == final["tasks_total"] > 0
    driver = demo.context.artifact("spark/logs/driver.log")
    assert driver.sha256 == hashlib.sha256(driver.path.read_bytes()).hexdigest()


def test_caps_size_the_cluster_executors_and_the_event_says_so(cluster: Cluster, demo: DemoRun) -> None:
    (config,) = demo.context.events_of("spark.config")
    capped = {c["setting"]: c for c in config.data["capped"]}
    assert capped["spark.executor.memory"] == {
        "setting": "spark.executor.memory", "requested": "1024m", "effective": f"{MEMORY_CAP_MB}m",
        "limit": f"max_memory_mb={MEMORY_CAP_MB}",
    }  # fmt: skip
    assert capped["spark.executor.cores"]["effective"] == "1"
    argv = demo.context.processes[0].argv
    assert argv[argv.index("--executor-memory") + 1] == f"{MEMORY_CAP_MB}m"
    assert argv[argv.index("--executor-cores") + 1] == "1"
    # What the master granted: executors of the capped size.
    (completed,) = [a for a in cluster.state()["completedapps"] if a["id"] == demo.result.result["app_id"]]
    assert completed["memoryperslave"] == MEMORY_CAP_MB


def test_a_worker_killed_mid_job_lets_spark_finish_on_the_other(
    cluster: Cluster, demo: DemoRun, harness_session: HarnessFactory
) -> None:
    numbers, partitions = 200_000, 16
    spec = {
        "key": "slow_sum",
        "engine": "spark",
        "application": str(JOBS / "slow_sum.py"),
        "master": cluster.master_url,
        "conf": {**DRIVER_CONF, "spark.task.maxFailures": "4"},
        "args": [str(numbers), str(partitions), "1.5", "{output_path}/sum"],
        "progress_interval_s": 0.5,
    }
    context = harness_session(spec, limits=ResourceLimits(max_memory_mb=MEMORY_CAP_MB, max_cores=1))
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(SparkEngine().run, context)
        # Mid-job: an executor busy on each worker and some tasks already done.
        wait_until(
            lambda: all(w["coresused"] == 1 for w in cluster.alive_workers()) and len(cluster.alive_workers()) == 2,
            timeout=180, what="an executor busy on each worker",
        )  # fmt: skip
        wait_until(
            lambda: any(e.data.get("tasks_done", 0) >= 2 for e in context.events_of("progress")),
            timeout=180, what="some tasks done",
        )  # fmt: skip
        victim = cluster.processes["worker-2"]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        assert group_is_gone(victim.pid, timeout=30), "the worker and its executor are gone"
        result = running.result(timeout=600)
    assert result.outcome == "succeeded", result.error
    assert (context.work_dir / "output" / "sum" / "sum.txt").read_text() == str(sum(range(numbers)))
    # Spark saw the executor go and ran its tasks again on the surviving worker.
    app_id = result.result["app_id"]
    event_log = context.artifact(f"spark/events/{app_id}").path.read_text()
    assert '"Event":"SparkListenerExecutorRemoved"' in event_log
    final = context.events_of("progress")[-1].data
    assert final["tasks_done"] >= partitions
