"""Trino's typed ``columns`` (``type`` + ``typeSignature``) and its JSON value encoding, for Arrow results.

The client protocol sends each column as ``{"name", "type", "typeSignature": {"rawType", "arguments"}}``
where an argument is ``{"kind": "LONG" | "TYPE" | "NAMED_TYPE", "value": …}``; values travel as JSON:
numbers for integers and floating point (NaN and the infinities as strings), decimals as strings,
temporal values as ``YYYY-MM-DD HH:MM:SS.fff`` text, varbinary as base64, arrays as lists, rows as
positional lists and maps as objects.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

UNBOUNDED_VARCHAR = 2_147_483_647
Encoder = Callable[[Any], Any]


def _simple(raw: str) -> dict[str, Any]:
    return {"rawType": raw, "arguments": []}


def _long(raw: str, *values: int) -> dict[str, Any]:
    return {"rawType": raw, "arguments": [{"kind": "LONG", "value": v} for v in values]}


def trino_type(arrow_type: pa.DataType) -> tuple[str, dict[str, Any]]:
    """(type name, typeSignature) of the Trino type that carries an Arrow type."""
    t = arrow_type
    if pa.types.is_boolean(t):
        return "boolean", _simple("boolean")
    for check, name in ((pa.types.is_int8, "tinyint"), (pa.types.is_int16, "smallint"),
                        (pa.types.is_int32, "integer"), (pa.types.is_int64, "bigint"),
                        (pa.types.is_uint8, "smallint"), (pa.types.is_uint16, "integer"),
                        (pa.types.is_uint32, "bigint")):  # fmt: skip
        if check(t):
            return name, _simple(name)
    if pa.types.is_uint64(t):
        return "decimal(20,0)", _long("decimal", 20, 0)
    if pa.types.is_float32(t):
        return "real", _simple("real")
    if pa.types.is_floating(t):
        return "double", _simple("double")
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})", _long("decimal", t.precision, t.scale)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "varchar", _long("varchar", UNBOUNDED_VARCHAR)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "varbinary", _simple("varbinary")
    if pa.types.is_date(t):
        return "date", _simple("date")
    if pa.types.is_time(t):
        return "time(6)", _long("time", 6)
    if pa.types.is_timestamp(t):
        precision = _precision(t.unit)
        if t.tz is not None:
            return f"timestamp({precision}) with time zone", _long("timestamp with time zone", precision)
        return f"timestamp({precision})", _long("timestamp", precision)
    if pa.types.is_duration(t):
        return "interval day to second", _simple("interval day to second")
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        name, signature = trino_type(t.value_type)
        return f"array({name})", {"rawType": "array", "arguments": [{"kind": "TYPE", "value": signature}]}
    if pa.types.is_map(t):
        key_name, key_signature = trino_type(t.key_type)
        value_name, value_signature = trino_type(t.item_type)
        return f"map({key_name}, {value_name})", {
            "rawType": "map",
            "arguments": [{"kind": "TYPE", "value": key_signature}, {"kind": "TYPE", "value": value_signature}],
        }
    if pa.types.is_struct(t):
        names, arguments = [], []
        for child in t:
            child_name, child_signature = trino_type(child.type)
            names.append(f"{child.name} {child_name}")
            arguments.append(
                {"kind": "NAMED_TYPE", "value": {"fieldName": {"name": child.name}, "typeSignature": child_signature}}
            )
        return f"row({', '.join(names)})", {"rawType": "row", "arguments": arguments}
    if pa.types.is_null(t):
        return "unknown", _simple("unknown")
    return "varchar", _long("varchar", UNBOUNDED_VARCHAR)


def column(name: str, arrow_type: pa.DataType) -> dict[str, Any]:
    """One entry of the protocol's ``columns``."""
    type_name, signature = trino_type(arrow_type)
    return {"name": name, "type": type_name, "typeSignature": signature}


def _precision(unit: str) -> int:
    return {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]


def _fraction(microseconds: int, precision: int) -> str:
    if precision == 0:
        return ""
    digits = f"{microseconds:06d}{'0' * max(precision - 6, 0)}"
    return "." + digits[:precision]


def _double(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _interval(value: dt.timedelta) -> str:
    total_ms = int(value / dt.timedelta(milliseconds=1))
    sign = "-" if total_ms < 0 else ""
    total_ms = abs(total_ms)
    days, rest = divmod(total_ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{sign}{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def encoder(arrow_type: pa.DataType) -> Encoder | None:
    """A function turning one ``to_pylist`` value into its protocol JSON value; None when no change is needed."""
    t = arrow_type
    if pa.types.is_boolean(t) or (pa.types.is_integer(t) and not pa.types.is_uint64(t)):
        return None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_null(t):
        return None
    if pa.types.is_uint64(t):
        return str
    if pa.types.is_floating(t):
        return _double
    if pa.types.is_decimal(t):
        return lambda value: format(value, "f") if isinstance(value, Decimal) else str(value)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return lambda value: base64.b64encode(value).decode("ascii")
    if pa.types.is_date(t):
        return lambda value: value.isoformat()
    if pa.types.is_time(t):
        return lambda value: value.strftime("%H:%M:%S") + _fraction(value.microsecond, 6)
    if pa.types.is_timestamp(t):
        precision = _precision(t.unit)
        if t.tz is not None:
            return lambda value: (
                value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                + _fraction(value.microsecond, precision)
                + " UTC"
            )
        return lambda value: value.strftime("%Y-%m-%d %H:%M:%S") + _fraction(value.microsecond, precision)
    if pa.types.is_duration(t):
        return _interval
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = encoder(t.value_type)
        if inner is None:
            return None
        return lambda value: [inner(v) if v is not None else None for v in value]
    if pa.types.is_map(t):
        key_encoder = encoder(t.key_type) or (lambda v: v)
        value_encoder = encoder(t.item_type) or (lambda v: v)
        return lambda value: {str(key_encoder(k)): (value_encoder(v) if v is not None else None) for k, v in value}
    if pa.types.is_struct(t):
        fields = [(child.name, encoder(child.type)) for child in t]
        return lambda value: [
            (enc(value[name]) if enc is not None and value[name] is not None else value[name]) for name, enc in fields
        ]
    return str  # uuid, intervals, anything else: its text form


def encode_batch(batch: pa.RecordBatch) -> list[list[Any]]:
    """The batch's rows as protocol ``data``: a list of rows, each a list of JSON values."""
    columns: list[list[Any]] = []
    for field, array in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            # Python datetimes stop at microseconds; the protocol text keeps the declared precision.
            array = array.cast(pa.timestamp("us", tz=field.type.tz))
        values = array.to_pylist()
        encode = encoder(field.type)
        if encode is not None:
            values = [encode(v) if v is not None else None for v in values]
        columns.append(values)
    if not columns:
        return [[] for _ in range(batch.num_rows)]
    return [list(row) for row in zip(*columns, strict=True)]
