"""The DuckDB engine: lake tables (Delta, Parquet, S3), streamed results, history, the scan cap, cancel, timeout."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from control_room.services.demo import DEMO_WAREHOUSE_SPEC
from executor_agent.engines.base import EngineError, ResourceLimits
from executor_agent.engines.duckdb import DuckdbEngine
from tests.engines.harness import HarnessContext
from tests.engines.sql.conftest import MakeContext, assert_outcome, query_history
from tests.seaweedfs import SeaweedS3

# Cross product of 1e11 rows on one thread: runs until interrupted.
ENDLESS_QUERY = "select count(*) from range(1000000) a(x), range(100000) b(y) where x + y = -1"


def trips_table(rows: int = 1000) -> pa.Table:
    ids = list(range(rows))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "city": pa.array([("paris", "lyon", "nice")[i % 3] for i in ids]),
            "fare": pa.array([round(5 + (i % 17) * 1.25, 2) for i in ids], pa.float64()),
        }
    )


def run(context: HarnessContext) -> Any:
    return DuckdbEngine().run(context)


def test_lake_tables_are_queried_and_results_streamed_with_history(warehouse: Path, make_context: MakeContext) -> None:
    trips = trips_table()
    write_deltalake(warehouse / "trips", trips, partition_by=["city"])
    pq.write_table(pa.table({"city": ["paris", "lyon"], "country": ["FR", "FR"]}), warehouse / "cities.parquet")
    context = make_context(
        {
            "sql": """
                select city, count(*) as trips, sum(fare) as revenue from trips group by city order by city;
                select t.id, c.country from trips t join cities c using (city) where t.id < 10 order by t.id
            """,
            "output": {"formats": ["parquet", "csv"], "preview_rows": 2},
            "user": "analyst@demo",
        },
        limits=ResourceLimits(scanned_bytes_per_query=10**9),
    )

    result = run(context)

    assert_outcome(result, "succeeded")
    assert result.result["statements"] == 2
    # Independent check: the same aggregate computed by pyarrow on the Delta table read by deltalake.
    expected = (
        DeltaTable(str(warehouse / "trips"))
        .to_pyarrow_table()
        .group_by("city")
        .aggregate([("id", "count"), ("fare", "sum")])
        .sort_by("city")
    )
    got = pq.read_table(context.artifact("result-1.parquet").path)
    assert got.column("city").to_pylist() == expected.column("city").to_pylist()
    assert got.column("trips").to_pylist() == expected.column("id_count").to_pylist()
    assert got.column("revenue").to_pylist() == pytest.approx(expected.column("fare_sum").to_pylist())
    joined = pq.read_table(context.artifact("result-2.parquet").path)
    assert joined.column("id").to_pylist() == [i for i in range(10) if i % 3 != 2]
    preview = json.loads(context.artifact("result-2.preview.json").path.read_text())
    assert preview["rows"] == [[0, "FR"], [1, "FR"]] and preview["total_rows"] == 7 and preview["truncated"]
    for artifact in context.artifacts:
        assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact.sha256
    assert context.artifact("result-1.parquet").content_type == "application/vnd.apache.parquet"
    assert context.artifact("result-1.parquet").metadata["rows"] == 3

    history = query_history(context)
    assert [history[i]["state"] for i in (1, 2)] == ["finished", "finished"]
    first = history[1]
    assert first["rows"] == 3
    assert first["engine"] == "duckdb" and first["query_id"].startswith("duckdb_")
    assert first["query_user"] == "analyst@demo" and first["catalog"] == "warehouse" and first["schema_name"] == "main"
    assert first["elapsed_ms"] is not None and first["cpu_time_ms"] is not None
    assert first["bytes_read"] > 0 and first["peak_memory_bytes"] > 0
    # 1000 rows x (city: 32 nominal + fare: 8) bytes; the Delta table's row count comes from its log.
    assert first["estimated_scan_bytes"] == 1000 * (32 + 8)
    assert first["scan_cap_bytes"] == 10**9
    assert first["result_artifact"] == "result-1.parquet"
    # Each statement is reported running first, then finished.
    states = [row["state"] for op, payload in context.reports if op == "queries" for row in payload["queries"]]
    assert states == ["running", "finished", "running", "finished"]


def test_ddl_and_dml_record_changed_rows_without_result_artifacts(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context(
        {
            "sql": "create table sales as select range as id from range(50); "
            "insert into sales select range from range(50, 70); delete from sales where id < 5; "
            "select count(*) as n from sales"
        }
    )
    result = run(context)
    assert_outcome(result, "succeeded")
    history = query_history(context)
    assert [history[i]["rows"] for i in (1, 2, 3, 4)] == [50, 20, 5, 1]
    assert sorted(a.name for a in context.artifacts) == ["result-4.parquet", "result-4.preview.json"]
    assert pq.read_table(context.artifact("result-4.parquet").path).column("n").to_pylist() == [65]


def test_a_query_over_the_scan_cap_is_refused_before_it_runs(warehouse: Path, make_context: MakeContext) -> None:
    setup = make_context({"sql": "create table events as select range as id, range * 2 as v from range(100000);"
                                 "create table audit (id bigint, v bigint)"})  # fmt: skip
    assert_outcome(run(setup), "succeeded")
    context = make_context(
        {"sql": "insert into audit select id, v from events", "max_scan_bytes": 500_000},
        limits=ResourceLimits(scanned_bytes_per_query=10**9),
    )

    result = run(context)

    assert_outcome(result, "failed")
    assert result.error is not None
    # 100,000 rows x 2 bigint columns; the spec's lower cap wins over the claim's.
    assert "estimated scan of 1600000 bytes (1.5 MiB)" in result.error
    assert "scanned-bytes cap of 500000 bytes (488.3 KiB)" in result.error
    refused = query_history(context)[1]
    assert refused["state"] == "refused" and refused["error"] == result.error
    assert refused["estimated_scan_bytes"] == 1_600_000 and refused["scan_cap_bytes"] == 500_000
    assert context.artifacts == []
    # Refused before running: the insert never happened.
    with duckdb.connect(str(warehouse.parent / "warehouse.duckdb"), read_only=True) as check:
        assert check.execute("select count(*) from audit").fetchone() == (0,)


def test_cancel_interrupts_the_running_statement(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context({"sql": ENDLESS_QUERY, "session_properties": {"threads": 1}})
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run(context)))
    worker.start()
    context.wait_for_event("sql.statement.started")
    time.sleep(0.3)  # let the statement get going on DuckDB: the cancel must interrupt a running query
    requested = time.monotonic()
    context.cancel()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.monotonic() - requested < 5
    assert_outcome(outcome["result"], "cancelled")
    record = query_history(context)[1]
    assert record["state"] == "cancelled"
    assert "cancelled on request while running statement 1" in record["error"]


def test_the_runtime_limit_stops_a_statement_as_timed_out(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context({"sql": ENDLESS_QUERY, "session_properties": {"threads": 1}}, timeout_s=1)
    started = time.monotonic()
    result = run(context)
    assert time.monotonic() - started < 10
    assert_outcome(result, "timed_out")
    assert "runtime limit of 1 s" in (result.error or "")
    assert query_history(context)[1]["state"] == "timed_out"


def test_caps_become_duckdb_settings(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context(
        {"sql": "select current_setting('memory_limit') as memory, current_setting('threads') as threads",
         "session_properties": {"threads": 8}},
        limits=ResourceLimits(max_memory_mb=256, max_cores=1),
    )  # fmt: skip
    assert_outcome(run(context), "succeeded")
    row = pq.read_table(context.artifact("result.parquet").path).to_pylist()[0]
    assert row["threads"] == 1  # the cap wins over the larger request
    assert row["memory"].endswith(("MiB", "MB")) and float(row["memory"].split()[0]) <= 256
    assert context.events_of("sql.settings")[0].data["settings"] == {"threads": "1", "memory_limit": "256MB"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.sql: Field required"),
        ({"sql": "select 1", "tables": {"trips": "missing/place"}}, "tables.trips: nothing at"),
        ({"sql": "select 1", "tables": {"bad name": "x.parquet"}}, "tables.bad name: a table name must be"),
        ({"sql": "select 1", "session_properties": {"threads": "many"}}, "session_properties.threads: DuckDB refused"),
        ({"sql": "select 1", "max_scan_bytes": -1}, "spec.max_scan_bytes: Input should be greater than or equal to 0"),
        ({"sql": "select 1", "read_only": "yes"}, "spec.read_only: Input should be a valid boolean"),
        ({"sql": "selec 1"}, "sql: DuckDB cannot parse the script"),
    ],
)
def test_bad_specs_fail_naming_the_field(
    warehouse: Path, make_context: MakeContext, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(EngineError, match=message):
        run(make_context(spec))


def test_a_failing_statement_records_the_engine_error(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context({"sql": "select 1 as ok; select no_such_column from range(3)"})
    result = run(context)
    assert_outcome(result, "failed")
    assert 'Referenced column "no_such_column" not found' in (result.error or "")
    history = query_history(context)
    assert history[1]["state"] == "finished"
    assert history[2]["state"] == "failed" and "no_such_column" in history[2]["error"]


def test_delta_and_parquet_tables_on_s3_are_read_through_pyarrow(
    seaweedfs: SeaweedS3, warehouse: Path, make_context: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = "sql-engine-lake"
    boto3.client(
        "s3", endpoint_url=seaweedfs.endpoint_url, aws_access_key_id=seaweedfs.access_key_id,
        aws_secret_access_key=seaweedfs.secret_access_key, region_name=seaweedfs.region,
    ).create_bucket(Bucket=bucket)  # fmt: skip
    options = {
        "AWS_ENDPOINT_URL": seaweedfs.endpoint_url, "AWS_ACCESS_KEY_ID": seaweedfs.access_key_id,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_access_key, "AWS_REGION": seaweedfs.region,
        "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }  # fmt: skip
    trips = trips_table(300)
    write_deltalake(f"s3://{bucket}/trips", trips, storage_options=options, partition_by=["city"])
    from pyarrow import fs

    endpoint = seaweedfs.endpoint_url.split("://", 1)
    s3 = fs.S3FileSystem(access_key=seaweedfs.access_key_id, secret_key=seaweedfs.secret_access_key,
                         region=seaweedfs.region, endpoint_override=endpoint[1], scheme=endpoint[0])  # fmt: skip
    pq.write_table(
        pa.table({"city": ["paris", "nice"], "zone": [1, 3]}), f"{bucket}/zones/part-0.parquet", filesystem=s3
    )
    settings = {
        "S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "S3_ACCESS_KEY_ID": seaweedfs.access_key_id,
        "S3_SECRET_ACCESS_KEY": seaweedfs.secret_access_key,
        "S3_REGION": seaweedfs.region,
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"LAKEHOUSE_EXECUTOR_DUCKDB_{name}", value)
    context = make_context(
        {
            "sql": "select z.zone, count(*) as n, sum(t.fare) as revenue from trips t join zones z using (city) "
            "group by z.zone order by z.zone",
            "tables": {"trips": f"s3://{bucket}/trips", "zones": {"path": f"s3://{bucket}/zones", "format": "parquet"}},
        },
        limits=ResourceLimits(scanned_bytes_per_query=10**9),
    )

    result = run(context)

    assert_outcome(result, "succeeded")
    got = pq.read_table(context.artifact("result.parquet").path).to_pylist()
    for row, city in zip(got, ("paris", "nice"), strict=True):
        selected = trips.filter(pc.equal(trips.column("city"), city))
        assert row["n"] == selected.num_rows
        assert row["revenue"] == pytest.approx(pc.sum(selected.column("fare")).as_py())
    assert [row["zone"] for row in got] == [1, 3]
    # The Delta table's 300 rows (from its log) x the columns read (city 32 + fare 8), plus the zones scan.
    assert query_history(context)[1]["estimated_scan_bytes"] >= 300 * 40


def test_the_demo_warehouse_query_runs_on_duckdb(warehouse: Path, make_context: MakeContext) -> None:
    (task,) = DEMO_WAREHOUSE_SPEC["tasks"]  # type: ignore[misc]
    context = make_context(task, limits=ResourceLimits(scanned_bytes_per_query=10_737_418_240))
    assert_outcome(run(context), "succeeded")
    by_region = pq.read_table(context.artifact("result-2.parquet").path).to_pylist()
    assert [(r["region"], r["orders"]) for r in by_region] == [(f"region{i}", 25_000) for i in range(4)]
    amounts = [(i * 37) % 500 for i in range(100_000)]
    assert sum(r["revenue"] for r in by_region) == sum(amounts)
    detail = pq.read_table(context.artifact("result-3.parquet").path)
    assert detail.num_rows == sum(1 for a in amounts if a > 400)
    assert "result-3.csv" in {a.name for a in context.artifacts}


def test_a_result_over_the_output_cap_fails_and_leaves_no_artifact(warehouse: Path, make_context: MakeContext) -> None:
    context = make_context(
        {"sql": "select range as id, md5(range::varchar) as digest from range(300000)"},
        limits=ResourceLimits(max_output_bytes=50_000),
    )
    result = run(context)
    assert_outcome(result, "failed")
    assert "max_output_bytes cap of 50000 bytes" in (result.error or "")
    assert result.result["retryable"] is False
    assert context.artifacts == []
    assert not list((context.work_dir / "results").glob("*"))
    assert query_history(context)[1]["state"] == "failed"
