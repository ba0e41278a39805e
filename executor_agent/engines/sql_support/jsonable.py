"""Arrow result rows as JSON-safe values: the one encoding of result rows in previews and the rows API.

JSON has no decimals, dates, bytes or NaN, so those become strings a person (and a browser) can read:
decimals keep every digit (``"12.30"``), temporal values are ISO 8601, bytes are base64, NaN and the
infinities are ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (as Trino writes them), durations are seconds.
Structs become objects, lists stay lists, maps become objects when every key is a string and lists of
``[key, value]`` pairs otherwise.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa


def column_descriptions(schema: pa.Schema) -> list[dict[str, str]]:
    """``[{"name": …, "type": …}]`` for each column, the type in Arrow's notation (``int64``, ``decimal128(10, 2)``)."""
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def rows_as_json(data: pa.Table | pa.RecordBatch) -> list[list[Any]]:
    """The rows of a table or batch, each a list of JSON-safe values in column order."""
    columns = [column.to_pylist() for column in data.columns]
    if not columns:
        return [[] for _ in range(data.num_rows)]
    return [[json_value(value) for value in row] for row in zip(*columns, strict=True)]


def json_value(value: Any) -> Any:
    """One value (as pyarrow's ``to_pylist`` gives it) as a JSON-safe value."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            # pyarrow gives map values as a list of (key, value) tuples.
            if all(isinstance(key, str) for key, _ in value):
                return {key: json_value(item) for key, item in value}
            return [[json_value(key), json_value(item)] for key, item in value]
        return [json_value(item) for item in value]
    return str(value)
