"""Lineage of a SQL task: the tables each statement read and wrote, found with sqlglot, as a ``lineage`` report.

A statement that writes (``CREATE TABLE|VIEW … AS``, ``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``,
``COPY … TO 'file'``) gives an edge from every table it reads to the table it writes, with the column
pairs of its query traced like a dbt model's (dbt_support/column_lineage.py). Plain ``SELECT``\\ s read
tables but write none: their tables are reported as datasets without edges. The backend resolves each
table reference to a dataset (namespace, name, columns), so a warehouse table gets the same identity a
dbt model on the same warehouse has, and a lake table the identity its Delta or Parquet writer gave it.

The whole task is one OpenLineage run: START and COMPLETE (or FAIL) with the datasets it read as inputs
and wrote as outputs (schema, columnLineage and, when the engine counted them, outputStatistics), so the
catalog shows the task among the runs that read or wrote each dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from executor_agent.engines.base import TaskContext
from executor_agent.engines.dbt_support.column_lineage import trace_columns
from executor_agent.engines.dbt_support.openlineage import FACET_SCHEMAS, RUN_EVENT_SCHEMA, run_id_for
from executor_agent.policy.guard import _is_cte_reference

PRODUCER = "urn:lakehouse-control-room:executor-agent:sql"
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create)
MAX_SQL_FACET_CHARS = 20_000


@dataclass(frozen=True)
class TableDataset:
    """A table, view or file as a lineage dataset; ``key`` is how the statement's SQL may name it
    (catalog, schema, table), used to trace its columns."""

    namespace: str
    name: str
    columns: tuple[tuple[str, str], ...] = ()
    key: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def as_report(self, *, read_only: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": self.namespace, "name": self.name, "kind": "table"}
        if read_only:  # a table only read keeps the last write (run, facts) its writer reported
            out["read_only"] = True
        if self.columns:
            out["columns"] = [{"name": n, "type": t} if t else {"name": n} for n, t in self.columns]
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True)
class StatementTables:
    """What one statement reads and writes, as written in its SQL (name parts, lower-case)."""

    reads: tuple[tuple[str, ...], ...]
    files_read: tuple[str, ...]
    writes: tuple[str, ...] | None  # the written table's parts, or None
    file_written: str | None
    query: str | None  # the SELECT whose columns feed the written table or file


def statement_tables(sql: str, *, dialect: str) -> StatementTables | None:
    """The tables a statement reads and writes; None when sqlglot cannot parse it or it touches none."""
    try:
        tree = sqlglot.parse_one(sql, dialect=dialect)
    except SqlglotError:
        return None
    if tree is None:
        return None
    target: exp.Table | None = None
    file_written: str | None = None
    query: exp.Expr | None = None
    if isinstance(tree, exp.Copy):
        if tree.args.get("kind"):  # COPY t FROM 'file': a load
            target = tree.this if isinstance(tree.this, exp.Table) else None
            files = [f.name for f in tree.args.get("files") or [] if isinstance(f, exp.Literal) and f.is_string]
            return StatementTables(reads=(), files_read=tuple(files), writes=_parts(target), file_written=None,
                                   query=None) if target is not None else None  # fmt: skip
        files = [f.name for f in tree.args.get("files") or [] if isinstance(f, exp.Literal) and f.is_string]
        file_written = files[0] if files else None
        source = tree.this
        query = source.this if isinstance(source, exp.Subquery) else source
        if isinstance(query, exp.Table):
            query = exp.select("*").from_(query.copy())
    elif isinstance(tree, _WRITES):
        if isinstance(tree, exp.Create) and str(tree.args.get("kind") or "").upper() not in ("TABLE", "VIEW"):
            return None
        found = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        target = found if isinstance(found, exp.Table) else None
        expression = tree.args.get("expression")
        query = expression if isinstance(expression, exp.Query) else None
    elif not isinstance(tree, exp.Query):
        return None
    reads: list[tuple[str, ...]] = []
    files_read: list[str] = []
    for table in tree.find_all(exp.Table):
        if table is target:
            continue
        if not isinstance(table.this, exp.Identifier):
            path = _file_argument(table.this)
            if path is not None and path not in files_read:
                files_read.append(path)
            continue
        if _is_cte_reference(table):
            continue
        parts = _parts(table)
        if parts and parts not in reads:
            reads.append(parts)
    written = _parts(target) if target is not None else None
    if written is not None and isinstance(tree, exp.Update | exp.Delete | exp.Merge):
        reads = [r for r in reads if r != written]
    if not reads and not files_read and written is None and file_written is None:
        return None
    query_sql = query.sql(dialect=dialect) if isinstance(query, exp.Query) else None
    return StatementTables(tuple(reads), tuple(files_read), written, file_written, query_sql)


def _parts(table: exp.Table | None) -> tuple[str, ...] | None:
    if table is None:
        return None
    return tuple(p.lower() for p in (table.catalog, table.db, table.name) if p)


def _file_argument(node: exp.Expr) -> str | None:
    """The path of ``read_parquet('…')`` / ``read_csv('…')`` (and DuckDB's other ``read_*`` readers)."""
    if not isinstance(node, exp.Func):
        return None
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    if not name.startswith("read_") and name not in ("readparquet", "readcsv"):
        return None
    first = node.this if isinstance(node.this, exp.Expr) else (node.expressions[0] if node.expressions else None)
    if isinstance(first, exp.Literal) and first.is_string:
        return str(first.name)
    return None


Resolve = Callable[[tuple[str, ...]], TableDataset | None]


@dataclass
class TaskLineage:
    """The datasets and edges the statements of one task read and wrote, gathered as they finish."""

    dialect: str
    datasets: dict[tuple[str, str], TableDataset] = field(default_factory=dict)
    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    edges: dict[tuple[tuple[str, str], tuple[str, str]], dict[str, Any]] = field(default_factory=dict)
    row_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    statements: list[str] = field(default_factory=list)

    def add(
        self,
        tables: StatementTables,
        *,
        index: int,
        job_name: str,
        resolve: Resolve,
        file_dataset: Callable[[str, str | None], TableDataset | None],
        rows: int | None,
        sql: str,
    ) -> None:
        """One finished statement: resolve its tables (the backend knows where each lives), trace columns."""
        read = [d for d in (resolve(parts) for parts in tables.reads) if d is not None]
        read += [d for d in (file_dataset(path, None) for path in tables.files_read) if d is not None]
        written: TableDataset | None = None
        if tables.writes is not None:
            written = resolve(tables.writes)
        elif tables.file_written is not None:
            written = file_dataset(tables.file_written, tables.query)
        for dataset in [*read, *([written] if written else [])]:
            known = self.datasets.get(dataset.ref)
            if known is None or (not known.columns and dataset.columns):
                self.datasets[dataset.ref] = dataset
        for dataset in read:
            if dataset.ref not in self.inputs and dataset.ref not in self.outputs:
                self.inputs.append(dataset.ref)
        if written is None:
            return
        self.statements.append(sql)
        if written.ref not in self.outputs:
            self.outputs.append(written.ref)
        if rows is not None:
            self.row_counts[written.ref] = rows
        pairs = self._trace(tables.query, read, written)
        for source in read:
            if source.ref == written.ref:
                continue
            edge = self.edges.setdefault(
                (source.ref, written.ref),
                {
                    "upstream": {"namespace": source.namespace, "name": source.name},
                    "downstream": {"namespace": written.namespace, "name": written.name},
                    "job_name": f"{job_name} (statement {index})",
                },
            )
            found = pairs.get(source.ref)
            if found:
                edge["column_lineage"] = [{"upstream_column": u, "downstream_column": d} for u, d in found]

    def _trace(
        self, query: str | None, read: Sequence[TableDataset], written: TableDataset
    ) -> dict[tuple[str, str], list[tuple[str, str]]]:
        if query is None or not read:
            return {}
        keyed = {d.key: d for d in read if d.key and d.columns}
        if not keyed:
            return {}
        traced = trace_columns(query, upstream={k: [c for c, _ in d.columns] for k, d in keyed.items()},
                               dialect=self.dialect)  # fmt: skip
        target_columns = {c.lower() for c, _ in written.columns}
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for key, pairs in traced.items():
            kept = [(u, d) for u, d in pairs if not target_columns or d.lower() in target_columns]
            if kept:
                out[keyed[key].ref] = kept
        return out

    def payload(self, context: TaskContext, *, engine: str, started_at: str, failed: bool) -> dict[str, Any] | None:
        """The ``lineage`` report (datasets, edges, the task's OpenLineage START and COMPLETE/FAIL), or None."""
        if not self.datasets:
            return None
        return {
            "datasets": [d.as_report(read_only=ref not in self.outputs) for ref, d in self.datasets.items()],
            "edges": list(self.edges.values()),
            "openlineage_events": self._events(context, engine=engine, started_at=started_at, failed=failed),
        }

    def _events(self, context: TaskContext, *, engine: str, started_at: str, failed: bool) -> list[dict[str, Any]]:
        run_id = run_id_for(context.task_id, context.attempt)
        job_facets: dict[str, Any] = {
            "jobType": _facet("jobType", processingType="BATCH", integration=engine.upper(), jobType="QUERY")
        }
        if self.statements:
            job_facets["sql"] = _facet("sql", query=";\n".join(self.statements)[:MAX_SQL_FACET_CHARS])
        inputs = [self._dataset(ref, with_schema=True) for ref in self.inputs]
        outputs = [self._output(ref) for ref in self.outputs]
        finished = datetime.now(UTC).isoformat()

        def event(kind: str, when: str, *, with_datasets: bool) -> dict[str, Any]:
            return {
                "eventType": kind,
                "eventTime": when,
                "producer": PRODUCER,
                "schemaURL": RUN_EVENT_SCHEMA,
                "run": {"runId": run_id},
                "job": {"namespace": f"lakehouse/{context.project}", "name": context.task_key, "facets": job_facets},
                "inputs": inputs if with_datasets else [],
                "outputs": outputs if with_datasets else [],
            }

        return [event("START", started_at, with_datasets=False),
                event("FAIL" if failed else "COMPLETE", finished, with_datasets=True)]  # fmt: skip

    def _dataset(self, ref: tuple[str, str], *, with_schema: bool) -> dict[str, Any]:
        dataset = self.datasets[ref]
        facets: dict[str, Any] = {"dataSource": _facet("dataSource", name=dataset.namespace, uri=dataset.namespace)}
        if with_schema and dataset.columns:
            facets["schema"] = _facet("schema", fields=[{"name": n, "type": t} for n, t in dataset.columns])
        return {"namespace": dataset.namespace, "name": dataset.name, "facets": facets}

    def _output(self, ref: tuple[str, str]) -> dict[str, Any]:
        out = self._dataset(ref, with_schema=True)
        fields: dict[str, Any] = {}
        for (upstream, downstream), edge in self.edges.items():
            if downstream != ref:
                continue
            for pair in edge.get("column_lineage", []):
                inputs = fields.setdefault(pair["downstream_column"], {"inputFields": []})["inputFields"]
                inputs.append({"namespace": upstream[0], "name": upstream[1], "field": pair["upstream_column"]})
        if fields:
            out["facets"]["columnLineage"] = _facet("columnLineage", fields=fields)
        if ref in self.row_counts:
            out["outputFacets"] = {"outputStatistics": _facet("outputStatistics", rowCount=self.row_counts[ref])}
        return out


def _facet(kind: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMAS[kind], **fields}
