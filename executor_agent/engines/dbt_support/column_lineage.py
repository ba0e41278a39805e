"""Column-level lineage of dbt models: compiled SQL parsed with sqlglot against the catalog's columns.

For each model (or snapshot) dbt compiled, the SQL is qualified with the columns of its upstream datasets
(dbt's catalog when docs were generated, else the project's YAML) as the schema, so ``select *`` and
unqualified names resolve; each output column is then traced through CTEs and subqueries to the
upstream columns it is computed from. A column computed from no column (``count(*)``, a literal) has
no edge. The pairs go on the dataset edges (``column_lineage``, the same storage the OpenLineage
``columnLineage`` facet fills) and into the node's OpenLineage events as that facet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

# dbt adapter type -> sqlglot dialect, where the names differ; others are tried as they are.
DIALECTS = {"databricks": "databricks", "spark": "spark", "sqlserver": "tsql", "fabric": "tsql"}

ColumnPairs = list[tuple[str, str]]  # (upstream column, downstream column)


def dialect_for(adapter: str) -> str | None:
    """The sqlglot dialect for a dbt adapter, or None (sqlglot's generic SQL) when sqlglot has none."""
    name = DIALECTS.get(adapter, adapter)
    return name if sqlglot.Dialect.get(name) is not None else None


def _name_key(parts: list[str]) -> tuple[str, ...]:
    return tuple(part.lower() for part in parts if part)


def _table_key(table: exp.Table) -> tuple[str, ...]:
    return _name_key([table.catalog, table.db, table.name])


def trace_columns(
    compiled_sql: str,
    *,
    upstream: Mapping[tuple[str, ...], list[str]],
    dialect: str | None,
) -> dict[tuple[str, ...], ColumnPairs]:
    """For each upstream relation (its name parts, e.g. database, schema, identifier), the (upstream column,
    output column) pairs of one query. ``upstream`` gives each relation's columns in order. Pairs follow
    the query's output order; a query sqlglot cannot parse or qualify yields nothing."""
    schema: dict[str, Any] = {}
    for parts, columns in upstream.items():
        if not columns or len(parts) < 1:
            continue
        level = schema
        for part in parts[:-1]:
            level = level.setdefault(part, {})
        level[parts[-1]] = {column: "unknown" for column in columns}
    if not _uniform_depth(schema):
        return {}
    try:
        statement = sqlglot.parse_one(compiled_sql, dialect=dialect)
        qualified = qualify(
            statement, schema=schema or None, dialect=dialect, validate_qualify_columns=False, identify=False
        )
        scope = build_scope(qualified)
    except (sqlglot.errors.SqlglotError, ValueError, KeyError):
        return {}
    if scope is None or not isinstance(qualified, exp.Query):
        return {}
    by_key = {_name_key(list(parts)): parts for parts in upstream}
    out: dict[tuple[str, ...], ColumnPairs] = {}
    for column in qualified.named_selects:
        if not column or column == "*":
            continue
        try:
            root = lineage(column, qualified, schema, dialect=dialect, scope=scope, copy=False)
        except (sqlglot.errors.SqlglotError, ValueError, KeyError):
            continue  # a construct the tracer does not follow: this column has no edge, the others keep theirs
        for node in root.walk():
            if node.downstream or not isinstance(node.source, exp.Table):
                continue
            found = by_key.get(_table_key(node.source)) or _by_suffix(by_key, _table_key(node.source))
            if found is None:
                continue  # the model's own relation (an incremental's {{ this }}) or an unmanaged table
            source_column = node.name.rsplit(".", 1)[-1].strip('"`[]')
            pair = (source_column, column)
            if pair not in out.setdefault(found, []):
                out[found].append(pair)
    return out


def _uniform_depth(schema: Mapping[str, Any]) -> bool:
    """sqlglot's schema needs every table at the same nesting depth (catalog.schema.table)."""

    def depths(level: Mapping[str, Any], depth: int) -> set[int]:
        found: set[int] = set()
        for value in level.values():
            if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
                found |= depths(value, depth + 1)
            else:
                found.add(depth)
        return found

    return len(depths(schema, 1)) <= 1


def _by_suffix(by_key: Mapping[tuple[str, ...], tuple[str, ...]], key: tuple[str, ...]) -> tuple[str, ...] | None:
    """The one upstream relation whose name ends with a table reference written with fewer parts."""
    matches = [parts for full, parts in by_key.items() if len(key) < len(full) and full[-len(key) :] == key]
    return matches[0] if len(matches) == 1 else None
