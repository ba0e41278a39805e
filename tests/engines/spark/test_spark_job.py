"""The demo Spark job through the Spark engine: logs, progress, UI, capped memory, output and lineage.

One spark-submit (one JVM start) serves every test in this module: the run is a module fixture.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable, write_deltalake

from examples.spark.daily_sales import generate_orders
from executor_agent.engines.base import EngineResult, ResourceLimits
from executor_agent.engines.spark import SparkEngine
from tests.engines.harness import HarnessContext
from tests.engines.spark.conftest import HarnessFactory

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
REGIONS_V0 = {1: "north", 2: "south", 3: "east", 4: "west"}
REGIONS_V1 = {1: "N", 2: "S", 3: "E", 4: "W"}
MEMORY_CAP_MB = 768


@dataclass
class DemoRun:
    context: HarnessContext
    result: EngineResult
    orders: Path
    regions: Path
    output: Path
    elapsed_s: float


def regions_table(names: dict[int, str]) -> pa.Table:
    return pa.table({"region_id": pa.array(list(names), pa.int32()), "region_name": list(names.values())})


@pytest.fixture(scope="module")
def demo(harness_session: HarnessFactory, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    data = tmp_path_factory.mktemp("demo-data")
    regions = data / "regions"
    # Partitioned, so the job's delta_reader must recover region_id from the hive-style paths.
    write_deltalake(str(regions), regions_table(REGIONS_V0), partition_by=["region_id"])
    write_deltalake(str(regions), regions_table(REGIONS_V1), mode="overwrite")  # the job reads version 0
    orders = data / "orders"
    generate_orders(orders, rows=20_000, seed=11)
    spec = {
        "key": "daily_sales",
        "engine": "spark",
        "application": str(REPO / "examples" / "spark" / "daily_sales.py"),
        "master": "local[2]",
        "driver_memory": "4g",  # more than the cap allows
        "args": [
            "--orders", str(orders),
            "--regions", str(regions),
            "--regions-version", "0",
            "--output", "{output_path}/daily_sales",
        ],
        "lineage": {"inputs": [str(orders), str(regions)], "outputs": ["{output_path}/daily_sales"]},
        "progress_interval_s": 0.5,
    }  # fmt: skip
    context = harness_session(
        spec, limits=ResourceLimits(max_memory_mb=MEMORY_CAP_MB, max_cores=2, max_output_bytes=50_000_000)
    )
    started = time.monotonic()
    result = SparkEngine().run(context)
    return DemoRun(
        context, result, orders, regions, context.work_dir / "output" / "daily_sales", time.monotonic() - started
    )


def test_the_demo_job_succeeds_in_local_2(demo: DemoRun) -> None:
    assert demo.result.outcome == "succeeded", demo.result.error
    assert demo.result.result["master"] == "local[2]"
    assert demo.result.result["exit_code"] == 0
    assert demo.result.result["app_id"].startswith("local-")
    print(f"demo spark-submit: {demo.elapsed_s:.1f} s")  # measured figure, shown with -s


def test_log_lines_stream_as_events_with_their_level_during_the_run(demo: DemoRun) -> None:
    process = demo.context.processes[0]
    assert process.ended_at is not None
    logs = demo.context.events_of("log")
    during = [e for e in logs if e.ts < process.ended_at]
    assert len(during) > 20, "log lines must arrive while the job runs, not after"
    by_message = {e.message: e for e in logs}
    started = next(m for m in by_message if re.search(r" INFO SparkContext: Running Spark version", m))
    assert by_message[started].level == "info"
    assert by_message[started].data == {"stream": "stderr"}
    warnings = [e for e in logs if re.match(r"^\S+ WARN ", e.message)]
    assert warnings and all(e.level == "warning" for e in warnings)
    printed = next(e for e in logs if e.message.startswith("wrote "))
    assert printed.level == "info" and printed.data == {"stream": "stdout"}
    assert not [e for e in logs if e.level == "error"], "a clean run logs no errors"


def test_full_logs_and_the_event_log_are_uploaded_as_artifacts(demo: DemoRun) -> None:
    driver = demo.context.artifact("spark/logs/driver.log")
    text = driver.path.read_text()
    assert "INFO SparkContext: Running Spark version" in text
    assert "INFO SparkContext: Successfully stopped SparkContext" in text
    assert driver.sha256 == hashlib.sha256(driver.path.read_bytes()).hexdigest()
    console = demo.context.artifact("spark/logs/console.log").path.read_text()
    assert "[stdout] wrote " in console
    app_id = demo.result.result["app_id"]
    events = demo.context.artifact(f"spark/events/{app_id}")
    assert '"Event":"SparkListenerApplicationEnd"' in events.path.read_text()


def test_progress_events_show_stage_and_task_counts(demo: DemoRun) -> None:
    progress = demo.context.events_of("progress")
    live = [e.data for e in progress if e.data["source"] == "rest"]
    assert live, "the REST API was polled while the job ran"
    assert all(0 <= p["stages_done"] <= p["stages_total"] for p in live)
    assert all(0 <= p["tasks_done"] <= p["tasks_total"] for p in live)
    final = [e for e in progress if e.data["source"] == "event_log"]
    assert len(final) == 1 and final[0] is progress[-1]
    counts = final[0].data
    # Reading the orders, the broadcast regions, the aggregation's shuffle and the sort: several stages.
    assert counts["stages_total"] >= 3
    assert counts["stages_done"] == counts["stages_total"]
    assert counts["tasks_done"] == counts["tasks_total"] > 0
    assert counts["input_bytes"] > 0
    assert demo.result.result["progress"] == {k: v for k, v in counts.items() if k not in ("source", "app_id")}


def test_the_spark_ui_url_is_recorded(demo: DemoRun) -> None:
    (ui,) = demo.context.events_of("spark.ui")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", ui.data["url"])
    assert ui.data["app_id"] == demo.result.result["app_id"]
    assert demo.result.result["ui_url"] == ui.data["url"]
    assert ui.data["url"].endswith(f":{demo.context.events_of('spark.config')[0].data['ui_port']}")


def test_memory_over_the_cap_runs_with_the_capped_value_and_the_event_says_so(demo: DemoRun) -> None:
    (config,) = demo.context.events_of("spark.config")
    assert config.level == "warning"
    assert (
        f"spark.driver.memory capped from 4096m to {MEMORY_CAP_MB}m by max_memory_mb={MEMORY_CAP_MB}" in config.message
    )
    assert config.data["requested"]["driver_memory"] == "4096m"
    assert config.data["effective"]["driver_memory"] == f"{MEMORY_CAP_MB}m"
    assert config.data["capped"] == [
        {"setting": "spark.driver.memory", "requested": "4096m", "effective": f"{MEMORY_CAP_MB}m",
         "limit": f"max_memory_mb={MEMORY_CAP_MB}"}
    ]  # fmt: skip
    argv = demo.context.processes[0].argv
    assert argv[argv.index("--driver-memory") + 1] == f"{MEMORY_CAP_MB}m"
    # What the driver JVM itself reports: its heap is bounded by the capped value.
    heap = next(e.message for e in demo.context.events_of("log") if "driver JVM max heap" in e.message)
    assert f"driver memory setting: {MEMORY_CAP_MB}m" in heap
    max_heap_mib = int(re.search(r"max heap: (\d+) MiB", heap).group(1))  # type: ignore[union-attr]
    assert 256 < max_heap_mib <= MEMORY_CAP_MB


def test_the_engine_sets_the_local_ip_and_a_per_task_conf_dir(demo: DemoRun) -> None:
    env = demo.context.processes[0].env
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    conf_dir = Path(env["SPARK_CONF_DIR"])
    assert conf_dir.is_relative_to(demo.context.work_dir)
    assert str(demo.context.work_dir / "spark" / "logs" / "driver.log") in (conf_dir / "log4j2.properties").read_text()


def test_the_output_delta_table_reads_back_correctly(demo: DemoRun) -> None:
    # Independent check: the same aggregation with pyarrow over the generated Parquet files.
    orders = ds.dataset(str(demo.orders), format="parquet").to_table().to_pylist()
    expected: dict[tuple[Any, str], list[int]] = defaultdict(list)
    for order in orders:
        expected[(order["order_date"], REGIONS_V0[order["region_id"]])].append(order["amount_cents"])
    table = DeltaTable(str(demo.output))
    assert table.version() == 0
    rows = table.to_pyarrow_table().to_pylist()
    assert {
        (r["order_date"], r["region"]): (r["orders"], r["revenue_cents"], r["largest_order_cents"]) for r in rows
    } == {key: (len(amounts), sum(amounts), max(amounts)) for key, amounts in expected.items()}
    assert len(rows) == len(expected)
    assert sum(r["orders"] for r in rows) == 20_000
    assert 0 < demo.result.result["output_bytes"] <= 50_000_000


def test_lineage_reports_the_output_table_and_its_inputs(demo: DemoRun) -> None:
    ((operation, payload),) = demo.context.reports
    assert operation == "lineage"
    datasets = {d["name"]: d for d in payload["datasets"]}
    assert set(datasets) == {str(demo.orders), str(demo.regions), str(demo.output)}
    assert datasets[str(demo.output)]["columns"] == [
        {"name": "order_date", "type": "date"},
        {"name": "region", "type": "string"},
        {"name": "orders", "type": "long"},
        {"name": "revenue_cents", "type": "long"},
        {"name": "largest_order_cents", "type": "long"},
    ]
    assert {(e["upstream"]["name"], e["downstream"]["name"], e["job_name"]) for e in payload["edges"]} == {
        (str(demo.orders), str(demo.output), "daily_sales"),
        (str(demo.regions), str(demo.output), "daily_sales"),
    }
