"""DuckDB, the embedded default SQL warehouse: the same SQL task as Trino, on a database file the agent owns.

Where data lives (settings, environment prefix ``LAKEHOUSE_EXECUTOR_DUCKDB_``):

* ``DATABASE``: the warehouse file (default ``~/.lakehouse-executor/warehouse.duckdb``; a spec's
  ``database`` picks another file, relative paths resolved under ``DATA_DIR``, or ``":memory:"``).
* ``DATA_DIR``: the lake folder (default ``~/.lakehouse-executor/lake``). Every Delta table (a folder with a
  ``_delta_log``), Parquet file or folder, and CSV file directly inside it is queryable by its name.
  The spec's ``tables`` adds or overrides names: ``{"trips": "s3://bucket/trips"}`` or
  ``{"trips": {"path": "trips_v2", "format": "delta"}}``.

Reading Delta and S3 without DuckDB extensions: DuckDB's ``delta`` and ``httpfs`` extensions are
downloaded at run time from DuckDB's own server, which build machines here cannot reach. Delta tables
are therefore opened with ``deltalake`` (delta-rs, honouring the log: removed files, partitions) and
scanned by DuckDB as Arrow datasets; S3 objects are read through pyarrow's ``S3FileSystem``
(``S3_ENDPOINT_URL``, ``S3_REGION``, ``S3_ACCESS_KEY_ID``, ``S3_SECRET_ACCESS_KEY``; unset values fall
back to the AWS chain). Local Parquet and CSV use DuckDB's built-in readers.

Cost estimate (documented heuristic): ``EXPLAIN (FORMAT JSON)`` gives the physical plan; for every
leaf that reads stored data, estimated bytes = rows x row width of the columns it reads (projected
and filtered). Rows: a DuckDB table's row count (a scan reads every row group), a file reader's
estimated cardinality, or a Delta/S3 table's row count from its metadata. Width: the byte size of
fixed-width types; 32 bytes for each variable-length value (VARCHAR, BLOB, JSON) and 64 for nested
ones. Table functions that generate data (``range``, ``unnest``) read nothing and count 0.

Actuals come from DuckDB's profiler: rows, bytes produced by the scans, CPU time, peak buffer memory.
Caps: ``max_memory_mb`` becomes ``memory_limit`` and ``max_cores`` becomes ``threads``. DuckDB keeps
one database instance per file in a process, so those settings (and ``session_properties`` naming
instance settings) hold for every task of the agent using the same warehouse file at that time, and
one process at a time may write a file: give each agent its own warehouse.
"""

from __future__ import annotations

import getpass
import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from executor_agent.config import DEFAULT_STATE_DIR
from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskContext, importable
from executor_agent.engines.spark_support.lineage import dataset_ref
from executor_agent.engines.sql_support.history import QueryActuals
from executor_agent.engines.sql_support.lineage import TableDataset
from executor_agent.engines.sql_support.statements import Statement
from executor_agent.engines.sql_support.task import (
    Execution,
    ScanEstimate,
    SessionIdentity,
    SqlBackend,
    SqlTaskSpec,
    StatementFailed,
    optional_string,
    run_sql_task,
    string_map,
)

BATCH_ROWS = 65_536
VARIABLE_WIDTH = 32
NESTED_WIDTH = 64
_FIXED_WIDTHS = {
    "BOOLEAN": 1, "TINYINT": 1, "UTINYINT": 1, "SMALLINT": 2, "USMALLINT": 2, "INTEGER": 4, "UINTEGER": 4,
    "BIGINT": 8, "UBIGINT": 8, "HUGEINT": 16, "UHUGEINT": 16, "FLOAT": 4, "REAL": 4, "DOUBLE": 8, "DATE": 4,
    "TIME": 8, "TIMESTAMP": 8, "TIMESTAMP_S": 8, "TIMESTAMP_MS": 8, "TIMESTAMP_NS": 8,
    "TIMESTAMP WITH TIME ZONE": 8, "TIME WITH TIME ZONE": 8, "INTERVAL": 16, "UUID": 16,
}  # fmt: skip
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SETTING_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
TABLE_FORMATS = ("delta", "parquet", "csv")


class DuckdbSettings(BaseSettings):
    """Where the embedded warehouse keeps its database and finds lake tables (prefix LAKEHOUSE_EXECUTOR_DUCKDB_)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_EXECUTOR_DUCKDB_", extra="ignore")

    database: Path = Field(default=DEFAULT_STATE_DIR / "warehouse.duckdb", description="The warehouse database file.")
    data_dir: Path = Field(default=DEFAULT_STATE_DIR / "lake", description="Folder of Delta/Parquet/CSV lake tables.")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, SeaweedFS); unset: AWS.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id (unset: the AWS chain).")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")


def resolve_database(requested: str | None, settings: DuckdbSettings) -> str:
    """The warehouse file a task means: none named is the agent's one persistent warehouse (shared by the
    DuckDB, dbt-duckdb and Delta tasks of the agent), a relative name lies in the data dir; ``:memory:``
    and an absolute path stay as they are."""
    if requested == ":memory:":
        return requested
    if requested is None:
        return str(settings.database.expanduser().resolve())
    path = Path(requested).expanduser()
    return str((path if path.is_absolute() else settings.data_dir.expanduser() / path).resolve())


def duckdb_namespace(database: str) -> str:
    """The OpenLineage namespace of a DuckDB database file: ``duckdb://`` and the file's absolute path
    (an in-memory or MotherDuck database keeps its own name)."""
    if database.startswith("/"):
        return f"duckdb://{database}"
    return f"duckdb://{quote(database, safe='')}"


@dataclass
class LakeTable:
    """A lake table registered under a name for one task: where it is and what it holds."""

    name: str
    path: str
    format: str
    columns: dict[str, int]  # column name -> estimated byte width
    rows: int | None = None
    via_arrow: bool = False

    @property
    def on_s3(self) -> bool:
        return self.path.startswith("s3://")


class DuckdbEngine(Engine):
    """SQL tasks on the embedded DuckDB warehouse."""

    name: ClassVar[str] = "duckdb"

    @classmethod
    def available(cls) -> bool:
        return importable("duckdb", "pyarrow")

    def run(self, context: TaskContext) -> EngineResult:
        spec = SqlTaskSpec.parse(context.spec, engine="duckdb", key=context.task_key)
        return run_sql_task(context, DuckdbBackend(context, DuckdbSettings()), spec)


class DuckdbBackend(SqlBackend):
    """One DuckDB connection for one task, with the task's lake tables registered as views."""

    engine: ClassVar[str] = "duckdb"

    def __init__(self, context: TaskContext, settings: DuckdbSettings) -> None:
        import duckdb

        self._duckdb = duckdb
        self.context = context
        self.settings = settings
        spec = context.spec
        self.user = optional_string(spec, "user") or getpass.getuser()
        read_only = spec.get("read_only", False)
        if not isinstance(read_only, bool):
            raise EngineError("read_only: must be true or false")
        self.database = self._database_path(optional_string(spec, "database"))
        self._lock = threading.Lock()
        self._statement_types: dict[int, Any] = {}
        self.tables: dict[str, LakeTable] = {}
        try:
            if self.database != ":memory:":
                Path(self.database).parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(self.database, read_only=read_only)
        except duckdb.Error as exc:
            raise EngineError(_open_advice(self.database, exc)) from exc
        try:
            self._configure(spec)
            self._register_tables(spec)
        except BaseException:
            self.con.close()
            raise

    # Setup ------------------------------------------------------------------------------------------

    def _database_path(self, requested: str | None) -> str:
        return resolve_database(requested, self.settings)

    def _configure(self, spec: Mapping[str, Any]) -> None:
        # Profile every statement without printing: the figures feed query history.
        self.con.execute("pragma enable_profiling = 'no_output'")
        self.con.execute("set profiling_coverage = 'ALL'")
        settings = string_map(spec, "session_properties")
        limits = self.context.limits
        if limits.max_memory_mb is not None:
            settings["memory_limit"] = f"{limits.max_memory_mb}MB"
        if limits.max_cores is not None:
            # The cap wins over a larger request; a smaller request stands.
            requested = settings.get("threads", "")
            wanted = int(requested) if requested.isdigit() and int(requested) > 0 else limits.max_cores
            settings["threads"] = str(min(wanted, limits.max_cores))
        for name, value in settings.items():
            if not _SETTING_NAME.match(name):
                raise EngineError(f"session_properties.{name}: not a DuckDB setting name")
            try:
                self.con.execute(f"set {name} = {_literal(value)}")
            except self._duckdb.Error as exc:
                raise EngineError(f"session_properties.{name}: DuckDB refused it: {exc}") from exc
        if settings:
            self.context.emit("sql.settings", "DuckDB settings applied", data={"settings": settings})
        schema = optional_string(spec, "schema")
        if schema is not None:
            try:
                self.con.execute(f"use {_quote(schema)}")
            except self._duckdb.Error as exc:
                raise EngineError(f"schema: {exc}") from exc

    def _register_tables(self, spec: Mapping[str, Any]) -> None:
        declared = spec.get("tables") or {}
        if not isinstance(declared, dict):
            raise EngineError('tables: must be an object such as {"trips": "s3://bucket/trips"}')
        discover = spec.get("discover_tables", True)
        if not isinstance(discover, bool):
            raise EngineError("discover_tables: must be true or false")
        existing = {row[0] for row in self.con.execute("select table_name from duckdb_tables()").fetchall()}
        if discover and self.settings.data_dir.is_dir():
            for entry in sorted(self.settings.data_dir.iterdir())[:500]:
                found = _discovered(entry)
                if found is None:
                    continue
                name = re.sub(r"[^a-z0-9_]", "_", entry.name.split(".")[0].lower())
                if name and name not in existing and name not in declared:
                    self._register(name, str(entry), found, f"discovered in {self.settings.data_dir}")
        for name, value in declared.items():
            field = f"tables.{name}"
            if not _IDENTIFIER.match(str(name)):
                raise EngineError(f"{field}: a table name must be a plain identifier (letters, digits, _)")
            path, table_format = _declared_source(value, field)
            if not path.startswith("s3://"):
                local = Path(path).expanduser()
                path = str(local if local.is_absolute() else self.settings.data_dir / local)
            table_format = table_format or (
                self._s3_format(path, field) if path.startswith("s3://") else _guess_format(path, field)
            )
            self._register(str(name), path, table_format, field)

    def _register(self, name: str, path: str, table_format: str, field: str) -> None:
        try:
            if table_format == "delta":
                self._register_delta(name, path)
            elif path.startswith("s3://"):
                self._register_s3_files(name, path, table_format)
            else:
                reader = "read_parquet" if table_format == "parquet" else "read_csv_auto"
                target = path
                if table_format == "parquet" and Path(path).is_dir():
                    target = f"{path.rstrip('/')}/**/*.parquet"
                options = ", hive_partitioning = true" if table_format == "parquet" else ""
                self.con.execute(
                    f"create or replace temp view {_quote(name)} as select * from {reader}({_literal(target)}{options})"
                )
                columns = self.con.execute(f"describe {_quote(name)}").fetchall()
                self.tables[name] = LakeTable(name, path, table_format, {c[0]: _duckdb_width(c[1]) for c in columns})
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"{field}: cannot open {table_format} table at {path}: {exc}") from exc
        self.context.emit(
            "sql.table.registered", f"{name} -> {path} ({table_format})",
            level="debug", data={"table": name, "path": path, "format": table_format},
        )  # fmt: skip

    def _register_delta(self, name: str, path: str) -> None:
        try:
            from deltalake import DeltaTable
        except ImportError as exc:
            raise EngineError(
                f"tables.{name}: reading Delta tables needs the deltalake package (pip install deltalake)"
            ) from exc
        import pyarrow as pa
        import pyarrow.compute as pc

        table = DeltaTable(path, storage_options=self._delta_storage_options() if path.startswith("s3://") else None)
        dataset = table.to_pyarrow_dataset()
        actions = pa.table(table.get_add_actions(flatten=True))
        rows = int(pc.sum(actions.column("num_records")).as_py() or 0) if actions.num_rows else 0
        self.con.register(name, dataset)
        widths = {f.name: _arrow_width(f.type) for f in dataset.schema}
        self.tables[name] = LakeTable(name, path, "delta", widths, rows=rows, via_arrow=True)

    def _register_s3_files(self, name: str, path: str, table_format: str) -> None:
        import pyarrow.dataset as pads

        dataset = pads.dataset(
            path.removeprefix("s3://"), filesystem=self._s3_filesystem(), format=table_format, partitioning="hive"
        )
        self.con.register(name, dataset)
        widths = {f.name: _arrow_width(f.type) for f in dataset.schema}
        table = LakeTable(name, path, table_format, widths, via_arrow=True)
        table.rows = dataset.count_rows() if table_format == "parquet" else None  # footers only for Parquet
        self.tables[name] = table

    def _s3_format(self, path: str, field: str) -> str:
        """delta when the prefix holds a _delta_log folder, parquet when it holds .parquet objects."""
        from pyarrow import fs

        s3 = self._s3_filesystem()
        prefix = path.removeprefix("s3://").rstrip("/")
        try:
            if s3.get_file_info(f"{prefix}/_delta_log").type == fs.FileType.Directory:
                return "delta"
            listed = s3.get_file_info(fs.FileSelector(prefix, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise EngineError(f"{field}: cannot list {path}: {exc}") from exc
        if any(info.path.endswith(".parquet") for info in listed):
            return "parquet"
        raise EngineError(
            f'{field}: no Delta log or .parquet objects at {path}; add "format": "delta", "parquet" or "csv"'
        )

    def _s3_filesystem(self) -> Any:
        from pyarrow import fs

        options: dict[str, Any] = {"region": self.settings.s3_region}
        if self.settings.s3_endpoint_url:
            endpoint = urlparse(self.settings.s3_endpoint_url)
            options["endpoint_override"] = endpoint.netloc or endpoint.path
            options["scheme"] = endpoint.scheme or "https"
        if self.settings.s3_access_key_id:
            options["access_key"] = self.settings.s3_access_key_id
            secret = self.settings.s3_secret_access_key
            options["secret_key"] = secret.get_secret_value() if secret else None
        return fs.S3FileSystem(**options)

    def _delta_storage_options(self) -> dict[str, str]:
        options = {"AWS_REGION": self.settings.s3_region}
        if self.settings.s3_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.settings.s3_endpoint_url
            if self.settings.s3_endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.settings.s3_access_key_id:
            options["AWS_ACCESS_KEY_ID"] = self.settings.s3_access_key_id
            secret = self.settings.s3_secret_access_key
            if secret is not None:
                options["AWS_SECRET_ACCESS_KEY"] = secret.get_secret_value()
        return options

    # SqlBackend ---------------------------------------------------------------------------------------

    def statements(self, script: str) -> list[Statement]:
        """Split with DuckDB's own parser, so anything DuckDB accepts splits as DuckDB means it."""
        try:
            parsed = self.con.extract_statements(script)
        except self._duckdb.Error as exc:
            raise EngineError(f"sql: DuckDB cannot parse the script: {exc}") from exc
        statements = []
        for index, item in enumerate(parsed, start=1):
            self._statement_types[index] = item
            statements.append(Statement(index=index, text=item.query.strip().rstrip(";").strip()))
        return statements

    def identity(self) -> SessionIdentity:
        catalog, schema = self.con.execute("select current_database(), current_schema()").fetchone() or (None, None)
        return SessionIdentity(user=self.user, catalog=catalog, schema=schema)

    def estimate(self, statement: Statement) -> ScanEstimate:
        try:
            rows = self.con.execute(f"explain (format json) {statement.text}").fetchall()
        except self._duckdb.Error as exc:
            raise _failed(self._duckdb, exc) from exc
        plans = [json.loads(row[1]) for row in rows if row and row[0] == "physical_plan"]
        tables: list[dict[str, Any]] = []
        for plan in plans:
            for node in _leaves(plan):
                scan = self._leaf_scan(node)
                if scan is not None:
                    tables.append(scan)
        total = sum(t["bytes"] for t in tables)
        total_rows = sum(t["rows"] for t in tables)
        note = "rows x row width of the columns each scan reads (see executor_agent/engines/duckdb.py)"
        return ScanEstimate(scan_bytes=total, rows=total_rows, tables=tables, note=note)

    def _leaf_scan(self, node: Mapping[str, Any]) -> dict[str, Any] | None:
        """The estimated read of one leaf operator, or None when it reads no stored data."""
        info = node.get("extra_info") or {}
        name = str(node.get("name", "")).strip().upper()
        projections = info.get("Projections") or []
        columns = [projections] if isinstance(projections, str) else [str(c) for c in projections]
        filters = str(info.get("Filters") or "")
        cardinality = _int(info.get("Estimated Cardinality"))
        if "Table" in info:
            return self._native_scan(str(info["Table"]), columns, filters)
        lake = self._matching_lake_table(columns)
        if "ARROW_SCAN" in name:
            if lake is None:
                return None
            rows = lake.rows if lake.rows is not None else cardinality
        elif name.startswith("READ_") or str(info.get("Function", "")).upper().startswith("READ_"):
            rows = cardinality
        else:
            return None  # generated rows (range, unnest, values): nothing is read
        widths = lake.columns if lake is not None else {}
        read = _read_columns(columns, filters, widths)
        width = sum(widths.get(c, 8) for c in read) if read else 8
        return {"table": lake.name if lake else name.lower(), "rows": rows, "bytes": rows * width, "columns": read}

    def _native_scan(self, qualified: str, columns: list[str], filters: str) -> dict[str, Any]:
        database, schema, table = [*_split_qualified(qualified), "", "", ""][:3]
        found = self.con.execute(
            "select estimated_size from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
            [database, schema, table],
        ).fetchone()
        rows = int(found[0]) if found and found[0] is not None else 0
        types = self.con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = ? and schema_name = ? and table_name = ?",
            [database, schema, table],
        ).fetchall()
        widths = {name: _duckdb_width(data_type) for name, data_type in types}
        read = _read_columns(columns, filters, widths)
        width = sum(widths.get(c, 8) for c in read) if read else 0
        return {"table": qualified, "rows": rows, "bytes": rows * width, "columns": read}

    def _matching_lake_table(self, columns: list[str]) -> LakeTable | None:
        """The largest registered lake table holding every projected column (a scan does not name its table)."""
        candidates = [t for t in self.tables.values() if all(c in t.columns for c in columns)]
        return max(candidates, key=lambda t: t.rows or 0, default=None)

    def execute(self, statement: Statement) -> Execution:
        parsed = self._statement_types.get(statement.index)
        expected = [str(t) for t in getattr(parsed, "expected_result_type", [])]
        returns_rows = expected == ["ExpectedResultType.QUERY_RESULT"]
        try:
            if returns_rows:
                relation = self.con.sql(statement.text)
                if relation is not None:
                    return DuckdbExecution(self, relation.to_arrow_reader(BATCH_ROWS), None)
                return DuckdbExecution(self, None, None)
            self.con.execute(statement.text)
            description = self.con.description or []
            fetched = self.con.fetchall() if description else []
            count = None
            if len(description) == 1 and str(description[0][0]).lower() == "count" and fetched:
                count = int(fetched[0][0])
            return DuckdbExecution(self, None, count)
        except self._duckdb.Error as exc:
            raise _failed(self._duckdb, exc) from exc

    def view_definition(self, parts: tuple[str, ...]) -> str | None:
        """The SQL of a view of this database (the access guard checks what it reads)."""
        schema = parts[-2] if len(parts) >= 2 else None
        found = self.con.execute(
            "select sql from duckdb_views() where not internal and lower(view_name) = ? "
            "and (?::varchar is null or lower(schema_name) = ?) limit 1",
            [parts[-1], schema, schema],
        ).fetchone()
        return str(found[0]) if found and found[0] else None

    # Lineage ------------------------------------------------------------------------------------------

    def lineage_dialect(self) -> str | None:
        """DuckDB's, unless the database is in memory: its tables vanish with the task, they are no datasets."""
        return None if self.database == ":memory:" else "duckdb"

    def resolve_table(self, parts: tuple[str, ...]) -> TableDataset | None:
        """A lake table registered for the task is its Delta/Parquet/CSV location (the identity its writer
        gives it); any other name is a table or view of the warehouse, ``database.schema.table`` in the
        file's namespace, as dbt-duckdb names its relations."""
        here = self.con.execute("select current_database(), current_schema()").fetchone() or ("", "main")
        current_db, current_schema = here
        if len(parts) == 1 and parts[0] in self.tables:
            lake = self.tables[parts[0]]
            ref = dataset_ref(lake.path)
            described = self.con.execute(f"describe {_quote(lake.name)}").fetchall()
            return TableDataset(
                ref.namespace, ref.name, tuple((str(c[0]), str(c[1])) for c in described),
                key=(str(current_db).lower(), str(current_schema).lower(), lake.name),
                metadata={"format": lake.format, "path": lake.path},
            )  # fmt: skip
        database = parts[-3] if len(parts) >= 3 else str(current_db).lower()
        schema = parts[-2] if len(parts) >= 2 else str(current_schema).lower()
        found = self.con.execute(
            "select database_name, schema_name, table_name, 'table' from duckdb_tables() "
            "where not temporary and lower(database_name) = ? and lower(schema_name) = ? and lower(table_name) = ? "
            "union all select database_name, schema_name, view_name, 'view' from duckdb_views() "
            "where not internal and not temporary and lower(database_name) = ? and lower(schema_name) = ? "
            "and lower(view_name) = ? limit 1",
            [database, schema, parts[-1]] * 2,
        ).fetchone()
        if found is None:
            return None  # a temporary table, a CTE the parser took for a table, or something dropped since
        db, sch, name, kind = (str(v) for v in found)
        columns = self.con.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = ? and schema_name = ? and table_name = ? order by column_index",
            [db, sch, name],
        ).fetchall()
        return TableDataset(
            duckdb_namespace(self.database), f"{db}.{sch}.{name}", tuple((str(c), str(t)) for c, t in columns),
            key=(db.lower(), sch.lower(), name.lower()), metadata={"engine": "duckdb", "object": kind},
        )  # fmt: skip

    def file_dataset(self, path: str, query: str | None) -> TableDataset | None:
        """A file a statement read (``read_parquet('…')``) or wrote (``COPY … TO '…'``), named the OpenLineage way
        (``file`` and its absolute path, or ``s3://bucket`` and the key); its columns are the query's."""
        if any(ch in path for ch in "*?["):
            return None  # a glob names many files, not one dataset
        ref = dataset_ref(path)
        columns: tuple[tuple[str, str], ...] = ()
        if query is not None:
            columns = tuple((str(c[0]), str(c[1])) for c in self.con.execute(f"describe {query}").fetchall())
        return TableDataset(ref.namespace, ref.name, columns, metadata={"engine": "duckdb", "object": "file"})

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        self.con.close()

    def profile(self) -> QueryActuals:
        """Figures of the last statement from DuckDB's profiler."""
        try:
            info = json.loads(self.con.get_profiling_information())
        except (self._duckdb.Error, ValueError):
            return QueryActuals()
        query = info.get("query") or {}
        system = info.get("system") or {}
        scanned = 0
        for root in info.get("operator") or []:
            for node in _leaves(root):
                if self._reads_stored_data(node):
                    scanned += int(node.get("intermediate_size_bytes") or 0)
        return QueryActuals(
            bytes_read=scanned,
            cpu_time_ms=int(float(query.get("cpu_time") or 0) * 1000),
            peak_memory_bytes=int(system.get("peak_buffer_memory") or 0) or None,
            engine_elapsed_ms=int(float(query.get("total_time") or 0) * 1000) or None,
        )

    @staticmethod
    def _reads_stored_data(node: Mapping[str, Any]) -> bool:
        name = str(node.get("name", "")).upper()
        info = node.get("extra_info") or {}
        return "Table" in info or "ARROW_SCAN" in name or name.startswith("READ_") or "SEQ_SCAN" in name


class DuckdbExecution(Execution):
    """A running DuckDB statement: an Arrow reader over its result, or the changed-row count."""

    def __init__(self, backend: DuckdbBackend, reader: Any, update_count: int | None) -> None:
        self.backend = backend
        self.reader = reader
        self.update_count = update_count
        # DuckDB has no query ids; history gets one in the style of Trino's (time, then a random part).
        self.query_id = f"duckdb_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:10]}"

    @property
    def schema(self) -> Any:
        return self.reader.schema if self.reader is not None else None

    def batches(self) -> Iterator[Any]:
        if self.reader is None:
            return
        try:
            yield from self.reader
        except self.backend._duckdb.Error as exc:
            raise _failed(self.backend._duckdb, exc) from exc

    def actuals(self) -> QueryActuals:
        return self.backend.profile()


def _failed(duckdb: Any, exc: Exception) -> StatementFailed:
    """A DuckDB error as a statement failure; only I/O troubles are worth another attempt."""
    transient = isinstance(exc, duckdb.IOException | duckdb.HTTPException)
    return StatementFailed(f"DuckDB: {exc}", retryable=transient)


def _leaves(node: Any) -> Iterator[Mapping[str, Any]]:
    """Leaf operators of a plan given as a node or a list of nodes."""
    if isinstance(node, list):
        for item in node:
            yield from _leaves(item)
        return
    if not isinstance(node, dict):
        return
    children = node.get("children") or []
    if not children:
        yield node
    for child in children:
        yield from _leaves(child)


def _split_qualified(name: str) -> list[str]:
    """``db."default".t`` -> ``["db", "default", "t"]``: dots inside double quotes do not split."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', name)
    return [quoted.replace('""', '"') if quoted else plain for quoted, plain in parts]


def _read_columns(projected: list[str], filters: str, widths: Mapping[str, int]) -> list[str]:
    """Projected columns plus the columns a pushed-down filter reads."""
    read = list(dict.fromkeys(c.strip('"') for c in projected if c))
    for name in widths:
        if name not in read and re.search(rf'(?<![\w"]){re.escape(name)}(?![\w"])|"{re.escape(name)}"', filters):
            read.append(name)
    return read


def _duckdb_width(data_type: str) -> int:
    text = data_type.upper().strip()
    if text in _FIXED_WIDTHS:
        return _FIXED_WIDTHS[text]
    if text.startswith("DECIMAL"):
        precision = _int(re.sub(r"\D.*", "", text.removeprefix("DECIMAL(")))
        return 2 if precision <= 4 else 4 if precision <= 9 else 8 if precision <= 18 else 16
    if text.endswith("]") or text.startswith(("STRUCT", "MAP", "UNION")):
        return NESTED_WIDTH
    return VARIABLE_WIDTH


def _arrow_width(data_type: Any) -> int:
    import pyarrow as pa

    if pa.types.is_nested(data_type):
        return NESTED_WIDTH
    try:
        return max(int(data_type.bit_width) // 8, 1)
    except ValueError:  # variable-width types have no bit width
        return VARIABLE_WIDTH


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _discovered(entry: Path) -> str | None:
    """The format of a lake folder entry that is a table, else None."""
    if entry.name.startswith((".", "_")):
        return None
    if entry.is_dir():
        if (entry / "_delta_log").is_dir():
            return "delta"
        if next(entry.rglob("*.parquet"), None) is not None:
            return "parquet"
        return None
    suffix = entry.suffix.lower()
    return {".parquet": "parquet", ".csv": "csv"}.get(suffix)


def _declared_source(value: Any, field: str) -> tuple[str, str | None]:
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"]:
        unknown = set(value) - {"path", "format"}
        if unknown:
            raise EngineError(f"{field}: unknown field(s) {', '.join(sorted(unknown))}; use path and format")
        table_format = value.get("format")
        if table_format is not None and table_format not in TABLE_FORMATS:
            raise EngineError(f"{field}.format: must be one of {', '.join(TABLE_FORMATS)}")
        return value["path"], table_format
    raise EngineError(f'{field}: must be a path or {{"path": …, "format": "delta" | "parquet" | "csv"}}')


def _guess_format(path: str, field: str) -> str:
    lowered = path.lower().rstrip("/")
    if lowered.endswith(".parquet"):
        return "parquet"
    if lowered.endswith(".csv"):
        return "csv"
    if not path.startswith("s3://"):
        found = _discovered(Path(path))
        if found is not None:
            return found
        if not Path(path).exists():
            raise EngineError(f"{field}: nothing at {path}")
    raise EngineError(f'{field}: cannot tell the format of {path}; add "format": "delta", "parquet" or "csv"')


def _open_advice(database: str, exc: Exception) -> str:
    text = str(exc)
    if "lock" in text.lower():
        return (
            f"database: the warehouse {database} is locked by another process ({text}); DuckDB allows one "
            "writing process per file: give this agent its own file (LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE or the "
            'spec\'s "database"), or open it read-only ("read_only": true)'
        )
    if "different configuration" in text:
        return (
            f"database: another task of this agent has the warehouse {database} open with other settings "
            f"({text}); tasks sharing a warehouse file must agree on read_only"
        )
    return f"database: cannot open the DuckDB warehouse {database}: {text}"
