"""A Trino coordinator for tests: Trino's client protocol over HTTP, queries executed by DuckDB.

Written from the public client protocol (what the ``trino`` Python client and JDBC driver speak):

* ``POST /v1/statement`` with the SQL as body and ``X-Trino-*`` headers (user, source, catalog, schema,
  session properties, client tags, roles) answers ``QueryResults``: ``id``, ``infoUri``, ``nextUri``,
  ``stats`` (state QUEUED → RUNNING → FINISHED | FAILED, splits, rows, bytes, CPU, wall and queued
  time, peak memory), and later ``columns`` (``type`` + ``typeSignature``), ``data`` pages,
  ``updateType``/``updateCount`` or an ``error`` object (message, errorCode, errorName, errorType,
  failureInfo).
* ``GET`` on a ``nextUri`` long-polls up to a second for the next page; the token in the URI moves on
  with every answer and the previous answer is served again to a retry.
* ``DELETE`` on a ``nextUri`` (the client's ``cancel()``) or on ``/v1/query/{queryId}`` cancels: the
  DuckDB statement is interrupted, answers 204, and the cancel is recorded for tests.
* ``EXPLAIN`` in its forms, ``EXPLAIN (TYPE IO, FORMAT JSON)`` with table estimates (see explain.py);
  ``USE``, ``SET SESSION``/``RESET SESSION`` answered with the ``X-Trino-Set-*``/``Clear-Session``
  headers; ``SHOW CATALOGS``; a trailing semicolon is a syntax error as in Trino.
* Authentication by configuration: none, HTTP basic (user:password list) or JWT (HS256 secret); the
  principal must match ``X-Trino-User``.
* ``GET /v1/info`` and ``GET /v1/query/{queryId}`` (a subset of QueryInfo).

Tests observe the server through ``/_test/queries`` and ``/_test/cancels`` (not part of Trino).
SQL is DuckDB's dialect, with ``sequence(a, b)`` defined so Trino's ``UNNEST(sequence(…))`` works.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import queue
import random
import re
import string
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import pyarrow as pa

from tests.trino_server import explain, types

VERSION = "476-lakehouse-test"
SYSTEM_SESSION_PROPERTIES = frozenset(
    {
        "query_max_run_time", "query_max_execution_time", "query_max_memory", "query_max_total_memory",
        "query_max_scan_physical_bytes", "join_distribution_type", "join_reordering_strategy", "query_priority",
        "task_concurrency", "spill_enabled", "time_zone_id",
    }
)  # fmt: skip
ERROR_CODES: dict[str, tuple[int, str]] = {
    "GENERIC_USER_ERROR": (0, "USER_ERROR"),
    "SYNTAX_ERROR": (1, "USER_ERROR"),
    "USER_CANCELED": (3, "USER_ERROR"),
    "PERMISSION_DENIED": (4, "USER_ERROR"),
    "NOT_FOUND": (5, "USER_ERROR"),
    "FUNCTION_NOT_FOUND": (6, "USER_ERROR"),
    "INVALID_CAST_ARGUMENT": (9, "USER_ERROR"),
    "ALREADY_EXISTS": (12, "USER_ERROR"),
    "NOT_SUPPORTED": (13, "USER_ERROR"),
    "INVALID_SESSION_PROPERTY": (14, "USER_ERROR"),
    "CONSTRAINT_VIOLATION": (16, "USER_ERROR"),
    "NUMERIC_VALUE_OUT_OF_RANGE": (19, "USER_ERROR"),
    "CATALOG_NOT_FOUND": (44, "USER_ERROR"),
    "SCHEMA_NOT_FOUND": (45, "USER_ERROR"),
    "TABLE_NOT_FOUND": (46, "USER_ERROR"),
    "COLUMN_NOT_FOUND": (47, "USER_ERROR"),
    "GENERIC_INTERNAL_ERROR": (65536, "INTERNAL_ERROR"),
}
_STATEMENT_PATH = re.compile(r"^/v1/statement/(queued|executing)/(?P<id>[^/]+)/(?P<slug>[^/]+)/(?P<token>\d+)$")
_QUERY_PATH = re.compile(r"^/v1/query/(?P<id>[^/]+)$")
_USE = re.compile(r"^USE\s+(?:(?P<catalog>\w+)\.)?(?P<schema>\w+)$", re.IGNORECASE)
_SET_SESSION = re.compile(r"^SET\s+SESSION\s+(?P<name>[\w.]+)\s*=\s*(?P<value>.+)$", re.IGNORECASE | re.DOTALL)
_RESET_SESSION = re.compile(r"^RESET\s+SESSION\s+(?P<name>[\w.]+)$", re.IGNORECASE)
_UPDATE_TYPES = (
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?TABLE\s.*\bAS\b", re.I | re.S), "CREATE TABLE", True),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?TABLE\b", re.I), "CREATE TABLE", False),
    (re.compile(r"^CREATE\s+SCHEMA\b", re.I), "CREATE SCHEMA", False),
    (re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?VIEW\b", re.I), "CREATE VIEW", False),
    (re.compile(r"^DROP\s+TABLE\b", re.I), "DROP TABLE", False),
    (re.compile(r"^DROP\s+SCHEMA\b", re.I), "DROP SCHEMA", False),
    (re.compile(r"^DROP\s+VIEW\b", re.I), "DROP VIEW", False),
    (re.compile(r"^INSERT\b", re.I), "INSERT", True),
    (re.compile(r"^DELETE\b", re.I), "DELETE", True),
    (re.compile(r"^UPDATE\b", re.I), "UPDATE", True),
    (re.compile(r"^MERGE\b", re.I), "MERGE", True),
)


class QueryFailure(Exception):
    """A query error with Trino's error name (and so its code and type)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message

    def as_error(self) -> dict[str, Any]:
        code, kind = ERROR_CODES.get(self.name, ERROR_CODES["GENERIC_INTERNAL_ERROR"])
        return {
            "message": self.message,
            "errorCode": code,
            "errorName": self.name,
            "errorType": kind,
            "failureInfo": {
                "type": "io.trino.spi.TrinoException",
                "message": self.message,
                "suppressed": [],
                "stack": [],
            },
        }


@dataclass
class ServerConfig:
    """What the server serves and how it authenticates."""

    catalogs: dict[str, str]  # Trino catalog name -> DuckDB database path (or :memory:)
    auth: str = "none"  # none | basic | jwt
    users: dict[str, str] = field(default_factory=dict)  # basic: user -> password
    jwt_secret: str | None = None
    page_rows: int = 10_000
    max_wait_s: float = 1.0
    threads: int = 1
    tables_without_stats: frozenset[str] = frozenset()  # catalog.schema.table never analyzed: estimates are NaN


@dataclass
class QuerySession:
    """The client session a statement arrived with (from the X-Trino-* headers)."""

    user: str
    principal: str | None
    source: str | None
    catalog: str | None
    schema: str | None
    time_zone: str | None
    properties: dict[str, str]
    client_tags: list[str]
    roles: dict[str, str]


@dataclass
class Page:
    rows: list[list[Any]]
    size_bytes: int


@dataclass
class Finished:
    pass


@dataclass
class Failed:
    failure: QueryFailure


Item = Page | Finished | Failed


class Query:
    """One statement: its session, state, pages waiting for the client, and figures."""

    def __init__(self, query_id: str, sql: str, session: QuerySession) -> None:
        self.id = query_id
        self.slug = "x" + "".join(random.choices(string.ascii_lowercase + string.digits, k=16))
        self.sql = sql
        self.session = session
        self.created = time.monotonic()
        self.created_at = dt.datetime.now(dt.UTC)
        self.started: float | None = None
        self.ended: float | None = None
        self.state = "QUEUED"
        self.token = 1
        self.last_token: int | None = None
        self.last_body: dict[str, Any] | None = None
        self.columns: list[dict[str, Any]] | None = None
        self.update_type: str | None = None
        self.update_count: int | None = None
        self.response_headers: dict[str, str] = {}
        self.error: dict[str, Any] | None = None
        self.items: queue.Queue[Item] = queue.Queue(maxsize=4)
        self.cancelled = threading.Event()
        self.executed = threading.Event()  # set when the execution thread has let go of DuckDB
        self.cursor: duckdb.DuckDBPyConnection | None = None
        self.lock = threading.Lock()
        self.rows_produced = 0
        self.bytes_produced = 0
        self.rows_sent = 0
        self.cpu_ms = 0
        self.peak_memory = 0
        self.scanned_bytes = 0
        self.scanned_rows = 0
        self.terminal = False

    def stats(self) -> dict[str, Any]:
        now = self.ended or time.monotonic()
        queued_ms = int(((self.started or now) - self.created) * 1000)
        elapsed_ms = int((now - self.created) * 1000)
        running = self.state in ("RUNNING", "FINISHED")
        return {
            "state": self.state,
            "queued": self.state == "QUEUED",
            "scheduled": running,
            "nodes": 1 if running else 0,
            "totalSplits": 1 if running else 0,
            "queuedSplits": 0,
            "runningSplits": 1 if self.state == "RUNNING" else 0,
            "completedSplits": 1 if self.state == "FINISHED" else 0,
            "cpuTimeMillis": self.cpu_ms,
            "wallTimeMillis": max(elapsed_ms - queued_ms, 0),
            "queuedTimeMillis": queued_ms,
            "elapsedTimeMillis": elapsed_ms,
            "processedRows": max(self.scanned_rows, self.rows_produced),
            "processedBytes": max(self.scanned_bytes, self.bytes_produced),
            "physicalInputBytes": self.scanned_bytes,
            "physicalWrittenBytes": 0,
            "peakMemoryBytes": self.peak_memory,
            "spilledBytes": 0,
        }

    def summary(self) -> dict[str, Any]:
        """What tests see at /_test/queries."""
        s = self.session
        return {
            "query_id": self.id,
            "sql": self.sql,
            "state": self.state,
            "user": s.user,
            "principal": s.principal,
            "source": s.source,
            "catalog": s.catalog,
            "schema": s.schema,
            "session_properties": s.properties,
            "client_tags": s.client_tags,
            "roles": s.roles,
            "error_name": self.error["errorName"] if self.error else None,
            "rows_sent": self.rows_sent,
            "created_at": self.created_at.isoformat(),
        }


class Coordinator:
    """Queries by id, their execution on DuckDB, and the record of cancels."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.root = duckdb.connect()
        self.root.execute(f"set threads = {int(config.threads)}")
        for name, path in config.catalogs.items():
            self.root.execute(
                f"attach '{path}' as \"{name}\"" if path != ":memory:" else f"attach ':memory:' as \"{name}\""
            )
            self.root.execute(f'create schema if not exists "{name}"."default"')
        self.queries: dict[str, Query] = {}
        self.cancels: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.coordinator_id = "".join(random.choices(string.ascii_lowercase, k=5))
        self.counter = 0

    def new_query_id(self) -> str:
        with self.lock:
            self.counter += 1
            return f"{dt.datetime.now(dt.UTC):%Y%m%d_%H%M%S}_{self.counter:05d}_{self.coordinator_id}"

    def submit(self, sql: str, session: QuerySession) -> Query:
        query = Query(self.new_query_id(), sql, session)
        with self.lock:
            self.queries[query.id] = query
        threading.Thread(target=self._run, args=(query,), name=f"query-{query.id}", daemon=True).start()
        return query

    def find(self, query_id: str) -> Query | None:
        with self.lock:
            return self.queries.get(query_id)

    def cancel(self, query: Query, how: str, path: str) -> None:
        with self.lock:
            self.cancels.append(
                {
                    "query_id": query.id,
                    "how": how,
                    "path": path,
                    "state_at_cancel": query.state,
                    "at": dt.datetime.now(dt.UTC).isoformat(),
                }
            )
        if query.terminal:
            return
        query.cancelled.set()
        # DuckDB's interrupt() only stops a statement already running on the connection: one that starts
        # a moment later (between the thread's set-up statements and the query itself) would run on.
        # So interrupt until the execution thread is done, as a Trino worker kills its tasks.
        threading.Thread(target=self._interrupt_until_done, args=(query,), daemon=True).start()

    @staticmethod
    def _interrupt_until_done(query: Query) -> None:
        while not query.executed.wait(0.02):
            cursor = query.cursor
            if cursor is not None:
                cursor.interrupt()

    # Execution -----------------------------------------------------------------------------------------

    def _run(self, query: Query) -> None:
        started_cpu = time.thread_time()
        cursor = self.root.cursor()
        query.cursor = cursor
        query.started = time.monotonic()
        query.state = "RUNNING"
        try:
            cursor.execute("pragma enable_profiling = 'no_output'")
            cursor.execute("set profiling_coverage = 'ALL'")
            # Trino's sequence(start, stop), so UNNEST(sequence(…)) reads the same on both.
            cursor.execute("create or replace temp macro sequence(a, b) as generate_series(a, b)")
            self._check_session(query)
            self._use(cursor, query.session.catalog, query.session.schema)
            self._execute(cursor, query)
            self._profile(cursor, query)
            query.cpu_ms = max(query.cpu_ms, int((time.thread_time() - started_cpu) * 1000))
            self._put(query, Finished())
        except QueryFailure as failure:
            self._put(query, Failed(failure), force=True)
        except duckdb.InterruptException:
            self._end_cancelled(query)
        except duckdb.Error as exc:
            if query.cancelled.is_set():
                self._end_cancelled(query)
            else:
                self._put(query, Failed(_failure_of(exc)), force=True)
        except _Cancelled:
            self._end_cancelled(query)
        except Exception as exc:  # the server must answer, whatever went wrong
            self._put(query, Failed(QueryFailure("GENERIC_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")), force=True)
        finally:
            query.cursor = None
            cursor.close()
            query.executed.set()

    def _end_cancelled(self, query: Query) -> None:
        """A cancelled query is FAILED (USER_CANCELED) on the server at once, as on Trino: the client
        stopped polling after its DELETE, so nobody may ever read a terminal page from the queue."""
        failure = QueryFailure("USER_CANCELED", "Query was canceled")
        self._put(query, Failed(failure), force=True)  # for a GET already waiting on the queue
        with query.lock:
            if not query.terminal:
                query.state, query.terminal, query.ended = "FAILED", True, time.monotonic()
                query.error = failure.as_error()

    def _check_session(self, query: Query) -> None:
        for name in query.session.properties:
            if "." in name:
                catalog = name.split(".", 1)[0]
                if catalog not in self.config.catalogs:
                    raise QueryFailure("INVALID_SESSION_PROPERTY", f"Session property {name} does not exist")
            elif name not in SYSTEM_SESSION_PROPERTIES:
                raise QueryFailure("INVALID_SESSION_PROPERTY", f"Session property {name} does not exist")

    def _use(self, cursor: duckdb.DuckDBPyConnection, catalog: str | None, schema: str | None) -> None:
        if catalog is None:
            if schema is not None:
                raise QueryFailure("GENERIC_USER_ERROR", "Catalog must be specified when session schema is set")
            return
        if catalog not in self.config.catalogs:
            raise QueryFailure("CATALOG_NOT_FOUND", f"Catalog '{catalog}' not found")
        target = f'"{catalog}"."{schema or "default"}"'
        found = cursor.execute(
            "select 1 from duckdb_schemas() where database_name = ? and schema_name = ?", [catalog, schema or "default"]
        ).fetchone()
        if found is None:
            raise QueryFailure("SCHEMA_NOT_FOUND", f"Schema '{schema}' does not exist")
        cursor.execute(f"use {target}")

    def _execute(self, cursor: duckdb.DuckDBPyConnection, query: Query) -> None:
        sql = query.sql.strip()
        if sql.endswith(";"):
            line = sql.count("\n") + 1
            column = len(sql) - (sql.rfind("\n") + 1)
            raise QueryFailure("SYNTAX_ERROR", f"line {line}:{column}: mismatched input ';'. Expecting: <EOF>")
        if self._session_statement(cursor, query, sql):
            return
        request = None
        try:
            request = explain.parse_explain(sql)
        except ValueError as exc:
            raise QueryFailure("SYNTAX_ERROR", str(exc)) from exc
        if request is not None:
            self._explain(cursor, query, request)
            return
        if re.match(r"^SHOW\s+CATALOGS$", sql, re.IGNORECASE):
            table = pa.table({"Catalog": sorted([*self.config.catalogs, "system"])})
            self._stream(query, iter(table.to_batches()), table.schema)
            return
        parsed = cursor.extract_statements(sql)
        if len(parsed) != 1:
            raise QueryFailure("SYNTAX_ERROR", "line 1:1: mismatched input ';'. Expecting: <EOF>")
        expected = [str(t) for t in parsed[0].expected_result_type]
        if expected == ["ExpectedResultType.QUERY_RESULT"]:
            reader = cursor.sql(sql).to_arrow_reader(query_page_rows(self.config))
            self._stream(query, iter(reader), reader.schema)
            return
        cursor.execute(sql)
        fetched = cursor.fetchall() if cursor.description else []
        for pattern, update_type, counts_rows in _UPDATE_TYPES:
            if pattern.match(sql):
                query.update_type = update_type
                if counts_rows:
                    count = int(fetched[0][0]) if fetched and fetched[0] else 0
                    query.update_count = count
                    query.columns = [types.column("rows", pa.int64())]
                    self._put(query, Page([[count]], 8))
                return
        query.update_type = sql.split()[0].upper()

    def _session_statement(self, cursor: duckdb.DuckDBPyConnection, query: Query, sql: str) -> bool:
        """USE / SET SESSION / RESET SESSION / transactions: answered by the coordinator alone."""
        if match := _USE.match(sql):
            catalog = match.group("catalog") or query.session.catalog
            self._use(cursor, catalog, match.group("schema"))
            query.update_type = "USE"
            if match.group("catalog"):
                query.response_headers["X-Trino-Set-Catalog"] = str(catalog)
            query.response_headers["X-Trino-Set-Schema"] = match.group("schema")
            return True
        if match := _SET_SESSION.match(sql):
            name = match.group("name")
            value = match.group("value").strip().strip("'")
            self._check_session_name(name)
            query.update_type = "SET SESSION"
            query.response_headers["X-Trino-Set-Session"] = f"{name}={urllib.parse.quote(value)}"
            return True
        if match := _RESET_SESSION.match(sql):
            self._check_session_name(match.group("name"))
            query.update_type = "RESET SESSION"
            query.response_headers["X-Trino-Clear-Session"] = match.group("name")
            return True
        if re.match(r"^(START\s+TRANSACTION|COMMIT|ROLLBACK)\b", sql, re.IGNORECASE):
            query.update_type = " ".join(sql.split()[:2]).upper() if sql.upper().startswith("START") else sql.upper()
            return True
        return False

    def _check_session_name(self, name: str) -> None:
        if "." not in name and name not in SYSTEM_SESSION_PROPERTIES:
            raise QueryFailure("INVALID_SESSION_PROPERTY", f"Session property {name} does not exist")

    def _explain(self, cursor: duckdb.DuckDBPyConnection, query: Query, request: explain.ExplainRequest) -> None:
        if request.type == "VALIDATE":
            cursor.execute(f"explain {request.statement}")
            table = pa.table({"Valid": [True]})
        elif request.type == "IO":
            if request.format != "JSON":
                raise QueryFailure("NOT_SUPPORTED", "EXPLAIN (TYPE IO) supports only FORMAT JSON here")
            table = pa.table({"Query Plan": [explain.io_plan(cursor, request, self.config.tables_without_stats)]})
        else:
            table = pa.table({"Query Plan": [explain.text_plan(cursor, request)]})
        self._stream(query, iter(table.to_batches()), table.schema)

    def _stream(self, query: Query, batches: Any, schema: pa.Schema) -> None:
        """Encode the result into pages, waiting (bounded queue) while the client is behind."""
        query.columns = [types.column(f.name, f.type) for f in schema]
        page_rows = query_page_rows(self.config)
        for batch in batches:
            for start in range(0, batch.num_rows, page_rows):
                page = batch.slice(start, page_rows)
                query.rows_produced += page.num_rows
                query.bytes_produced += page.nbytes
                self._put(query, Page(types.encode_batch(page), page.nbytes))

    def _put(self, query: Query, item: Item, *, force: bool = False) -> None:
        while True:
            if query.cancelled.is_set() and not force:
                raise _Cancelled
            try:
                query.items.put(item, timeout=0.1)
                return
            except queue.Full:
                if force:
                    # A terminal item must get through: drop unread pages of a failed or cancelled query.
                    with contextlib.suppress(queue.Empty):
                        query.items.get_nowait()

    def _profile(self, cursor: duckdb.DuckDBPyConnection, query: Query) -> None:
        try:
            info = json.loads(cursor.get_profiling_information())
        except (duckdb.Error, ValueError):
            return
        query.cpu_ms = int(float((info.get("query") or {}).get("cpu_time") or 0) * 1000)
        query.peak_memory = int((info.get("system") or {}).get("peak_buffer_memory") or 0)
        query.scanned_rows = int((info.get("query") or {}).get("total_rows_scanned") or 0)
        scanned = 0
        for root in info.get("operator") or []:
            for node in explain._leaves(root):
                if "Table" in (node.get("extra_info") or {}) or "SCAN" in str(node.get("name", "")).upper():
                    scanned += int(node.get("intermediate_size_bytes") or 0)
        query.scanned_bytes = scanned

    # Paging ------------------------------------------------------------------------------------------

    def respond(self, query: Query, token: int, base_url: str) -> dict[str, Any] | None:
        """The answer to a GET of the query's nextUri with ``token``; None for a token never handed out."""
        with query.lock:
            if query.last_token == token and query.last_body is not None:
                return query.last_body  # a retry of the previous request
            if token != query.token:
                return None
            body = self._next_body(query, base_url)
            query.last_token, query.last_body = token, body
            if "nextUri" in body:
                query.token += 1
            return body

    def first_body(self, query: Query, base_url: str) -> dict[str, Any]:
        body = self._body(query, base_url)
        body["nextUri"] = f"{base_url}/v1/statement/queued/{query.id}/{query.slug}/{query.token}"
        body["stats"]["state"] = "QUEUED"
        body["stats"]["queued"] = True
        return body

    def _next_body(self, query: Query, base_url: str) -> dict[str, Any]:
        if query.terminal:
            return self._body(query, base_url)
        try:
            item: Item | None = query.items.get(timeout=self.config.max_wait_s)
        except queue.Empty:
            item = None
        body = self._body(query, base_url)
        if isinstance(item, Page):
            body["data"] = item.rows
            query.rows_sent += len(item.rows)
        elif isinstance(item, Finished):
            query.state, query.terminal, query.ended = "FINISHED", True, time.monotonic()
            body = self._body(query, base_url)
            if query.update_count is not None:
                body["updateCount"] = query.update_count
            return body
        elif isinstance(item, Failed):
            query.state, query.terminal, query.ended = "FAILED", True, time.monotonic()
            query.error = item.failure.as_error()
            return self._body(query, base_url)
        body["nextUri"] = f"{base_url}/v1/statement/executing/{query.id}/{query.slug}/{query.token + 1}"
        return body

    def _body(self, query: Query, base_url: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": query.id,
            "infoUri": f"{base_url}/ui/query.html?{query.id}",
            "stats": query.stats(),
            "warnings": [],
        }
        if query.columns is not None:
            body["columns"] = query.columns
        if query.update_type is not None:
            body["updateType"] = query.update_type
        if query.error is not None:
            body["error"] = query.error
        return body


class _Cancelled(Exception):
    """The client cancelled while the producer was waiting to hand over a page."""


def query_page_rows(config: ServerConfig) -> int:
    return max(int(config.page_rows), 1)


def _failure_of(exc: duckdb.Error) -> QueryFailure:
    message = str(exc).split("\n", 1)[0]
    message = re.sub(r"^[A-Za-z ]+Error: ", "", message)
    if isinstance(exc, duckdb.ParserException):
        return QueryFailure("SYNTAX_ERROR", f"line 1:1: {message}")
    if isinstance(exc, duckdb.CatalogException):
        lowered = message.lower()
        if "already exists" in lowered:
            return QueryFailure("ALREADY_EXISTS", message)
        if "table with name" in lowered:
            name = re.search(r"name (\S+) does not exist", message)
            return QueryFailure("TABLE_NOT_FOUND", f"line 1:1: Table '{name.group(1) if name else '?'}' does not exist")
        if "schema with name" in lowered:
            return QueryFailure("SCHEMA_NOT_FOUND", message)
        if "function" in lowered:
            return QueryFailure("FUNCTION_NOT_FOUND", message)
        return QueryFailure("NOT_FOUND", message)
    if isinstance(exc, duckdb.BinderException):
        column = re.search(r'Referenced column "?([^" ]+)"? not found', message)
        if column:
            return QueryFailure("COLUMN_NOT_FOUND", f"line 1:1: Column '{column.group(1)}' cannot be resolved")
        return QueryFailure("GENERIC_USER_ERROR", message)
    if isinstance(exc, duckdb.ConversionException):
        return QueryFailure("INVALID_CAST_ARGUMENT", message)
    if isinstance(exc, duckdb.OutOfRangeException):
        return QueryFailure("NUMERIC_VALUE_OUT_OF_RANGE", message)
    if isinstance(exc, duckdb.ConstraintException):
        return QueryFailure("CONSTRAINT_VIOLATION", message)
    if isinstance(exc, duckdb.NotImplementedException):
        return QueryFailure("NOT_SUPPORTED", message)
    return QueryFailure("GENERIC_INTERNAL_ERROR", message)


# HTTP -------------------------------------------------------------------------------------------------


def _session_of(headers: Any, principal: str | None) -> QuerySession:
    def header(name: str) -> str | None:
        value = headers.get(name)
        return value if value else None

    properties: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (header("X-Trino-Session") or "").split(","))):
        name, _, value = item.partition("=")
        properties[name.strip()] = urllib.parse.unquote(value.strip())
    roles: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in (header("X-Trino-Role") or "").split(","))):
        name, _, value = item.partition("=")
        roles[name.strip()] = urllib.parse.unquote(value.strip())
    tags = [t.strip() for t in (header("X-Trino-Client-Tags") or "").split(",") if t.strip()]
    return QuerySession(
        user=str(header("X-Trino-User")),
        principal=principal,
        source=header("X-Trino-Source"),
        catalog=header("X-Trino-Catalog"),
        schema=header("X-Trino-Schema"),
        time_zone=header("X-Trino-Time-Zone"),
        properties=properties,
        client_tags=tags,
        roles=roles,
    )


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_jwt(token: str, secret: str) -> str | None:
    """The subject of a valid, unexpired HS256 token signed with ``secret``; None otherwise."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_b64url_decode(header_b64))
        if header.get("alg") != "HS256":
            return None
        expected = hmac.new(secret.encode(), f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64url_decode(signature_b64)):
            return None
        claims = json.loads(_b64url_decode(payload_b64))
    except (ValueError, json.JSONDecodeError):
        return None
    if "exp" in claims and float(claims["exp"]) < time.time():
        return None
    subject = claims.get("sub")
    return str(subject) if subject else None


def make_handler(coordinator: Coordinator) -> type[BaseHTTPRequestHandler]:
    config = coordinator.config

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Trino"

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: tests read /_test/* instead of access logs

        # Plumbing ------------------------------------------------------------------------------------

        def _base_url(self) -> str:
            return f"http://{self.headers.get('Host') or '{}:{}'.format(*self.server.server_address[:2])}"

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
            self.send_response(status)
            if status != HTTPStatus.NO_CONTENT:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)

        def _json(self, body: Any, headers: dict[str, str] | None = None) -> None:
            self._send(HTTPStatus.OK, json.dumps(body).encode(), headers=headers)

        def _text(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, message.encode(), "text/plain", headers)

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authenticate(self) -> tuple[bool, str | None]:
            """(allowed, principal); on refusal the 401/403 answer was sent."""
            if config.auth == "none":
                return True, None
            authorization = self.headers.get("Authorization") or ""
            principal: str | None = None
            if config.auth == "basic" and authorization.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    user, password = "", ""
                if user in config.users and hmac.compare_digest(config.users[user], password):
                    principal = user
            elif config.auth == "jwt" and authorization.startswith("Bearer "):
                principal = verify_jwt(authorization[7:], str(config.jwt_secret))
            if principal is None:
                challenge = 'Basic realm="Trino"' if config.auth == "basic" else 'Bearer realm="Trino"'
                self._text(HTTPStatus.UNAUTHORIZED, "Unauthorized", {"WWW-Authenticate": challenge})
                return False, None
            user = self.headers.get("X-Trino-User")
            if user and user != principal:
                self._text(HTTPStatus.FORBIDDEN, f"Access Denied: User {principal} cannot impersonate user {user}")
                return False, None
            return True, principal

        # Routes --------------------------------------------------------------------------------------

        def do_POST(self) -> None:
            body = self._read_body()
            if self.path == "/v1/statement":
                allowed, principal = self._authenticate()
                if not allowed:
                    return
                if not self.headers.get("X-Trino-User"):
                    self._text(HTTPStatus.BAD_REQUEST, "User must be set")
                    return
                sql = body.decode("utf-8")
                if not sql.strip():
                    self._text(HTTPStatus.BAD_REQUEST, "SQL statement is empty")
                    return
                query = coordinator.submit(sql, _session_of(self.headers, principal))
                self._json(coordinator.first_body(query, self._base_url()))
                return
            self._text(HTTPStatus.NOT_FOUND, "Not Found")

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/v1/info":
                self._json({"nodeVersion": {"version": VERSION}, "environment": "test", "coordinator": True,
                            "starting": False, "uptime": "1.00m"})  # fmt: skip
                return
            if path == "/_test/queries":
                with coordinator.lock:
                    queries = list(coordinator.queries.values())
                self._json([q.summary() for q in queries])
                return
            if path == "/_test/cancels":
                with coordinator.lock:
                    self._json(list(coordinator.cancels))
                return
            if match := _STATEMENT_PATH.match(path):
                allowed, _ = self._authenticate()
                if not allowed:
                    return
                query = coordinator.find(match.group("id"))
                if query is None or query.slug != match.group("slug"):
                    self._text(HTTPStatus.NOT_FOUND, "Query not found")
                    return
                answer = coordinator.respond(query, int(match.group("token")), self._base_url())
                if answer is None:
                    self._text(HTTPStatus.GONE, "Unknown token")
                    return
                self._json(answer, query.response_headers)
                return
            if match := _QUERY_PATH.match(path):
                allowed, _ = self._authenticate()
                if not allowed:
                    return
                query = coordinator.find(match.group("id"))
                if query is None:
                    self._text(HTTPStatus.NOT_FOUND, "Query not found")
                    return
                self._json({"queryId": query.id, "state": query.state, "query": query.sql,
                            "session": {"user": query.session.user, "source": query.session.source,
                                        "catalog": query.session.catalog, "schema": query.session.schema,
                                        "systemProperties": query.session.properties,
                                        "clientTags": query.session.client_tags},
                            "queryStats": query.stats(),
                            "errorCode": query.error and {"code": query.error["errorCode"],
                                                          "name": query.error["errorName"],
                                                          "type": query.error["errorType"]}})  # fmt: skip
                return
            self._text(HTTPStatus.NOT_FOUND, "Not Found")

        def do_DELETE(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            allowed, _ = self._authenticate()
            if not allowed:
                return
            for pattern, how in ((_STATEMENT_PATH, "DELETE nextUri"), (_QUERY_PATH, "DELETE /v1/query")):
                if match := pattern.match(path):
                    query = coordinator.find(match.group("id"))
                    if query is None:
                        self._text(HTTPStatus.NOT_FOUND, "Query not found")
                        return
                    coordinator.cancel(query, how, path)
                    self._send(HTTPStatus.NO_CONTENT)
                    return
            self._text(HTTPStatus.NOT_FOUND, "Not Found")

    return Handler


def serve(config: ServerConfig, host: str, port: int, on_ready: Callable[[int], None]) -> None:
    """Serve until the process is stopped; ``on_ready`` gets the bound port."""
    coordinator = Coordinator(config)
    server = ThreadingHTTPServer((host, port), make_handler(coordinator))
    server.daemon_threads = True
    on_ready(server.server_address[1])
    server.serve_forever(poll_interval=0.2)
