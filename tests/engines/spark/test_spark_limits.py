"""Bounds and failures of Spark jobs: runtime limit, output cap, a failing job, and spec validation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from executor_agent.engines.base import EngineError, ResourceLimits
from executor_agent.engines.spark import (
    MARKER_ENV,
    SparkEngine,
    SparkResources,
    cap_resources,
    parse_memory_mb,
    redact_conf,
)
from tests.engines.harness import wait_until
from tests.engines.spark.conftest import HarnessFactory

JOBS = Path(__file__).resolve().parent / "jobs"


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER_ENV) == marker:
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_a_job_sleeping_past_its_runtime_limit_is_killed_and_ends_timed_out_with_logs(
    harness: HarnessFactory,
) -> None:
    spec = {
        "key": "sleeper",
        "engine": "spark",
        "application": str(JOBS / "sleep_after_start.py"),
        "master": "local[1]",
    }
    # 60 s: the JVM and a Spark session start well within it on a loaded 2-core machine.
    context = harness(spec, limits=ResourceLimits(max_runtime_s=60))
    started = time.monotonic()
    result = SparkEngine().run(context)
    elapsed = time.monotonic() - started

    assert result.outcome == "timed_out"
    assert result.error == "the Spark job ran past its time limit of 60 s and was stopped"
    assert 60 <= elapsed < 60 + 20, elapsed
    assert context.processes[0].outcome is not None and context.processes[0].outcome.killed_for == "timed_out"
    driver_log = context.artifact("spark/logs/driver.log").path.read_text()
    assert "INFO SparkContext: Running Spark version" in driver_log
    console = context.artifact("spark/logs/console.log").path.read_text()
    assert "[stdout] sleeping in local-" in console
    assert any(e.message.startswith("sleeping in local-") for e in context.events_of("log"))
    marker = context.processes[0].env[MARKER_ENV]
    wait_until(lambda: not marked_processes(marker), timeout=15, what="every process of the job to be gone")


@pytest.mark.slow
def test_output_over_the_cap_stops_the_job_and_fails_it_clearly(harness: HarnessFactory) -> None:
    spec = {
        "key": "writer",
        "engine": "spark",
        "application": str(JOBS / "write_then_wait.py"),
        "master": "local[1]",
        "progress_interval_s": 0.5,
    }
    context = harness(spec, limits=ResourceLimits(max_output_bytes=1024 * 1024), timeout_s=300)
    started = time.monotonic()
    result = SparkEngine().run(context)

    assert time.monotonic() - started < 120, "stopped when the cap was crossed, not at the timeout"
    assert result.outcome == "failed"
    assert result.error is not None
    assert (
        f"under {context.work_dir / 'output'}, over the max_output_bytes cap of 1048576; it was stopped" in result.error
    )
    (exceeded,) = context.events_of("limits.output_exceeded")
    assert exceeded.level == "error" and exceeded.data["output_bytes"] > 1024 * 1024
    assert "[stdout] wrote 3 MB" in context.artifact("spark/logs/console.log").path.read_text()
    marker = context.processes[0].env[MARKER_ENV]
    wait_until(lambda: not marked_processes(marker), timeout=15, what="every process of the job to be gone")


@pytest.mark.slow
def test_a_failing_module_job_fails_with_its_python_error(harness: HarnessFactory) -> None:
    spec = {
        "key": "failing",
        "engine": "spark",
        "module": "tests.engines.spark.jobs.failing_job",
        "args": ["--day", "2026-01-01"],
        "master": "local[1]",
    }
    context = harness(spec)
    result = SparkEngine().run(context)

    assert result.outcome == "failed"
    assert result.error is not None
    assert result.error == "spark-submit exited with code 1; last errors: ValueError: the input folder is empty"
    logs = context.events_of("log")
    assert any(e.message == "arguments: ['--day', '2026-01-01']" for e in logs)
    # spark-submit hands the driver's stderr on through stdout; the traceback is still an error.
    start = next(i for i, e in enumerate(logs) if e.message.startswith("Traceback (most recent call last)"))
    end = next(i for i, e in enumerate(logs) if e.message == "ValueError: the input folder is empty")
    assert all(e.level == "error" for e in logs[start : end + 1])
    context.artifact("spark/logs/console.log")  # uploaded on failure too


def test_caps_lower_memory_and_cores_per_jvm_and_say_what_changed() -> None:
    requested = SparkResources(
        master="local[8]",
        local_threads=8,
        driver_memory_mb=4096,
        executor_memory_mb=2048,
        driver_cores=4,
        executor_cores=1,
        num_executors=3,
    )
    effective, capped = cap_resources(requested, max_memory_mb=3072, max_cores=2)
    assert effective.master == "local[2]" and effective.local_threads == 2
    assert (effective.driver_memory_mb, effective.executor_memory_mb) == (3072, 2048)
    assert (effective.driver_cores, effective.executor_cores, effective.num_executors) == (2, 1, 3)
    assert [c.describe() for c in capped] == [
        "master capped from local[8] to local[2] by max_cores=2",
        "spark.driver.memory capped from 4096m to 3072m by max_memory_mb=3072",
        "spark.driver.cores capped from 4 to 2 by max_cores=2",
    ]
    unchanged, none = cap_resources(requested, max_memory_mb=None, max_cores=None)
    assert unchanged == requested and none == []


def test_on_a_cluster_executors_unasked_for_are_sized_by_the_caps() -> None:
    requested = SparkResources(
        master="spark://127.0.0.1:7077",
        local_threads=None,
        driver_memory_mb=1024,
        executor_memory_mb=None,
        driver_cores=None,
        executor_cores=None,
        num_executors=None,
    )
    effective, capped = cap_resources(requested, max_memory_mb=768, max_cores=2)
    assert effective.master == requested.master
    assert (effective.driver_memory_mb, effective.executor_memory_mb, effective.executor_cores) == (768, 768, 2)
    assert [c.describe() for c in capped] == [
        "spark.driver.memory capped from 1024m to 768m by max_memory_mb=768",
        "spark.executor.cores capped from all of a worker's to 2 by max_cores=2",
        "spark.executor.memory capped from 1024m to 768m by max_memory_mb=768",
    ]
    # Caps above Spark's defaults leave the executor's memory to Spark; no caps leave everything.
    roomy, _ = cap_resources(requested, max_memory_mb=4096, max_cores=None)
    assert (roomy.executor_memory_mb, roomy.executor_cores) == (None, None)
    unchanged, none = cap_resources(requested, max_memory_mb=None, max_cores=None)
    assert unchanged == requested and none == []


@pytest.mark.parametrize(
    ("value", "mb"), [("2g", 2048), ("512m", 512), ("512", 512), (768, 768), ("1t", 1024 * 1024), ("2048k", 2)]
)
def test_memory_sizes_are_read_as_spark_reads_them(value: Any, mb: int) -> None:
    assert parse_memory_mb(value, "spec.driver_memory") == mb


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec: give exactly one of application"),
        ({"application": "job.sh"}, "spec.application: String should match pattern"),
        ({"application": "/nowhere/job.py"}, "spec.application: no file at /nowhere/job.py"),
        ({"module": "no_such_module_here"}, "spec.module: no module 'no_such_module_here'"),
        ({"module": "1bad"}, "spec.module: String should match pattern"),
        ({"application_artifact": {"task": "build"}}, "spec.application_artifact.name: Field required"),
        (
            {"application_artifact": {"task": "build", "name": "job.py"}},
            "spec.application_artifact: cannot fetch artifact 'job.py' of task 'build': no artifact",
        ),
        ({"module": "json", "master": "mesos"}, "spec.master: 'mesos' is not local"),
        ({"module": "json", "driver_memory": "lots"}, "spec.driver_memory: expected a size"),
        (
            {"module": "json", "driver_memory": "1g", "conf": {"spark.driver.memory": "2g"}},
            "spec.driver_memory and spec.conf['spark.driver.memory'] disagree",
        ),
        ({"module": "json", "conf": {"fs.s3a.endpoint": "x"}}, "spec.conf: 'fs.s3a.endpoint' is not a Spark setting"),
        ({"module": "json", "executor_cores": 0}, "spec.executor_cores: Input should be greater than or equal to 1"),
        ({"module": "json", "deploy_mode": "cluster"}, "spec.deploy_mode: cluster needs a cluster master"),
        ({"module": "json", "python_path": ["/nowhere/lib"]}, "spec.python_path: nothing at /nowhere/lib"),
        ({"module": "json", "log_level": "loud"}, "spec.log_level: Input should be"),
        ({"module": "json", "args": "--x"}, "spec.args: Input should be a valid list"),
        (
            {"module": "json", "delta": {"operation": "history", "table": "/t"}},
            "spec: a task is a Delta operation (delta) or a Spark job (module), not both",
        ),
    ],
)
def test_bad_spark_specs_name_the_field(harness: HarnessFactory, spec: dict[str, Any], message: str) -> None:
    context = harness({"key": "bad", "engine": "spark", **spec})
    with pytest.raises(EngineError) as caught:
        SparkEngine().run(context)
    assert str(caught.value).startswith(message), str(caught.value)
    assert context.processes == [], "nothing is started for a spec that is wrong"


def test_secret_looking_settings_are_hidden_in_the_config_event() -> None:
    conf = {
        "spark.hadoop.fs.s3a.secret.key": "s3cr3t",
        "spark.hadoop.fs.s3a.access.key": "AKIA",
        "spark.ssl.keyStorePassword": "pw",
        "spark.authenticate.secret": "x",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.port": "4040",
    }
    assert redact_conf(conf) == {
        "spark.hadoop.fs.s3a.secret.key": "***",
        "spark.hadoop.fs.s3a.access.key": "***",
        "spark.ssl.keyStorePassword": "***",
        "spark.authenticate.secret": "***",
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.port": "4040",
    }
