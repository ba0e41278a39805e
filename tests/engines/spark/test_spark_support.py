"""The Spark engine's pieces that need no JVM: log levels, stage counts, event logs, dataset names."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from executor_agent.engines.spark_support.lineage import dataset_ref, delta_type_name, describe_location
from executor_agent.engines.spark_support.logs import LogLevelReader, render_log4j_config
from executor_agent.engines.spark_support.progress import summarize_event_log, summarize_stages


def test_levels_come_from_the_log4j_layout_and_carry_over_to_stack_traces() -> None:
    reader = LogLevelReader()
    lines = [
        ("stderr", "2026-11-26T02:51:04,079 INFO SparkContext: Running Spark version 4.3.0", "info"),
        ("stderr", "2026-11-26T02:51:04,398 WARN NativeCodeLoader: Unable to load native-hadoop library", "warning"),
        ("stderr", "2026-11-26T02:51:05,000 ERROR Executor: Exception in task 0.0", "error"),
        ("stderr", "java.lang.ArithmeticException: / by zero", "error"),
        ("stderr", "\tat org.example.Job.run(Job.scala:10)", "error"),
        ("stderr", "2026-11-26T02:51:06,000 DEBUG BlockManager: dropped", "debug"),
        ("stderr", "  continuation of the debug record", "debug"),
        ("stderr", "26/11/26 02:51:04 WARN Utils: Spark's default layout", "warning"),
        ("stdout", "a line the job printed", "info"),
        ("stdout", "WARNING:root:Python logging's layout", "warning"),
        ("stdout", "Traceback (most recent call last):", "error"),
        ("stdout", '  File "job.py", line 3, in <module>', "error"),
        ("stdout", "ZeroDivisionError: division by zero", "error"),
        ("stdout", "after the traceback", "info"),
    ]
    assert [reader.level_of(stream, line) for stream, line, _ in lines] == [level for _, _, level in lines]


def test_the_log4j_template_names_the_task_log_file_and_refuses_unknown_levels(tmp_path: Path) -> None:
    text = render_log4j_config(log_file=tmp_path / "driver.log", root_level="WARN")
    assert f"appender.file.fileName = {tmp_path / 'driver.log'}" in text
    assert "rootLogger.level = warn" in text
    assert "${" not in text
    with pytest.raises(ValueError, match="not a log4j level"):
        render_log4j_config(log_file=tmp_path / "driver.log", root_level="chatty")


def test_stage_counts_take_the_latest_attempt_and_leave_skipped_stages_out() -> None:
    stages = [
        {"stageId": 0, "attemptId": 0, "status": "FAILED", "numTasks": 2, "numCompleteTasks": 1, "numFailedTasks": 1},
        {"stageId": 0, "attemptId": 1, "status": "COMPLETE", "numTasks": 2, "numCompleteTasks": 2, "inputBytes": 100},
        {"stageId": 1, "attemptId": 0, "status": "ACTIVE", "numTasks": 4, "numCompleteTasks": 1, "outputBytes": 7},
        {"stageId": 2, "attemptId": 0, "status": "SKIPPED", "numTasks": 2, "numCompleteTasks": 0},
        {"stageId": 3, "attemptId": 0, "status": "PENDING", "numTasks": 1, "numCompleteTasks": 0},
    ]
    progress = summarize_stages(stages)
    assert progress.as_data() == {
        "stages_done": 1,
        "stages_total": 3,
        "stages_failed": 0,
        "stages_skipped": 1,
        "tasks_done": 3,
        "tasks_total": 7,
        "tasks_failed": 0,
        "input_bytes": 100,
        "output_bytes": 7,
    }
    assert progress.describe() == "stages 1/3, tasks 3/7, input 100 B, output 7 B"


def test_the_event_log_gives_final_counts_even_when_cut_short(tmp_path: Path) -> None:
    events = [
        {"Event": "SparkListenerApplicationStart", "App ID": "local-1", "App Name": "demo"},
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 0, "Number of Tasks": 2}},
        {"Event": "SparkListenerTaskEnd", "Task End Reason": {"Reason": "Success"},
         "Task Metrics": {"Input Metrics": {"Bytes Read": 40}, "Output Metrics": {"Bytes Written": 0}}},
        {"Event": "SparkListenerTaskEnd", "Task End Reason": {"Reason": "Success"},
         "Task Metrics": {"Input Metrics": {"Bytes Read": 60}, "Output Metrics": {"Bytes Written": 5}}},
        {"Event": "SparkListenerStageCompleted", "Stage Info": {"Stage ID": 0, "Number of Tasks": 2}},
        {"Event": "SparkListenerStageSubmitted", "Stage Info": {"Stage ID": 1, "Number of Tasks": 3}},
        {"Event": "SparkListenerTaskEnd", "Task End Reason": {"Reason": "ExceptionFailure"}, "Task Metrics": None},
    ]  # fmt: skip
    log = tmp_path / "local-1.inprogress"
    log.write_text("\n".join(json.dumps(e) for e in events) + '\n{"Event": "SparkListenerTaskEn')
    (tmp_path / ".local-1.inprogress.crc").write_text("ignored")
    summary = summarize_event_log(tmp_path)
    assert (summary.app_id, summary.app_name, summary.files) == ("local-1", "demo", (log,))
    assert summary.progress.as_data() == {
        "stages_done": 1,
        "stages_total": 2,
        "stages_failed": 0,
        "stages_skipped": 0,
        "tasks_done": 2,
        "tasks_total": 5,
        "tasks_failed": 1,
        "input_bytes": 100,
        "output_bytes": 5,
    }
    assert summarize_event_log(tmp_path / "missing").files == ()


def test_datasets_are_named_the_openlineage_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert dataset_ref("/data/sales").as_payload() == {"namespace": "file", "name": "/data/sales"}
    assert dataset_ref("file:///data/sales").as_payload() == {"namespace": "file", "name": "/data/sales"}
    assert dataset_ref("relative/t").as_payload() == {"namespace": "file", "name": str(tmp_path / "relative" / "t")}
    assert dataset_ref("s3://lake/sales/daily").as_payload() == {"namespace": "s3://lake", "name": "sales/daily"}


def test_columns_come_from_delta_schemas_and_parquet_files(tmp_path: Path) -> None:
    table = tmp_path / "t"
    write_deltalake(
        str(table),
        pa.table(
            {
                "id": pa.array([1], pa.int64()),
                "price": pa.array([1], pa.decimal128(10, 2)),
                "tags": pa.array([["a"]], pa.list_(pa.string())),
                "point": pa.array([{"x": 1.0}], pa.struct([("x", pa.float64())])),
            }
        ),
    )
    assert describe_location(table).columns == (
        ("id", "long"),
        ("price", "decimal(10,2)"),
        ("tags", "array<string>"),
        ("point", "struct<x:double>"),
    )
    assert delta_type_name({"type": "map", "keyType": "string", "valueType": "long"}) == "map<string,long>"
    parquet = tmp_path / "p"
    parquet.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), parquet / "part-0.parquet")
    assert describe_location(parquet).columns == (("a", "int64"),)
    assert describe_location(tmp_path / "not-there").columns == ()


def test_the_demo_run_spec_is_valid_for_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from executor_agent.engines.delta import DeltaRequest
    from executor_agent.engines.spark import SparkJobSpec

    repo = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(repo)  # the spec's relative paths are the agent's, run from the repository root
    spec = json.loads((repo / "examples" / "spark" / "demo_run.json").read_text())
    tasks = {task["key"]: task for task in spec["tasks"]}
    assert DeltaRequest.parse(tasks["regions"]["delta"]).table == str(repo / ".lakehouse" / "lake" / "regions")
    job = SparkJobSpec.parse(
        tasks["daily_sales"], work_dir=repo / "w", default_master="local[*]", task_key="daily_sales"
    )
    assert job.application == repo / "examples" / "spark" / "daily_sales.py"
    # The job runs in its work dir: every path it is given is absolute once placeholders are filled.
    assert all(Path(arg).is_absolute() for arg in job.args if "/" in arg), job.args
    assert job.args[-1] == str(repo / ".lakehouse" / "lake" / "daily_sales")
    assert job.lineage_outputs == (str(repo / ".lakehouse" / "lake" / "daily_sales"),)
    assert DeltaRequest.parse(tasks["history"]["delta"]).table == job.lineage_outputs[0]
    assert DeltaRequest.parse(tasks["history"]["delta"]).operation == "history"
