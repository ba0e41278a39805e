"""Rows of a Parquet query result as the rows API sends them (JSON-safe cells, Arrow type names).

The wire encoding is the contract's (``QueryResultRows``): decimals keep every digit as strings,
temporal values are ISO 8601, bytes are base64, NaN and the infinities are ``"NaN"``/``"Infinity"``/
``"-Infinity"``, durations are seconds, structs are objects and maps are objects when every key is a
string (else ``[key, value]`` pairs). Written for the control plane; the agent encodes its previews
on its own side of the contract.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the callers hold the tables; dashboards only need json_cell, and a replica's start no Arrow
    import pyarrow as pa


def describe_columns(schema: pa.Schema) -> list[dict[str, str]]:
    """Name and Arrow type (``int64``, ``decimal128(10, 2)``) of each column."""
    return [{"name": column.name, "type": str(column.type)} for column in schema]


def json_rows(table: pa.Table) -> list[list[Any]]:
    """Each row of ``table`` as a list of JSON-safe cells in column order."""
    if table.num_columns == 0:
        return [[] for _ in range(table.num_rows)]
    # Column by column: SQL results may repeat a column name, which records keyed by name would merge.
    cells = [[json_cell(value) for value in column.to_pylist()] for column in table.columns]
    return [list(row) for row in zip(*cells, strict=True)]


def _json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return value


def _json_pairs(pairs: list[tuple[Any, Any]]) -> Any:
    # Arrow gives a map cell as (key, value) tuples: an object when JSON allows it.
    if all(isinstance(key, str) for key, _ in pairs):
        return {key: json_cell(item) for key, item in pairs}
    return [[json_cell(key), json_cell(item)] for key, item in pairs]


def json_cell(value: Any) -> Any:
    """One cell as Arrow's ``to_pylist`` gives it, made JSON-safe."""
    match value:
        case None | bool() | int() | str():
            return value
        case float():
            return _json_float(value)
        case Decimal() | uuid.UUID():
            return str(value)
        case dt.datetime() | dt.date() | dt.time():
            return value.isoformat()
        case dt.timedelta():
            return value.total_seconds()
        case bytes() | bytearray() | memoryview():
            return base64.b64encode(bytes(value)).decode("ascii")
        case dict():
            return {str(key): json_cell(item) for key, item in value.items()}
        case list() | tuple() if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return _json_pairs(list(value))
        case list() | tuple():
            return [json_cell(item) for item in value]
    return str(value)
