"""The result writer: row groups of bounded size, the preview, CSV, the output cap; JSON-safe values."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from executor_agent.engines.base import EngineError
from executor_agent.engines.sql_support.jsonable import rows_as_json
from executor_agent.engines.sql_support.results import (
    OutputCapExceeded,
    OutputOptions,
    ResultWriter,
    options_from_spec,
)

SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string())])


def batches(total: int, size: int) -> list[pa.RecordBatch]:
    out = []
    for start in range(0, total, size):
        ids = list(range(start, min(start + size, total)))
        out.append(pa.RecordBatch.from_arrays([pa.array(ids), pa.array([f"row {i}" for i in ids])], schema=SCHEMA))
    return out


def test_batches_become_row_groups_of_the_configured_size_with_a_preview(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, "result", SCHEMA, OutputOptions(formats=("parquet", "csv"), preview_rows=5,
                                                                    row_group_rows=1000))  # fmt: skip
    writer.write_all(batches(2500, 333))
    files = writer.close()

    assert files.rows == 2500
    assert [f.name for f in files.files] == ["result.parquet", "result.preview.json", "result.csv"]
    metadata = pq.ParquetFile(tmp_path / "result.parquet").metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [1000, 1000, 500]
    assert files.row_groups == 3
    table = pq.read_table(tmp_path / "result.parquet")
    assert table.column("id").to_pylist() == list(range(2500))
    preview = json.loads((tmp_path / "result.preview.json").read_text())
    assert preview == {
        "columns": [{"name": "id", "type": "int64"}, {"name": "label", "type": "string"}],
        "rows": [[i, f"row {i}"] for i in range(5)],
        "total_rows": 2500,
        "truncated": True,
    }
    assert pa_csv.read_csv(tmp_path / "result.csv").num_rows == 2500


def test_an_empty_result_is_a_valid_parquet_file_with_the_schema(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, "empty", SCHEMA, OutputOptions())
    files = writer.close()
    assert files.rows == 0
    assert pq.read_table(tmp_path / "empty.parquet").schema == SCHEMA
    assert json.loads((tmp_path / "empty.preview.json").read_text())["truncated"] is False


def test_growing_past_the_output_cap_fails_and_abort_leaves_no_partial_files(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, "big", SCHEMA, OutputOptions(row_group_rows=1000), max_output_bytes=2000)
    with pytest.raises(OutputCapExceeded, match="max_output_bytes cap of 2000 bytes"):
        writer.write_all(batches(10_000, 1000))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_csv_refuses_nested_columns_by_name(tmp_path: Path) -> None:
    schema = pa.schema([("tags", pa.list_(pa.string()))])
    with pytest.raises(EngineError, match=r"nested column\(s\) tags \(list<item: string>\)"):
        ResultWriter(tmp_path, "nested", schema, OutputOptions(formats=("parquet", "csv")))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("csv", "output: must be an object"),
        ({"formats": ["xlsx"]}, "output.formats: unknown format"),
        ({"preview_rows": -1}, "output.preview_rows: must be a whole number between 0 and 10000"),
        ({"row_group_rows": 10}, "output.row_group_rows: must be a whole number between 1000"),
        ({"rows": 5}, "output: unknown field"),
    ],
)
def test_output_options_errors_name_the_field(output: object, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        options_from_spec(output)


def test_values_become_json_safe_text_where_json_has_no_type() -> None:
    table = pa.table(
        {
            "amount": pa.array([Decimal("12.30")], pa.decimal128(10, 2)),
            "ratio": pa.array([float("nan")], pa.float64()),
            "day": pa.array([dt.date(2026, 11, 26)]),
            "at": pa.array([dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "raw": pa.array([b"\x00\x01"]),
            "attrs": pa.array([[("a", 1)]], pa.map_(pa.string(), pa.int64())),
            "point": pa.array([{"x": 1.5, "y": None}]),
            "took": pa.array([dt.timedelta(seconds=1.5)], pa.duration("us")),
        }
    )
    assert rows_as_json(table) == [
        ["12.30", "NaN", "2026-11-26", "2026-11-26T08:30:00+00:00", "AAE=", {"a": 1}, {"x": 1.5, "y": None}, 1.5]
    ]
    json.dumps(rows_as_json(table), allow_nan=False)
