"""EXPLAIN as Trino answers it, planned by DuckDB: text plans, ``TYPE VALIDATE`` and ``TYPE IO, FORMAT JSON``.

``EXPLAIN (TYPE IO, FORMAT JSON)`` returns one ``Query Plan`` varchar holding Trino's IoPlan document:
``{"inputTableColumnInfos": [{"table": {"catalog", "schemaTable": {"schema", "table"}}, "constraint":
{"none", "columnConstraints"}, "estimate": {"outputRowCount", "outputSizeInBytes", "cpuCost",
"maxMemory", "networkCost"}}], "estimate": {…}}``, unknown figures as the string ``"NaN"``.
A table's estimate here is its row count x the bytes of the columns the scan reads (fixed-width types
by size, varchar by the mean length of a sample of up to 1,000 values), like a connector with stats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

_EXPLAIN = re.compile(
    r"^\s*EXPLAIN\s*(?:\((?P<options>[^)]*)\))?\s*(?P<analyze>ANALYZE(?:\s+VERBOSE)?\s+)?(?P<statement>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_FIXED = {
    "BOOLEAN": 1, "TINYINT": 1, "SMALLINT": 2, "INTEGER": 4, "BIGINT": 8, "HUGEINT": 16, "FLOAT": 4,
    "DOUBLE": 8, "DATE": 4, "TIME": 8, "TIMESTAMP": 8, "TIMESTAMP WITH TIME ZONE": 8, "UUID": 16,
}  # fmt: skip
NAN = "NaN"


@dataclass(frozen=True)
class ExplainRequest:
    """A parsed EXPLAIN: its TYPE and FORMAT options, ANALYZE, and the statement explained."""

    type: str
    format: str
    analyze: bool
    statement: str


def parse_explain(sql: str) -> ExplainRequest | None:
    """The EXPLAIN request in ``sql``, or None when the statement is not an EXPLAIN."""
    match = _EXPLAIN.match(sql)
    if match is None:
        return None
    options = {"TYPE": "DISTRIBUTED", "FORMAT": "TEXT"}
    for option in filter(None, (o.strip() for o in (match.group("options") or "").split(","))):
        parts = option.upper().split()
        if len(parts) != 2 or parts[0] not in options:
            raise ValueError(f"line 1:1: Invalid EXPLAIN option: {option}")
        options[parts[0]] = parts[1]
    return ExplainRequest(options["TYPE"], options["FORMAT"], bool(match.group("analyze")), match.group("statement"))


def text_plan(cursor: duckdb.DuckDBPyConnection, request: ExplainRequest) -> str:
    """A text plan (DuckDB's) for the TEXT/GRAPHVIZ forms; EXPLAIN ANALYZE runs the statement."""
    keyword = "explain analyze" if request.analyze else "explain"
    rows = cursor.execute(f"{keyword} {request.statement}").fetchall()
    return "\n".join(str(row[-1]) for row in rows)


def io_plan(
    cursor: duckdb.DuckDBPyConnection, request: ExplainRequest, without_stats: frozenset[str] = frozenset()
) -> str:
    """Trino's IoPlan JSON for the statement (see the module docstring); tables never analyzed give NaN."""
    rows = cursor.execute(f"explain (format json) {request.statement}").fetchall()
    infos: list[dict[str, Any]] = []
    for row in rows:
        if row[0] != "physical_plan":
            continue
        for node in _leaves(json.loads(row[1])):
            info = node.get("extra_info") or {}
            if "Table" in info:
                infos.append(_table_info(cursor, str(info["Table"]), info, without_stats))
    known = [i["estimate"]["outputRowCount"] for i in infos if i["estimate"]["outputRowCount"] != NAN]
    root_rows = sum(known) if infos and len(known) == len(infos) else NAN
    document = {
        "inputTableColumnInfos": infos,
        "estimate": {
            "outputRowCount": root_rows,
            "outputSizeInBytes": NAN,
            "cpuCost": NAN,
            "maxMemory": NAN,
            "networkCost": NAN,
        },
    }
    return json.dumps(document, indent=2)


def _leaves(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _leaves(item)
        return
    children = node.get("children") or []
    if not children:
        yield node
    for child in children:
        yield from _leaves(child)


def split_qualified(name: str) -> list[str]:
    """``db."default".t`` -> ``["db", "default", "t"]``: dots inside double quotes do not split."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', name)
    return [quoted.replace('""', '"') if quoted else plain for quoted, plain in parts]


def _table_info(
    cursor: duckdb.DuckDBPyConnection, qualified: str, info: Mapping[str, Any], without_stats: frozenset[str]
) -> dict[str, Any]:
    catalog, schema, table = [*split_qualified(qualified), "", "", ""][:3]
    name = {"catalog": catalog, "schemaTable": {"schema": schema, "table": table}}
    constraint = {"none": False, "columnConstraints": []}
    if f"{catalog}.{schema}.{table}" in without_stats:
        unknown = {
            "outputRowCount": NAN,
            "outputSizeInBytes": NAN,
            "cpuCost": NAN,
            "maxMemory": NAN,
            "networkCost": NAN,
        }
        return {"table": name, "constraint": constraint, "estimate": unknown}
    found = cursor.execute(
        "select estimated_size from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
        [catalog, schema, table],
    ).fetchone()
    rows = int(found[0]) if found and found[0] is not None else 0
    types = dict(
        cursor.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = ? and schema_name = ? and table_name = ?",
            [catalog, schema, table],
        ).fetchall()
    )
    projections = info.get("Projections") or []
    read = [projections] if isinstance(projections, str) else list(projections)
    filters = str(info.get("Filters") or "")
    read += [c for c in types if c not in read and re.search(rf"\b{re.escape(c)}\b", filters)]
    width = sum(_width(cursor, f'"{catalog}"."{schema}"."{table}"', c, types.get(c, "")) for c in read if c in types)
    size = float(rows * width)
    return {
        "table": name,
        "constraint": constraint,
        "estimate": {
            "outputRowCount": float(rows),
            "outputSizeInBytes": size,
            "cpuCost": size,
            "maxMemory": 0.0,
            "networkCost": 0.0,
        },
    }


def _width(cursor: duckdb.DuckDBPyConnection, table: str, column: str, data_type: str) -> float:
    text = data_type.upper()
    if text in _FIXED:
        return _FIXED[text]
    if text.startswith("DECIMAL"):
        return 8
    if text in ("VARCHAR", "BLOB"):
        length = "strlen" if text == "VARCHAR" else "octet_length"
        found = cursor.execute(
            f'select avg({length}("{column}")) from (select "{column}" from {table} limit 1000)'
        ).fetchone()
        return float(found[0]) if found and found[0] is not None else 0.0
    return 16
