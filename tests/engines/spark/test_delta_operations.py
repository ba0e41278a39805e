"""Delta table operations through delta-rs, run by the Spark engine (and the ``delta`` engine name)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from executor_agent.engines.base import EngineError, ResourceLimits
from executor_agent.engines.delta import DeltaEngine
from executor_agent.engines.spark import SparkEngine
from tests.engines.spark.conftest import HarnessFactory, refused_report

CUSTOMERS = [
    {"id": 1, "name": "Ada", "tier": "gold"},
    {"id": 2, "name": "Grace", "tier": "silver"},
    {"id": 3, "name": "Edsger", "tier": "bronze"},
]


def delta_task(harness: HarnessFactory, delta: dict[str, Any], **kwargs: Any) -> Any:
    context = harness({"key": f"delta-{delta['operation']}", "engine": "spark", "delta": delta}, **kwargs)
    return context, SparkEngine().run(context)


def rows_by_id(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def create_customers(harness: HarnessFactory, table: Path) -> None:
    _, result = delta_task(
        harness,
        {
            "operation": "create",
            "table": str(table),
            "schema": [
                {"name": "id", "type": "long", "nullable": False},
                {"name": "name", "type": "string"},
                {"name": "tier", "type": "string"},
            ],
        },
    )
    assert result.outcome == "succeeded", result.error
    _, result = delta_task(harness, {"operation": "append", "table": str(table), "source": {"rows": CUSTOMERS}})
    assert result.outcome == "succeeded", result.error


def test_merge_then_time_travel_returns_exactly_the_previous_rows(harness: HarnessFactory, tmp_path: Path) -> None:
    table = tmp_path / "customers"
    create_customers(harness, table)
    before = DeltaTable(str(table)).version()

    changes = tmp_path / "changes.parquet"
    pq.write_table(
        pa.table({"id": [2, 4], "name": ["Grace H.", "Barbara"], "tier": ["gold", "silver"]}), changes
    )  # Parquet gives int64 here; the table's id is a non-null long: the engine conforms the source
    context, result = delta_task(
        harness, {"operation": "merge", "table": str(table), "keys": ["id"], "source": {"path": str(changes)}}
    )
    assert result.outcome == "succeeded", result.error
    assert result.result["version"] == before + 1
    assert result.result["metrics"]["num_target_rows_updated"] == 1
    assert result.result["metrics"]["num_target_rows_inserted"] == 1

    # Checked with deltalake directly, not through the engine.
    assert rows_by_id(DeltaTable(str(table), version=before).to_pyarrow_table()) == CUSTOMERS
    assert rows_by_id(DeltaTable(str(table)).to_pyarrow_table()) == [
        {"id": 1, "name": "Ada", "tier": "gold"},
        {"id": 2, "name": "Grace H.", "tier": "gold"},
        {"id": 3, "name": "Edsger", "tier": "bronze"},
        {"id": 4, "name": "Barbara", "tier": "silver"},
    ]

    # The engine's own time travel (read at a version, JSON artifact) returns the same previous rows.
    reader, read = delta_task(harness, {"operation": "read", "table": str(table), "version": before, "format": "json"})
    assert read.outcome == "succeeded", read.error
    assert read.result["version"] == before
    artifact = reader.artifact(f"customers-v{before}.json")
    assert sorted(json.loads(artifact.path.read_text()), key=lambda r: r["id"]) == CUSTOMERS
    assert artifact.content_type == "application/json"

    # ...and at the timestamp the history gives that version's commit. The log files' modification
    # times trail those timestamps (by a millisecond, or by seconds on a slow store): they must not
    # decide which version a timestamp opens, so here they are pushed 5 s later.
    for log_file in (table / "_delta_log").glob("*.json"):
        stat = log_file.stat()
        os.utime(log_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    commit_ms = next(c["timestamp"] for c in DeltaTable(str(table)).history() if c["version"] == before)
    at = datetime.fromtimestamp(commit_ms / 1000, tz=UTC).isoformat()
    reader, read = delta_task(harness, {"operation": "read", "table": str(table), "timestamp": at})
    assert read.outcome == "succeeded", read.error
    assert read.result["version"] == before
    with pytest.raises(EngineError, match=r"timestamp: 2001-01-01T00:00:00\+00:00 is before the table"):
        delta_task(harness, {"operation": "read", "table": str(table), "timestamp": "2001-01-01T00:00:00"})
    parquet = reader.artifact(f"customers-v{before}.parquet")
    assert rows_by_id(pq.read_table(parquet.path)) == CUSTOMERS

    lineage = context.reports[-1]
    assert lineage[0] == "lineage"
    names = {d["name"]: d for d in lineage[1]["datasets"]}
    assert names[str(table)]["columns"] == [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "tier", "type": "string"},
    ]
    assert names[str(changes)]["namespace"] == "file"
    assert lineage[1]["edges"] == [
        {
            "upstream": {"namespace": "file", "name": str(changes)},
            "downstream": {"namespace": "file", "name": str(table)},
            "job_name": "delta.merge",
            # delta-rs writes the source's columns into the table's columns of the same name.
            "column_lineage": [{"upstream_column": c, "downstream_column": c} for c in ("id", "name", "tier")],
        }
    ]


def test_overwrite_delete_history_and_partitions(harness: HarnessFactory, tmp_path: Path) -> None:
    table = tmp_path / "events"
    rows = [{"day": "2026-01-01", "n": i} for i in range(3)] + [{"day": "2026-01-02", "n": i} for i in range(2)]
    _, result = delta_task(
        harness,
        {"operation": "create", "table": str(table), "source": {"rows": rows}, "partition_by": ["day"]},
    )
    assert result.outcome == "succeeded", result.error
    assert DeltaTable(str(table)).metadata().partition_columns == ["day"]

    # Overwrite only one partition (replaceWhere), leaving the other as it was.
    _, result = delta_task(
        harness,
        {
            "operation": "overwrite",
            "table": str(table),
            "predicate": "day = '2026-01-02'",
            "source": {"rows": [{"day": "2026-01-02", "n": 99}]},
        },
    )
    assert result.outcome == "succeeded", result.error
    data = DeltaTable(str(table)).to_pyarrow_table().to_pylist()
    assert sorted((r["day"], r["n"]) for r in data) == [
        ("2026-01-01", 0),
        ("2026-01-01", 1),
        ("2026-01-01", 2),
        ("2026-01-02", 99),
    ]

    _, result = delta_task(harness, {"operation": "delete", "table": str(table), "predicate": "n < 2"})
    assert result.outcome == "succeeded", result.error
    assert result.result["metrics"]["num_deleted_rows"] == 2
    assert sorted(r["n"] for r in DeltaTable(str(table)).to_pyarrow_table().to_pylist()) == [2, 99]

    context, result = delta_task(harness, {"operation": "history", "table": str(table)})
    assert result.outcome == "succeeded", result.error
    assert [c["operation"] for c in result.result["commits"]] == ["DELETE", "WRITE", "WRITE"]
    history = json.loads(context.artifact("history.json").path.read_text())
    assert [c["version"] for c in history] == [2, 1, 0]


def test_optimize_compacts_and_vacuum_removes_unreferenced_files(harness: HarnessFactory, tmp_path: Path) -> None:
    table = tmp_path / "small_files"
    for start in range(0, 40, 10):
        write_deltalake(str(table), pa.table({"id": list(range(start, start + 10))}), mode="append")
    assert len(DeltaTable(str(table)).file_uris()) == 4

    _, result = delta_task(harness, {"operation": "optimize", "table": str(table)})
    assert result.outcome == "succeeded", result.error
    assert result.result["metrics"]["numFilesRemoved"] == 4
    assert len(DeltaTable(str(table)).file_uris()) == 1

    files_before = {p.name for p in table.glob("*.parquet")}
    context, result = delta_task(
        harness,
        {"operation": "vacuum", "table": str(table), "retention_hours": 0, "enforce_retention_duration": False},
    )
    assert result.outcome == "succeeded", result.error
    assert result.result["removed_files"] == 4
    assert len(files_before) - len({p.name for p in table.glob("*.parquet")}) == 4
    assert sorted(DeltaTable(str(table)).to_pyarrow_table().column("id").to_pylist()) == list(range(40))
    assert context.events_of("delta.vacuumed")[0].data["count"] == 4


def test_vacuum_below_the_retention_minimum_is_refused_with_the_field_named(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    table = tmp_path / "guarded"
    write_deltalake(str(table), pa.table({"id": [1]}))
    with pytest.raises(EngineError, match=r"spec\.delta\.retention_hours"):
        delta_task(harness, {"operation": "vacuum", "table": str(table), "retention_hours": 1})


def test_a_write_over_the_output_cap_is_rolled_back(harness: HarnessFactory, tmp_path: Path) -> None:
    table = tmp_path / "capped"
    create_customers(harness, table)
    version = DeltaTable(str(table)).version()
    big = [{"id": 100 + i, "name": "x" * 200 + str(i), "tier": "t"} for i in range(2000)]
    context = harness(
        {
            "key": "append-big",
            "engine": "spark",
            "delta": {"operation": "append", "table": str(table), "source": {"rows": big}},
        },
        limits=ResourceLimits(max_output_bytes=4096),
    )
    with pytest.raises(EngineError, match=r"over the max_output_bytes cap of 4096; the table was restored"):
        SparkEngine().run(context)
    assert context.events_of("limits.output_exceeded")[0].level == "error"
    latest = DeltaTable(str(table))
    assert latest.version() == version + 2  # the append, then the restore
    assert rows_by_id(latest.to_pyarrow_table()) == CUSTOMERS


def test_lineage_that_cannot_be_recorded_does_not_fail_a_committed_write(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    table = tmp_path / "audit"
    context = harness(
        {
            "key": "create",
            "engine": "delta",
            "delta": {"operation": "create", "table": str(table), "source": {"rows": CUSTOMERS}},
        },
        reporter=refused_report,  # an unreachable control plane would keep the report spooled, not refuse it
    )
    result = DeltaEngine().run(context)  # the "delta" engine name runs the same operations
    assert result.outcome == "succeeded"
    assert DeltaTable(str(table)).version() == 0
    failed = context.events_of("lineage.failed")
    assert failed and failed[0].level == "warning" and "refused" in failed[0].message


@pytest.mark.parametrize(
    ("delta", "field"),
    [
        ({"table": "/tmp/x"}, "spec.delta.operation"),
        ({"operation": "upsert", "table": "/tmp/x"}, "spec.delta.operation"),
        ({"operation": "merge", "table": "/tmp/x", "source": {"rows": []}}, "spec.delta.keys"),
        ({"operation": "merge", "table": "/tmp/x", "keys": ["id"]}, "spec.delta.source"),
        ({"operation": "append", "table": "/tmp/x", "source": {"rows": [], "path": "/a"}}, "spec.delta.source"),
        ({"operation": "delete", "table": "/tmp/x"}, "spec.delta.predicate"),
        ({"operation": "read", "table": "/tmp/x", "version": 1, "timestamp": "2026-01-01"}, "spec.delta"),
        ({"operation": "read", "table": "/tmp/x", "timestamp": "yesterday"}, "spec.delta.timestamp"),
        ({"operation": "create", "table": "/tmp/x"}, "spec.delta"),
        (
            {"operation": "create", "table": "/tmp/x", "schema": [{"name": "a", "type": "uuid"}]},
            "spec.delta.schema[0].type",
        ),
        ({"operation": "history", "table": "/tmp/x", "limit": "ten"}, "spec.delta.limit"),
    ],
)
def test_bad_delta_specs_name_the_field(harness: HarnessFactory, delta: dict[str, Any], field: str) -> None:
    with pytest.raises(EngineError) as caught:
        SparkEngine().run(harness({"key": "bad", "engine": "spark", "delta": delta}))
    assert str(caught.value).startswith(field), str(caught.value)


def test_operations_on_a_missing_table_say_to_create_it(harness: HarnessFactory, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"spec\.delta\.table: no Delta table at .*create it first"):
        delta_task(harness, {"operation": "history", "table": str(tmp_path / "nope")})


def test_a_source_that_does_not_match_the_table_is_refused(harness: HarnessFactory, tmp_path: Path) -> None:
    table = tmp_path / "strict"
    create_customers(harness, table)
    extra = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"id": [9], "name": ["Z"], "tier": ["t"], "email": ["z@example.com"]}), extra)
    with pytest.raises(EngineError, match=r"column\(s\) email not in the table \(set schema_mode to merge"):
        delta_task(harness, {"operation": "append", "table": str(table), "source": {"path": str(extra)}})
    _, result = delta_task(
        harness,
        {"operation": "append", "table": str(table), "schema_mode": "merge", "source": {"path": str(extra)}},
    )
    assert result.outcome == "succeeded", result.error
    assert "email" in DeltaTable(str(table)).schema().to_arrow().names
