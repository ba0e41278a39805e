"""Delta table operations through delta-rs (``deltalake``), run as a task type of the Spark engine.

A ``spark`` task whose spec holds a ``delta`` object runs one operation on one table instead of a
``spark-submit``::

    {"key": "upsert", "engine": "spark",
     "delta": {"operation": "merge", "table": "/data/customers", "keys": ["id"],
               "source": {"path": "/landing/customers.parquet"}}}

Operations: create, append, overwrite, merge (upsert on keys), delete (by predicate), optimize
(compact or z-order), vacuum, history, read (at a version or timestamp, as a Parquet or JSON
artifact). A source is ``{"path": <Parquet/CSV/JSON file or folder>, "format"?}``, ``{"rows": [...]}``
or ``{"table": <Delta table>, "version"?|"timestamp"?}``. Relative locations are resolved against
the agent's working directory. Writes report the table and source -> table edges as lineage;
a write that adds more bytes than ``max_output_bytes`` is rolled back by restoring the previous
version, and the task fails saying so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskCancelled, TaskContext
from executor_agent.engines.spark_support.lineage import (
    Dataset,
    dataset_ref,
    delta_columns,
    describe_location,
    is_delta_table,
    lineage_payload,
    resolve_location,
)
from executor_agent.engines.specs import typed_part, typed_spec
from executor_agent.generated import contract

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable

OPERATIONS = ("create", "append", "overwrite", "merge", "delete", "optimize", "vacuum", "history", "read")
# Operations whose added files count against max_output_bytes; optimize only rewrites what is there.
CAPPED_OPERATIONS = frozenset({"create", "append", "overwrite", "merge", "delete"})
SOURCE_FORMATS = ("parquet", "csv", "json")
READ_FORMATS = ("parquet", "json")

# Delta primitive type names (as in a table's schema JSON) for ``create`` with an explicit schema.
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_PLAIN_IDENTIFIER = re.compile(r"^[^`]+$")


def _arrow_type(type_name: str, field_name: str) -> pa.DataType:
    import pyarrow as pa

    simple: dict[str, pa.DataType] = {
        "string": pa.string(),
        "long": pa.int64(),
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "int": pa.int32(),
        "short": pa.int16(),
        "byte": pa.int8(),
        "double": pa.float64(),
        "float": pa.float32(),
        "boolean": pa.bool_(),
        "binary": pa.binary(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "timestamp_ntz": pa.timestamp("us"),
    }
    name = type_name.strip().lower()
    if name in simple:
        return simple[name]
    decimal = _DECIMAL.match(name)
    if decimal:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    raise EngineError(
        f"{field_name}: unknown type {type_name!r}; use one of {', '.join(sorted(simple))} or decimal(p,s)"
    )


def _require(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = mapping.get(key)
    if value is None:
        raise EngineError(f"{where}.{key}: required")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EngineError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _optional(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if mapping.get(key) is None:
        return None
    return _require(mapping, key, kind, where)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "a string", "int": "an integer", "list": "a list", "dict": "an object", "bool": "true or false"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _string_list(mapping: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> list[str]:
    value = mapping.get(key)
    if value is None:
        if required:
            raise EngineError(f"{where}.{key}: required (a list of column names)")
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise EngineError(f"{where}.{key}: expected a list of non-empty strings")
    if required and not value:
        raise EngineError(f"{where}.{key}: give at least one column")
    return list(value)


@dataclass(frozen=True)
class DeltaSource:
    """Where the rows of a write come from."""

    kind: Literal["path", "rows", "table"]
    location: str | None = None
    file_format: str = "parquet"
    rows: tuple[Mapping[str, Any], ...] = ()
    version: int | None = None
    timestamp: datetime | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> DeltaSource:
        if not isinstance(raw, Mapping):
            raise EngineError(f"{where}: expected an object with one of path, rows or table")
        given = [k for k in ("path", "rows", "table") if raw.get(k) is not None]
        if len(given) != 1:
            raise EngineError(f"{where}: give exactly one of path, rows or table (got {given or 'none'})")
        if given[0] == "path":
            file_format = raw.get("format", "parquet")
            if file_format not in SOURCE_FORMATS:
                raise EngineError(f"{where}.format: expected one of {', '.join(SOURCE_FORMATS)}")
            return cls("path", resolve_location(_require(raw, "path", str, where)), file_format=file_format)
        if given[0] == "rows":
            rows = _require(raw, "rows", list, where)
            if not all(isinstance(row, Mapping) for row in rows):
                raise EngineError(f"{where}.rows: expected a list of objects (one per row)")
            return cls("rows", rows=tuple(rows))
        version, timestamp = _version_or_timestamp(raw, where)
        return cls("table", resolve_location(_require(raw, "table", str, where)), version=version, timestamp=timestamp)

    def dataset(self) -> Dataset | None:
        """The source as a lineage dataset (inline rows have none)."""
        if self.location is None:
            return None
        return describe_location(self.location)


def _version_or_timestamp(raw: Mapping[str, Any], where: str) -> tuple[int | None, datetime | None]:
    version = _optional(raw, "version", int, where)
    if version is not None and version < 0:
        raise EngineError(f"{where}.version: must be 0 or more")
    text = _optional(raw, "timestamp", str, where)
    if version is not None and text is not None:
        raise EngineError(f"{where}: give version or timestamp, not both")
    if text is None:
        return version, None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise EngineError(f"{where}.timestamp: not an ISO 8601 time ({exc})") from None
    # A time without a zone is read as UTC, the zone of Delta's commit timestamps.
    return None, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version_at(table: DeltaTable, moment: datetime | None, where: str) -> int:
    """The table's version as of ``moment``: the last commit whose timestamp is at or before it.

    The commit timestamps are those the ``history`` operation reports (each commit's ``commitInfo``).
    delta-rs's own ``load_as_version(datetime)`` compares the log files' modification times instead,
    which trail ``commitInfo`` by a millisecond or more: a timestamp copied from the history would
    then open the version before it.
    """
    assert moment is not None
    at_ms = moment.timestamp() * 1000
    versions = [int(c["version"]) for c in table.history() if "version" in c and c.get("timestamp", 0) <= at_ms]
    if not versions:
        raise EngineError(f"{where}.timestamp: {moment.isoformat()} is before the table's first commit")
    return max(versions)


@dataclass(frozen=True)
class DeltaRequest:
    """One validated Delta operation from a task spec's ``delta`` object."""

    operation: str
    table: str
    options: Mapping[str, Any]
    source: DeltaSource | None = None
    keys: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    version: int | None = None
    timestamp: datetime | None = None
    columns: tuple[str, ...] = field(default_factory=tuple)

    WHERE = "spec.delta"

    @classmethod
    def parse(cls, raw: Any) -> DeltaRequest:
        where = cls.WHERE
        # Types, bounds, enumerations and unknown fields: the contract's DeltaOperation; what it cannot say
        # (which operation needs which field) is checked below.
        typed = typed_part(contract.DeltaOperation, raw, where=where)
        operation = typed.operation
        table = resolve_location(typed.table)
        source = None
        if operation in ("append", "overwrite", "merge"):
            source = DeltaSource.parse(raw.get("source"), f"{where}.source")
        elif operation == "create" and raw.get("source") is not None:
            source = DeltaSource.parse(raw["source"], f"{where}.source")
        if operation == "create" and source is None and raw.get("schema") is None:
            raise EngineError(f"{where}: create needs a schema ([{{name, type}}]) or a source to take it from")
        keys = tuple(_string_list(raw, "keys", where, required=operation == "merge"))
        for key in keys:
            if not _PLAIN_IDENTIFIER.match(key):
                raise EngineError(f"{where}.keys: column name {key!r} may not contain a backtick")
        if operation == "delete":
            predicate = _require(raw, "predicate", str, where)
            if not predicate.strip():
                raise EngineError(f'{where}.predicate: empty; to delete every row say so with "true"')
        version, timestamp = (None, None)
        if operation == "read":
            version, timestamp = _version_or_timestamp(raw, where)
            if raw.get("format", "parquet") not in READ_FORMATS:
                raise EngineError(f"{where}.format: expected one of {', '.join(READ_FORMATS)}")
        return cls(
            operation=operation,
            table=table,
            options=dict(raw),
            source=source,
            keys=keys,
            partition_by=tuple(_string_list(raw, "partition_by", where)),
            version=version,
            timestamp=timestamp,
            columns=tuple(_string_list(raw, "columns", where)),
        )


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so results and artifacts hold only JSON types (times become text)."""
    return json.loads(json.dumps(value, default=str))


class DeltaOperations:
    """Runs one ``DeltaRequest`` for a task and reports through its context."""

    def __init__(self, context: TaskContext, request: DeltaRequest) -> None:
        self.context = context
        self.request = request
        self.where = DeltaRequest.WHERE

    # -- reading inputs ------------------------------------------------------------------------------

    def _open(self, version: int | None = None, timestamp: datetime | None = None) -> DeltaTable:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            table = DeltaTable(self.request.table)
        except TableNotFoundError:
            raise EngineError(f"{self.where}.table: no Delta table at {self.request.table} (create it first)") from None
        if version is not None or timestamp is not None:
            try:
                table.load_as_version(version if version is not None else _version_at(table, timestamp, self.where))
            except EngineError:
                raise
            except Exception as exc:
                at = f"version {version}" if version is not None else f"timestamp {timestamp}"
                raise EngineError(f"{self.where}: cannot load {self.request.table} at {at}: {exc}") from None
        return table

    def _table_exists(self) -> bool:
        return is_delta_table(self.request.table)

    def _arrow_schema_of_table(self) -> pa.Schema | None:
        import pyarrow as pa

        if not self._table_exists():
            return None
        return pa.schema(self._open().schema().to_arrow())

    def _load_source(self, target_schema: pa.Schema | None) -> pa.Table:
        import pyarrow as pa

        source = self.request.source
        assert source is not None  # parse() guarantees a source for the operations that call this
        where = f"{self.where}.source"
        if source.kind == "rows":
            rows = list(source.rows)
            if target_schema is None:
                try:
                    return pa.Table.from_pylist(rows)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise EngineError(f"{where}.rows: rows do not form a table: {exc}") from None
            unknown = sorted({key for row in rows for key in row} - set(target_schema.names))
            if unknown:
                raise EngineError(f"{where}.rows: column(s) {', '.join(unknown)} are not in {self.request.table}")
            try:
                return pa.Table.from_pylist(rows, schema=target_schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise EngineError(f"{where}.rows: rows do not match the table's schema: {exc}") from None
        if source.kind == "table":
            from deltalake import DeltaTable

            assert source.location is not None
            if not is_delta_table(source.location):
                raise EngineError(f"{where}.table: no Delta table at {source.location}")
            table = DeltaTable(source.location)
            if source.version is not None or source.timestamp is not None:
                table.load_as_version(
                    source.version if source.version is not None else _version_at(table, source.timestamp, where)
                )
            return table.to_pyarrow_table()
        assert source.location is not None
        return self._read_files(source.location, source.file_format, where)

    def _conform(self, data: pa.Table, target_schema: pa.Schema | None) -> pa.Table:
        """Give the source the table's column order and types (a Parquet int32 into a long column, say).

        With ``schema_mode`` set, delta-rs evolves the schema itself, so the source is left alone.
        """
        import pyarrow as pa

        if target_schema is None or self.request.options.get("schema_mode") is not None:
            return data
        where = f"{self.where}.source"
        missing = [name for name in target_schema.names if name not in data.schema.names]
        extra = [name for name in data.schema.names if name not in target_schema.names]
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"missing column(s) {', '.join(missing)}")
            if extra:
                problems.append(f"column(s) {', '.join(extra)} not in the table (set schema_mode to merge to add them)")
            raise EngineError(f"{where}: does not match {self.request.table}: {'; '.join(problems)}")
        try:
            return data.select(target_schema.names).cast(target_schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise EngineError(f"{where}: cannot convert to the types of {self.request.table}: {exc}") from None

    def _read_files(self, location: str, file_format: str, where: str) -> pa.Table:
        import pyarrow as pa
        import pyarrow.dataset as ds

        if "://" not in location and not Path(location).exists():
            raise EngineError(f"{where}.path: nothing at {location}")
        try:
            return ds.dataset(location, format=file_format).to_table()
        except (OSError, pa.ArrowInvalid) as exc:
            raise EngineError(f"{where}.path: cannot read {location} as {file_format}: {exc}") from None

    # -- running ------------------------------------------------------------------------------------------

    def run(self) -> EngineResult:
        request = self.request
        self.context.check_cancelled()
        self.context.emit(
            "delta.operation",
            f"delta {request.operation} on {request.table}",
            data={"operation": request.operation, "table": request.table},
        )
        handlers: dict[str, Callable[[], EngineResult]] = {
            "create": self._create,
            "append": lambda: self._write("append"),
            "overwrite": lambda: self._write("overwrite"),
            "merge": self._merge,
            "delete": self._delete,
            "optimize": self._optimize,
            "vacuum": self._vacuum,
            "history": self._history,
            "read": self._read,
        }
        try:
            return handlers[request.operation]()
        except (EngineError, TaskCancelled):
            raise
        except Exception as exc:  # delta-rs and pyarrow errors, given the operation and table they concern
            raise EngineError(
                f"delta {request.operation} on {request.table} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _version(self) -> int | None:
        return int(self._open().version()) if self._table_exists() else None

    def _file_sizes(self) -> dict[str, int]:
        import pyarrow as pa

        if not self._table_exists():
            return {}
        actions = pa.table(self._open().get_add_actions(flatten=True))
        return dict(zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(), strict=True))

    def _committed(self, before_version: int | None, before_files: Mapping[str, int], metrics: Any) -> EngineResult:
        """Check the output cap on the files the commit added, report lineage, and build the result."""
        table = self._open()
        version = int(table.version())
        added_bytes = sum(size for path, size in self._file_sizes().items() if path not in before_files)
        cap = self.context.limits.max_output_bytes
        if cap is not None and added_bytes > cap and self.request.operation in CAPPED_OPERATIONS:
            restored = ""
            if before_version is not None:
                table.restore(before_version)
                restored = f"; the table was restored to version {before_version}"
            self.context.emit(
                "limits.output_exceeded",
                f"delta {self.request.operation} wrote {added_bytes} bytes, over max_output_bytes={cap}",
                level="error",
                data={"output_bytes": added_bytes, "max_output_bytes": cap, "restored_version": before_version},
            )
            raise EngineError(
                f"delta {self.request.operation} on {self.request.table} wrote {added_bytes} bytes, over the "
                f"max_output_bytes cap of {cap}{restored}"
            )
        self.context.emit(
            "delta.committed",
            f"{self.request.table} is at version {version}",
            data={"version": version, "added_bytes": added_bytes, "metrics": _json_safe(metrics)},
        )
        self._report_lineage(table)
        return EngineResult.ok(
            operation=self.request.operation,
            table=self.request.table,
            version=version,
            previous_version=before_version,
            added_bytes=added_bytes,
            metrics=_json_safe(metrics),
        )

    def _report_lineage(self, table: DeltaTable) -> None:
        target = Dataset(dataset_ref(self.request.table), delta_columns(table.schema().to_json()))
        source = self.request.source.dataset() if self.request.source is not None else None
        payload = lineage_payload(
            outputs=[target], inputs=[source] if source is not None else [], job_name=f"delta.{self.request.operation}"
        )
        if source is not None and source.columns:
            # delta-rs writes a source's columns into the table's columns of the same name.
            written = {name for name, _ in target.columns}
            pairs = [{"upstream_column": n, "downstream_column": n} for n, _ in source.columns if n in written]
            for edge in payload["edges"]:
                if pairs:
                    edge["column_lineage"] = pairs
        report_lineage(self.context, payload)

    def _create(self) -> EngineResult:
        from deltalake import DeltaTable, write_deltalake

        if_exists = self.request.options.get("if_exists", "error")
        if if_exists not in ("error", "ignore"):
            raise EngineError(f"{self.where}.if_exists: expected error or ignore")
        if self._table_exists():
            if if_exists == "ignore":
                self.context.emit("delta.exists", f"{self.request.table} exists; nothing to create")
                return EngineResult.ok(
                    operation="create", table=self.request.table, version=self._version(), created=False
                )
            raise EngineError(f"{self.where}.table: a Delta table already exists at {self.request.table}")
        name = self.request.options.get("name")
        description = self.request.options.get("description")
        partition_by = list(self.request.partition_by) or None
        if self.request.source is not None:
            data = self._load_source(None)
            write_deltalake(
                self.request.table, data, mode="error", partition_by=partition_by, name=name, description=description
            )
            metrics: Any = {"rows": data.num_rows}
        else:
            schema = self._schema_from_spec()
            DeltaTable.create(self.request.table, schema, partition_by=partition_by, name=name, description=description)
            metrics = {"rows": 0}
        return self._committed(None, {}, metrics)

    def _schema_from_spec(self) -> pa.Schema:
        import pyarrow as pa

        raw = self.request.options.get("schema")
        where = f"{self.where}.schema"
        if not isinstance(raw, list) or not raw:
            raise EngineError(f"{where}: expected a non-empty list of {{name, type}}")
        fields = []
        for index, column in enumerate(raw):
            at = f"{where}[{index}]"
            if not isinstance(column, Mapping):
                raise EngineError(f"{at}: expected an object with name and type")
            name = _require(column, "name", str, at)
            nullable = column.get("nullable", True)
            fields.append(
                pa.field(name, _arrow_type(_require(column, "type", str, at), f"{at}.type"), nullable=nullable)
            )
        for column in self.request.partition_by:
            if column not in {f.name for f in fields}:
                raise EngineError(f"{self.where}.partition_by: {column!r} is not a column of the schema")
        return pa.schema(fields)

    def _write(self, mode: Literal["append", "overwrite"]) -> EngineResult:
        from deltalake import write_deltalake

        before_version = self._version()
        before_files = self._file_sizes()
        target_schema = self._arrow_schema_of_table()
        data = self._conform(self._load_source(target_schema), target_schema)
        predicate = self.request.options.get("predicate") if mode == "overwrite" else None
        schema_mode = self.request.options.get("schema_mode")
        if schema_mode is not None and schema_mode not in ("merge", "overwrite"):
            raise EngineError(f"{self.where}.schema_mode: expected merge or overwrite")
        self.context.check_cancelled()
        partition_by = list(self.request.partition_by) or None
        if mode == "append":
            write_deltalake(self.request.table, data, mode="append", partition_by=partition_by, schema_mode=schema_mode)
        else:
            write_deltalake(
                self.request.table,
                data,
                mode="overwrite",
                partition_by=partition_by,
                predicate=predicate,
                schema_mode=schema_mode,
            )
        return self._committed(before_version, before_files, {"rows": data.num_rows, "mode": mode})

    def _merge(self) -> EngineResult:
        table = self._open()
        before_version = int(table.version())
        before_files = self._file_sizes()
        target_schema = self._arrow_schema_of_table()
        assert target_schema is not None
        data = self._conform(self._load_source(target_schema), target_schema)
        for key in self.request.keys:
            sides = (("table", target_schema.names), ("source", data.schema.names))
            missing = [side for side, names in sides if key not in names]
            if missing:
                raise EngineError(f"{self.where}.keys: column {key!r} is not in the {' and '.join(missing)}")
        predicate = " AND ".join(f"target.`{key}` = source.`{key}`" for key in self.request.keys)
        merger = table.merge(data, predicate, source_alias="source", target_alias="target")
        if self.request.options.get("when_matched", "update") == "update":
            merger = merger.when_matched_update_all()
        if self.request.options.get("when_not_matched", "insert") == "insert":
            merger = merger.when_not_matched_insert_all()
        if self.request.options.get("delete_not_matched_by_source"):
            merger = merger.when_not_matched_by_source_delete()
        self.context.check_cancelled()
        metrics = merger.execute()
        return self._committed(before_version, before_files, metrics)

    def _delete(self) -> EngineResult:
        table = self._open()
        before_version = int(table.version())
        before_files = self._file_sizes()
        predicate = str(self.request.options["predicate"])
        try:
            metrics = table.delete(None if predicate.strip().lower() == "true" else predicate)
        except Exception as exc:  # delta-rs raises its own errors for predicates it cannot parse or plan
            raise EngineError(f"{self.where}.predicate: {predicate!r} failed: {exc}") from None
        return self._committed(before_version, before_files, metrics)

    def _optimize(self) -> EngineResult:
        table = self._open()
        before_version = int(table.version())
        before_files = self._file_sizes()
        target_size = self.request.options.get("target_size")
        if self.request.options.get("mode", "compact") == "z_order":
            columns = _string_list(self.request.options, "z_order", self.where, required=True)
            metrics = table.optimize.z_order(columns, target_size=target_size)
        else:
            metrics = table.optimize.compact(target_size=target_size)
        return self._committed(before_version, before_files, metrics)

    def _vacuum(self) -> EngineResult:
        table = self._open()
        dry_run = bool(self.request.options.get("dry_run", False))
        try:
            removed = table.vacuum(
                retention_hours=self.request.options.get("retention_hours"),
                dry_run=dry_run,
                enforce_retention_duration=bool(self.request.options.get("enforce_retention_duration", True)),
            )
        except Exception as exc:  # delta-rs refuses a retention below the table's minimum
            raise EngineError(f"{self.where}.retention_hours: vacuum refused: {exc}") from None
        self.context.emit(
            "delta.vacuumed",
            f"{'would remove' if dry_run else 'removed'} {len(removed)} file(s) from {self.request.table}",
            data={"files": removed[:100], "count": len(removed), "dry_run": dry_run},
        )
        if not dry_run:
            self._report_lineage(self._open())
        return EngineResult.ok(
            operation="vacuum",
            table=self.request.table,
            version=int(table.version()),
            removed_files=len(removed),
            dry_run=dry_run,
        )

    def _history(self) -> EngineResult:
        table = self._open()
        history = _json_safe(table.history(self.request.options.get("limit")))
        path = self.context.work_dir / "delta" / "history.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(history, indent=2), encoding="utf-8")
        self._upload_checked(path, "application/json", {"table": self.request.table, "commits": len(history)})
        return EngineResult.ok(
            operation="history",
            table=self.request.table,
            version=int(table.version()),
            commits=[{"version": c.get("version"), "operation": c.get("operation")} for c in history[:50]],
        )

    def _read(self) -> EngineResult:
        import pyarrow.parquet as pq

        table = self._open(self.request.version, self.request.timestamp)
        data = table.to_pyarrow_table(columns=list(self.request.columns) or None)
        limit = self.request.options.get("limit")
        if limit is not None:
            data = data.slice(0, limit)
        version = int(table.version())
        file_format = self.request.options.get("format", "parquet")
        stem = f"{Path(dataset_ref(self.request.table).name).name or 'table'}-v{version}"
        path = self.context.work_dir / "delta" / f"{stem}.{file_format}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if file_format == "json":
            path.write_text(json.dumps(_json_safe(data.to_pylist())), encoding="utf-8")
            content_type = "application/json"
        else:
            pq.write_table(data, path)
            content_type = "application/vnd.apache.parquet"
        self._upload_checked(
            path, content_type, {"table": self.request.table, "version": version, "rows": data.num_rows}
        )
        return EngineResult.ok(
            operation="read", table=self.request.table, version=version, rows=data.num_rows, artifact=path.name
        )

    def _upload_checked(self, path: Path, content_type: str, metadata: Mapping[str, Any]) -> None:
        size = path.stat().st_size
        cap = self.context.limits.max_output_bytes
        if cap is not None and size > cap:
            raise EngineError(
                f"delta {self.request.operation} result {path.name} is {size} bytes, over the max_output_bytes cap "
                f"of {cap}; select fewer columns or set limit"
            )
        self.context.upload_artifact(path, name=path.name, content_type=content_type, metadata=metadata)


def report_lineage(context: TaskContext, payload: Mapping[str, Any]) -> None:
    """Send a ``lineage`` report; a failure is recorded as a warning event, never fails the task.

    The data is already committed when lineage is reported: failing the task would make a retry
    write it a second time (an append would double), which is worse than a missing lineage row.
    """
    try:
        context.report("lineage", payload)
    except Exception as exc:
        context.emit("lineage.failed", f"lineage was not recorded: {exc}", level="warning", data=dict(payload))
    else:
        context.emit(
            "lineage",
            f"{len(payload['datasets'])} dataset(s), {len(payload['edges'])} edge(s)",
            data=dict(payload),
        )


def run_delta_operation(context: TaskContext, raw: Any) -> EngineResult:
    """Validate the spec's ``delta`` object and run the operation."""
    request = DeltaRequest.parse(raw)
    if not delta_available():
        raise EngineError("Delta operations need deltalake and pyarrow on the agent: install its spark extra")
    return DeltaOperations(context, request).run()


def delta_available() -> bool:
    """Whether deltalake (and pyarrow, which reading and sources need) are installed."""
    from importlib.util import find_spec

    return find_spec("deltalake") is not None and find_spec("pyarrow") is not None


class DeltaEngine(Engine):
    """The same Delta operations as a ``spark`` task's ``delta`` object, for agents without Java.

    A task ``{"engine": "delta", "delta": {...}}`` runs exactly what ``{"engine": "spark", "delta": {...}}``
    runs; the separate name lets Delta maintenance be routed to machines that have no Spark.
    """

    name = "delta"

    @classmethod
    def available(cls) -> bool:
        return delta_available()

    def run(self, context: TaskContext) -> EngineResult:
        typed_spec(contract.DeltaTaskSpec, context.spec, key=context.task_key, engine=self.name)
        return run_delta_operation(context, context.spec["delta"])
