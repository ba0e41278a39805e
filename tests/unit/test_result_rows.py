"""The rows API's cell encoding (services/result_rows.py) matches the contract's rules and the agent's previews."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pyarrow as pa

from control_room.services.result_rows import describe_columns, json_cell, json_rows
from executor_agent.engines.sql_support.jsonable import rows_as_json


def sample() -> pa.Table:
    return pa.table(
        {
            "amount": pa.array([Decimal("12.30"), None], pa.decimal128(10, 2)),
            "ratio": pa.array([float("nan"), float("-inf")], pa.float64()),
            "day": pa.array([dt.date(2026, 11, 26), None]),
            "at": pa.array([dt.datetime(2026, 11, 26, 8, 30, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")),
            "raw": pa.array([b"\x00\x01", b""]),
            "attrs": pa.array([[("a", 1)], []], pa.map_(pa.string(), pa.int64())),
            "by_id": pa.array([[(1, "x")], [(2, "y")]], pa.map_(pa.int64(), pa.string())),
            "point": pa.array([{"x": 1.5, "y": None}, None]),
            "took": pa.array([dt.timedelta(seconds=1.5), None], pa.duration("us")),
            "tags": pa.array([["a", "b"], []]),
        }
    )


def test_cells_become_json_safe_values() -> None:
    rows = json_rows(sample())
    assert rows[0] == [
        "12.30", "NaN", "2026-11-26", "2026-11-26T08:30:00+00:00", "AAE=", {"a": 1}, [[1, "x"]],
        {"x": 1.5, "y": None}, 1.5, ["a", "b"],
    ]  # fmt: skip
    assert rows[1][:3] == [None, "-Infinity", None]
    json.dumps(rows, allow_nan=False)
    assert json_cell(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_repeated_column_names_keep_every_column() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["b"])], names=["x", "x"])
    assert json_rows(table) == [[1, "b"]]
    assert describe_columns(table.schema) == [{"name": "x", "type": "int64"}, {"name": "x", "type": "string"}]


def test_the_rows_api_and_the_agents_previews_encode_alike() -> None:
    # Two sides of the contract, two implementations: the same table must read the same on both.
    table = sample()
    assert json_rows(table) == rows_as_json(table)
    assert json_rows(pa.table({})) == rows_as_json(pa.table({}))
