"""Trino: SQL tasks on a Trino cluster through the ``trino`` client (HTTP ``/v1/statement``, ``nextUri`` paging).

The cluster and its authentication are agent configuration (environment prefix
``LAKEHOUSE_EXECUTOR_TRINO_``), never task specs, so a spec cannot send the agent's credentials
elsewhere: ``URL`` (``https://trino.example.com:8443``), ``AUTH`` = ``none`` | ``basic`` | ``jwt``
with ``PASSWORD`` (basic) or ``JWT`` / ``JWT_FILE`` (a token, or a file re-read for every task, as a
Kubernetes projected token is), ``USER`` (the default user), ``VERIFY`` (TLS: true, false or a CA
bundle path) and ``ALLOW_INSECURE_AUTH`` (credentials over plain HTTP, for a TLS-terminating sidecar).

A task's spec picks ``catalog``, ``schema``, ``user``, ``roles`` (``{"system": "analyst"}``),
``client_tags`` and ``session_properties``; the agent adds client tags naming the run and task.
Results stream page by page (each ``nextUri`` page becomes an Arrow batch) into the shared writer.
Before each statement that reads tables, ``EXPLAIN (TYPE IO, FORMAT JSON)`` sums the
``outputSizeInBytes`` of every input table: that is the scan estimate the cap is checked against
(unknown, "NaN", when a table has no statistics). When a cap applies the session property
``query_max_scan_physical_bytes`` is also set, so the cluster itself stops a query whose estimate was
unknown (turn off with ``ENFORCE_SCAN_CAP_ON_SERVER=false`` for clusters older than that property).
Cancel sends ``DELETE`` to the query's current ``nextUri`` (the client's ``cancel()``).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskContext, importable
from executor_agent.engines.sql_support.history import QueryActuals
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

SOURCE = "lakehouse-control-room"
Converter = Callable[[Any], Any]


class TrinoSettings(BaseSettings):
    """The Trino cluster this agent runs SQL tasks on (environment prefix LAKEHOUSE_EXECUTOR_TRINO_)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_EXECUTOR_TRINO_", extra="ignore")

    url: str | None = Field(default=None, description="Coordinator URL, e.g. https://trino.example.com:8443.")
    user: str = Field(default="lakehouse", description="User queries run as unless a task names another.")
    auth: Literal["none", "basic", "jwt"] = Field(default="none", description="How the agent authenticates.")
    password: SecretStr | None = Field(default=None, description="Password of USER for basic authentication.")
    jwt: SecretStr | None = Field(default=None, description="A JWT for jwt authentication.")
    jwt_file: Path | None = Field(default=None, description="A file holding the JWT, re-read for every task.")
    catalog: str | None = Field(default=None, description="Default catalog.")
    schema_name: str | None = Field(default=None, alias="LAKEHOUSE_EXECUTOR_TRINO_SCHEMA",
                                    description="Default schema.")  # fmt: skip
    verify: str = Field(default="true", description="TLS verification: true, false, or a CA bundle path.")
    allow_insecure_auth: bool = Field(default=False, description="Allow credentials over plain http://.")
    request_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one HTTP request to Trino.")
    enforce_scan_cap_on_server: bool = Field(
        default=True, description="Also set query_max_scan_physical_bytes when a scanned-bytes cap applies."
    )


class TrinoEngine(Engine):
    """SQL tasks on a Trino cluster."""

    name: ClassVar[str] = "trino"

    @classmethod
    def available(cls) -> bool:
        return importable("pyarrow", "trino") and bool(TrinoSettings().url)

    def run(self, context: TaskContext) -> EngineResult:
        spec = SqlTaskSpec.parse(context.spec, engine="trino", key=context.task_key)
        return run_sql_task(context, TrinoBackend(context, TrinoSettings(), spec), spec)


class TrinoBackend(SqlBackend):
    """One client session (user, catalog, schema, properties, roles, tags) for one task."""

    engine: ClassVar[str] = "trino"

    def __init__(self, context: TaskContext, settings: TrinoSettings, task_spec: SqlTaskSpec) -> None:
        import requests
        import trino.auth
        import trino.client

        self._client = trino.client
        self.context = context
        self.settings = settings
        if not settings.url:
            raise EngineError("the Trino engine has no cluster: set LAKEHOUSE_EXECUTOR_TRINO_URL on this agent")
        url = urlparse(settings.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise EngineError(f"LAKEHOUSE_EXECUTOR_TRINO_URL must be http(s)://host:port, got {settings.url!r}")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 8080)
        spec = context.spec
        self.auth = self._authentication(trino.auth)
        properties = string_map(spec, "session_properties")
        scan_caps = [c for c in (context.limits.scanned_bytes_per_query, task_spec.max_scan_bytes) if c is not None]
        if scan_caps and settings.enforce_scan_cap_on_server:
            properties.setdefault("query_max_scan_physical_bytes", f"{min(scan_caps)}B")
        tags = spec.get("client_tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) and t and "," not in t for t in tags):
            raise EngineError("client_tags: must be a list of tags (strings without commas)")
        roles = string_map(spec, "roles")
        self.session = trino.client.ClientSession(
            user=optional_string(spec, "user") or settings.user,
            catalog=optional_string(spec, "catalog") or settings.catalog,
            schema=optional_string(spec, "schema") or settings.schema_name,
            source=SOURCE,
            properties=properties,
            client_tags=[*tags, f"lakehouse-run:{context.run_id}", f"lakehouse-task:{context.task_key}"],
            roles=roles or None,
            encoding=None,  # the direct protocol: pages arrive in the nextUri answers
        )
        self.http = requests.Session()
        verify = settings.verify.strip()
        self.http.verify = verify if verify.lower() not in ("true", "false") else verify.lower() == "true"
        self._lock = threading.Lock()
        self._current: Any = None

    def _authentication(self, auth_module: Any) -> Any:
        settings = self.settings
        if settings.auth == "none":
            return None
        if self.scheme == "http" and not settings.allow_insecure_auth:
            raise EngineError(
                f"LAKEHOUSE_EXECUTOR_TRINO_AUTH={settings.auth} sends credentials, and {settings.url} is plain HTTP: "
                "use https://, or set LAKEHOUSE_EXECUTOR_TRINO_ALLOW_INSECURE_AUTH=true when TLS ends in front of Trino"
            )
        if settings.auth == "basic":
            if settings.password is None:
                raise EngineError("LAKEHOUSE_EXECUTOR_TRINO_AUTH=basic needs LAKEHOUSE_EXECUTOR_TRINO_PASSWORD")
            return auth_module.BasicAuthentication(settings.user, settings.password.get_secret_value())
        token = settings.jwt.get_secret_value() if settings.jwt else None
        if settings.jwt_file is not None:
            try:
                token = settings.jwt_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise EngineError(f"LAKEHOUSE_EXECUTOR_TRINO_JWT_FILE: cannot read {settings.jwt_file}: {exc}") from exc
        if not token:
            raise EngineError("LAKEHOUSE_EXECUTOR_TRINO_AUTH=jwt needs LAKEHOUSE_EXECUTOR_TRINO_JWT or _JWT_FILE")
        return auth_module.JWTAuthentication(token)

    def _query(self, sql: str) -> Any:
        request = self._client.TrinoRequest(
            host=self.host,
            port=self.port,
            client_session=self.session,
            http_session=self.http,
            http_scheme=self.scheme,
            auth=self.auth,
            max_attempts=3,
            request_timeout=self.settings.request_timeout_s,
        )
        return self._client.TrinoQuery(request, query=sql)

    def _failure(self, exc: Exception, what: str) -> StatementFailed:
        """A statement failure with Trino's error name, message and position."""
        from trino.exceptions import TrinoQueryError

        if isinstance(exc, TrinoQueryError):
            where = ""
            if exc.error_location is not None:
                where = f" at line {exc.error_location[0]}, column {exc.error_location[1]}"
            text = f"Trino {what} {exc.query_id or ''} failed{where}: {exc.error_name}: {exc.message}"
            # USER_ERROR fails the same way again; INTERNAL_ERROR, EXTERNAL and INSUFFICIENT_RESOURCES may not.
            transient = exc.error_type != "USER_ERROR"
            return StatementFailed(text.replace("  ", " "), query_id=exc.query_id, retryable=transient)
        # HTTP and connection failures: the cluster may answer the next attempt.
        return StatementFailed(f"Trino {what} failed: {type(exc).__name__}: {exc}", retryable=True)

    # SqlBackend ---------------------------------------------------------------------------------------

    def identity(self) -> SessionIdentity:
        return SessionIdentity(user=self.session.user, catalog=self.session.catalog, schema=self.session.schema)

    def estimate(self, statement: Statement) -> ScanEstimate:
        query = self._query(f"EXPLAIN (TYPE IO, FORMAT JSON) {statement.text}")
        with self._lock:
            self._current = query
        try:
            rows = list(query.execute())
        except Exception as exc:
            failure = self._failure(exc, "EXPLAIN")
            # The statement itself never ran: no query id of its own.
            raise StatementFailed(str(failure), retryable=failure.retryable) from exc
        finally:
            with self._lock:
                self._current = None
        try:
            document = json.loads(rows[0][0])
        except (IndexError, TypeError, ValueError) as exc:
            raise StatementFailed(
                f"Trino EXPLAIN (TYPE IO) answered something that is not an IO plan: {rows!r:.300}"
            ) from exc
        tables: list[dict[str, Any]] = []
        unknown: list[str] = []
        total = 0.0
        total_rows = 0.0
        for info in document.get("inputTableColumnInfos") or []:
            table = info.get("table") or {}
            schema_table = table.get("schemaTable") or {}
            name = f"{table.get('catalog')}.{schema_table.get('schema')}.{schema_table.get('table')}"
            estimate = info.get("estimate") or {}
            size = _number(estimate.get("outputSizeInBytes"))
            rows_estimate = _number(estimate.get("outputRowCount"))
            tables.append({"table": name, "rows": rows_estimate, "bytes": size})
            if size is None:
                unknown.append(name)
            else:
                total += size
                total_rows += rows_estimate or 0
        if unknown:
            return ScanEstimate(None, None, tables, f"no statistics for {', '.join(unknown)}")
        return ScanEstimate(int(total), int(total_rows), tables, "sum of outputSizeInBytes of the input tables")

    def execute(self, statement: Statement) -> Execution:
        query = self._query(statement.text)
        with self._lock:
            self._current = query
        try:
            result = query.execute()
            columns = query.columns
        except Exception as exc:
            raise self._failure(exc, "query") from exc
        return TrinoExecution(self, query, result, columns)

    def interrupt(self) -> None:
        with self._lock:
            query = self._current
        if query is None or query.finished or query.cancelled:
            return
        try:
            query.cancel()  # DELETE nextUri
        except Exception as exc:
            self.context.emit("sql.cancel.failed", f"cancelling Trino query {query.query_id} failed: {exc}",
                              level="warning")  # fmt: skip
        else:
            self.context.emit("sql.cancel.sent", f"DELETE sent for Trino query {query.query_id}",
                              data={"query_id": query.query_id})  # fmt: skip

    def close(self) -> None:
        self.interrupt()
        self.http.close()


class TrinoExecution(Execution):
    """A statement on Trino: its ``columns`` as an Arrow schema and its pages as batches."""

    def __init__(self, backend: TrinoBackend, query: Any, result: Any, columns: list[dict[str, Any]] | None) -> None:
        import pyarrow as pa

        self._pa = pa
        self.backend = backend
        self.query = query
        self.result = result
        self.query_id = query.query_id
        self.update_count = query.update_count
        self._schema = None
        self._converters: list[Converter | None] = []
        if query.update_type is None and columns:
            fields = []
            for column in columns:
                arrow_type, converter = arrow_of(column["typeSignature"])
                fields.append(pa.field(column["name"], arrow_type))
                self._converters.append(converter)
            self._schema = pa.schema(fields)

    @property
    def schema(self) -> Any:
        return self._schema

    def batches(self) -> Iterator[Any]:
        try:
            first = self.result.rows
            if first:
                yield from self._to_batches(first)
            while not self.query.finished and not self.query.cancelled:
                rows = self.query.fetch()
                if rows:
                    yield from self._to_batches(rows)
        except StatementFailed:
            raise
        except Exception as exc:
            raise self.backend._failure(exc, "query") from exc

    def _to_batches(self, rows: Any) -> Iterator[Any]:
        if self._schema is None:
            return
        page = list(rows)  # a direct-protocol page (or a spooled segment): bounded by the server's page size
        if not page:
            return
        pa = self._pa
        arrays = []
        for index, (field, converter) in enumerate(zip(self._schema, self._converters, strict=True)):
            values = [row[index] for row in page]
            if converter is not None:
                values = [converter(v) if v is not None else None for v in values]
            arrays.append(pa.array(values, type=field.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def actuals(self) -> QueryActuals:
        stats = self.query.stats or {}

        def figure(name: str) -> int | None:
            value = stats.get(name)
            return int(value) if isinstance(value, int | float) else None

        return QueryActuals(
            rows=self.query.update_count,
            bytes_read=figure("physicalInputBytes") or figure("processedBytes"),
            cpu_time_ms=figure("cpuTimeMillis"),
            peak_memory_bytes=figure("peakMemoryBytes"),
            queued_ms=figure("queuedTimeMillis"),
            engine_elapsed_ms=figure("elapsedTimeMillis"),
        )


def _number(value: Any) -> float | None:
    """A figure of an IO plan: a number, or None for NaN (given as the string "NaN" or a JSON NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def arrow_of(signature: Mapping[str, Any]) -> tuple[Any, Converter | None]:
    """The Arrow type holding a Trino type, and how to turn the client's Python value into an Arrow value."""
    import pyarrow as pa

    raw = str(signature.get("rawType", "")).lower()
    arguments = signature.get("arguments") or []

    def long_argument(index: int, default: int) -> int:
        try:
            return int(arguments[index]["value"])
        except (IndexError, KeyError, TypeError, ValueError):
            return default

    simple = {
        "boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(),
        "bigint": pa.int64(), "real": pa.float32(), "double": pa.float64(), "varchar": pa.string(),
        "char": pa.string(), "json": pa.string(), "varbinary": pa.binary(), "date": pa.date32(),
    }  # fmt: skip
    if raw in simple:
        return simple[raw], None
    if raw == "decimal":
        precision = long_argument(0, 38)
        return (pa.decimal128(precision, long_argument(1, 0)) if precision <= 38 else pa.string()), None
    if raw == "timestamp":
        return pa.timestamp("us"), None
    if raw == "timestamp with time zone":
        return pa.timestamp("us", tz="UTC"), None
    if raw == "time":
        return pa.time64("us"), None
    if raw == "interval day to second":
        return pa.duration("us"), None
    if raw == "interval year to month":
        return pa.string(), lambda v: f"{v.years}-{v.months}"
    if raw == "array":
        inner, convert = arrow_of(arguments[0]["value"])
        if convert is None:
            return pa.list_(inner), None
        return pa.list_(inner), lambda v: [convert(i) if i is not None else None for i in v]
    if raw == "map":
        key_type, key_convert = arrow_of(arguments[0]["value"])
        value_type, value_convert = arrow_of(arguments[1]["value"])
        keys = key_convert or (lambda k: k)
        values = value_convert or (lambda v: v)
        return pa.map_(key_type, value_type), lambda m: [
            (keys(k), values(v) if v is not None else None) for k, v in m.items()
        ]
    if raw == "row":
        names: list[str] = []
        fields = []
        converters: list[Converter | None] = []
        for position, argument in enumerate(arguments):
            value = argument.get("value") or {}
            name = ((value.get("fieldName") or {}).get("name")) or f"field{position}"
            field_type, field_convert = arrow_of(value.get("typeSignature") or {})
            names.append(name)
            fields.append(pa.field(name, field_type))
            converters.append(field_convert)
        return pa.struct(fields), lambda row: {
            name: (convert(item) if convert is not None and item is not None else item)
            for name, item, convert in zip(names, row, converters, strict=False)
        }
    if raw == "unknown":
        return pa.null(), None
    # uuid, ipaddress, time with time zone, HyperLogLog, geometry …: their text form.
    return pa.string(), str
