"""The SQL task flow shared by Trino and DuckDB: estimate, refuse over the cap, run, stream, record, cancel.

For each statement of the task's script, in order:

1. ``EXPLAIN`` estimates the bytes the statement will scan (statements that read tables only).
2. When a scanned-bytes cap applies (the claim's ``limits.scanned_bytes_per_query``, or the spec's
   lower ``max_scan_bytes``) and the estimate exceeds it, the statement is refused before it runs:
   the task fails with a message naming the cap and the estimate, and history records ``refused``.
0. Under access policies (executor_agent/policy), the statement is checked first: refused when it
   reads or writes a dataset it may not, rewritten when row filters or column masks apply.
3. The statement runs; a result set streams batch by batch into Parquet (+ CSV) and a JSON preview,
   uploaded as artifacts; history records the engine's figures (rows, bytes, CPU, memory, time).
4. What the statement read and wrote joins the task's lineage (engines that resolve table names: DuckDB),
   reported once when the task ends (sql_support/lineage.py).

A watcher thread turns a cancel request (or the task's deadline) into an interrupt of the running
statement on the engine (Trino: ``DELETE nextUri``; DuckDB: ``interrupt()``) and the task ends
``cancelled`` (or ``timed_out``).
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import pyarrow as pa

from executor_agent.engines.base import EngineError, EngineResult, Outcome, TaskContext
from executor_agent.engines.specs import typed_spec
from executor_agent.engines.sql_support.history import QueryActuals, QueryRecord, QueryState
from executor_agent.engines.sql_support.lineage import TableDataset, TaskLineage, statement_tables
from executor_agent.engines.sql_support.results import OutputOptions, ResultWriter, options_from_spec
from executor_agent.engines.sql_support.statements import Statement, StatementSyntaxError, split_statements
from executor_agent.generated import contract
from executor_agent.policy import AccessGuard, PolicyRefused

SQL_MAX_CHARS = 1_000_000
PROGRESS_EVERY_S = 2.0
REINTERRUPT_FOR_S = 30.0
WATCH_INTERVAL_S = 0.1
RESULT_SUMMARY_LIMIT = 50
StopReason = Literal["cancelled", "timed_out"]


class StatementFailed(EngineError):
    """A statement failed on the engine; ``query_id`` names the engine's query when it had one.

    ``retryable`` says whether another attempt could succeed (the engine or the network failed) or
    would fail the same way (the SQL is wrong, a table is missing): the default.
    """

    def __init__(self, message: str, *, query_id: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.query_id = query_id
        self.retryable = retryable


@dataclass(frozen=True)
class ScanEstimate:
    """Bytes (and rows) a statement is expected to scan; ``scan_bytes`` None means the engine could not tell."""

    scan_bytes: int | None
    rows: int | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class SessionIdentity:
    """Who and where a statement runs as: the engine user and the current catalog and schema."""

    user: str | None
    catalog: str | None
    schema: str | None


class Execution(abc.ABC):
    """A statement running on the engine."""

    query_id: str | None = None
    update_count: int | None = None

    @property
    @abc.abstractmethod
    def schema(self) -> pa.Schema | None:
        """The result's schema, or None for statements without a result set (DDL, SET …)."""

    @abc.abstractmethod
    def batches(self) -> Iterator[pa.RecordBatch]:
        """The result, batch by batch, fetched from the engine as it is consumed."""

    @abc.abstractmethod
    def actuals(self) -> QueryActuals:
        """The engine's figures for the statement, once its batches are drained."""


class SqlBackend(abc.ABC):
    """One engine's side of the flow; a fresh backend serves one task."""

    engine: ClassVar[str]

    def statements(self, script: str) -> list[Statement]:
        """The script's statements (engines with their own parser override this)."""
        try:
            return split_statements(script)
        except StatementSyntaxError as exc:
            raise EngineError(f"sql: {exc}") from exc

    @abc.abstractmethod
    def identity(self) -> SessionIdentity:
        """Current user, catalog and schema (a script's USE changes them)."""

    @abc.abstractmethod
    def estimate(self, statement: Statement) -> ScanEstimate:
        """EXPLAIN the statement; raise StatementFailed when the statement itself is wrong."""

    @abc.abstractmethod
    def execute(self, statement: Statement) -> Execution:
        """Start the statement; raise StatementFailed when the engine refuses it."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Abort whatever statement is running now (called from the watcher thread; harmless when idle)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def view_definition(self, parts: tuple[str, ...]) -> str | None:
        """The SQL of the view so named (lower-case parts), when the engine knows it; None otherwise."""
        return None

    # Lineage: an engine that can say where a table lives names its sqlglot dialect and resolves names.
    def lineage_dialect(self) -> str | None:
        """The sqlglot dialect to read statements' tables in, or None when this engine reports no lineage."""
        return None

    def resolve_table(self, parts: tuple[str, ...]) -> TableDataset | None:
        """The dataset a table reference of the SQL (lower-case name parts) means now, or None if unknown."""
        return None

    def file_dataset(self, path: str, query: str | None) -> TableDataset | None:
        """The dataset of a file a statement read or wrote (``query``: the SELECT written into it)."""
        return None


@dataclass(frozen=True)
class SqlTaskSpec:
    """The engine-independent fields of a SQL task's spec."""

    sql: str
    output: OutputOptions
    max_scan_bytes: int | None
    on_unknown_estimate: Literal["run", "refuse"]

    @classmethod
    def parse(cls, spec: Mapping[str, Any], *, engine: str, key: str) -> SqlTaskSpec:
        """Read the spec through the contract's model of ``engine`` (duckdb or trino); errors name the field."""
        typed: contract.TrinoTaskSpec | contract.DuckdbTaskSpec
        if engine == "trino":
            typed = typed_spec(contract.TrinoTaskSpec, spec, key=key, engine=engine)
        else:
            typed = typed_spec(contract.DuckdbTaskSpec, spec, key=key, engine=engine)
        if not typed.sql.strip():
            raise EngineError("sql: required; the statement or script (statements separated by ';') to run")
        output = typed.output
        return cls(
            sql=typed.sql,
            output=options_from_spec(output.model_dump(exclude_unset=True) if output is not None else None),
            max_scan_bytes=typed.max_scan_bytes,
            on_unknown_estimate=typed.on_unknown_estimate or "run",
        )


def string_map(spec: Mapping[str, Any], name: str) -> dict[str, str]:
    """A spec field holding ``{name: scalar}`` (session properties, roles), values as strings."""
    value = spec.get(name) or {}
    if not isinstance(value, dict):
        raise EngineError(f"{name}: must be an object of names to values")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str | int | float | bool):
            raise EngineError(f"{name}.{key}: must be a string, number or boolean")
        out[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def optional_string(spec: Mapping[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise EngineError(f"{name}: must be a non-empty string")
    return value


class StopWatcher:
    """Interrupts the running statement when a cancel is requested or the task's deadline passes."""

    def __init__(self, context: TaskContext, interrupt: Callable[[], None], deadline: float | None) -> None:
        self._context = context
        self._interrupt = interrupt
        self._deadline = deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"sql-stop-watch-{context.task_key}", daemon=True)
        self.reason: StopReason | None = None

    def __enter__(self) -> StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            if self._context.cancel_requested:
                # The runner says why it stops the attempt (its own timeout enforcement is "timed_out").
                stop_reason = getattr(self._context, "stop_reason", None)
                self.reason = "timed_out" if stop_reason == "timed_out" else "cancelled"
            elif self._deadline is not None and time.monotonic() >= self._deadline:
                self.reason = "timed_out"
            if self.reason is not None:
                break
        if self.reason is None:
            return
        # Keep interrupting until the statement is gone: a cancel that lands while a query is being
        # submitted (Trino has no nextUri to DELETE yet) takes effect on a later attempt.
        self._interrupt()
        for _ in range(int(REINTERRUPT_FOR_S / WATCH_INTERVAL_S)):
            if self._stop.wait(WATCH_INTERVAL_S):
                return
            self._interrupt()

    def reinforce(self, interrupt: Callable[[], None]) -> None:
        """Interrupt again: a statement that started just after the watcher fired must not run on."""
        if self.reason is not None:
            interrupt()


@dataclass
class _StatementOutcome:
    outcome: Outcome
    record: QueryRecord
    error: str | None = None
    retryable: bool = False


def run_sql_task(context: TaskContext, backend: SqlBackend, spec: SqlTaskSpec) -> EngineResult:
    """Run the task on a backend made for it, and close the backend however the run ends."""
    try:
        return SqlTaskRun(context, backend, spec).run()
    finally:
        backend.close()


class SqlTaskRun:
    """One SQL task on one backend: the flow described in the module docstring."""

    def __init__(self, context: TaskContext, backend: SqlBackend, spec: SqlTaskSpec) -> None:
        self.context = context
        self.backend = backend
        self.spec = spec
        caps = [c for c in (context.limits.scanned_bytes_per_query, spec.max_scan_bytes) if c is not None]
        self.scan_cap = min(caps) if caps else None
        runtime = [t for t in (context.timeout_s, context.limits.max_runtime_s) if t]
        self.runtime_limit = min(runtime) if runtime else None
        self.results_dir = context.work_dir / "results"
        self.guard: AccessGuard | None = None
        dialect = backend.lineage_dialect()
        self.lineage = TaskLineage(dialect) if dialect is not None else None

    def run(self) -> EngineResult:
        started_at = datetime.now(UTC).isoformat()
        result = self._run_statements()
        self._report_lineage(started_at, failed=result.outcome != "succeeded")
        return result

    def _run_statements(self) -> EngineResult:
        statements = self.backend.statements(self.spec.sql)
        if not statements:
            raise EngineError("sql: the script holds no statement (only comments or semicolons)")
        dialect: Literal["duckdb", "trino"] = "trino" if self.backend.engine == "trino" else "duckdb"
        self.guard = AccessGuard(self.context.access_policies(), dialect=dialect, views=self.backend.view_definition)
        deadline = time.monotonic() + self.runtime_limit if self.runtime_limit else None
        summaries: list[dict[str, Any]] = []
        last_rows = 0
        with StopWatcher(self.context, self.backend.interrupt, deadline) as watcher:
            for statement in statements:
                if watcher.reason is not None:
                    return self._stopped(watcher.reason, statement, summaries)
                name = "result" if len(statements) == 1 else f"result-{statement.index}"
                done = self._run_statement(statement, name, watcher)
                summaries.append(_summary(done.record))
                if done.outcome == "succeeded":
                    self._trace_lineage(statement, done.record)
                if done.outcome != "succeeded":
                    result = self._task_result(statements, summaries)
                    # The control plane retries a failed attempt unless told that another would fail the same way.
                    result["retryable"] = done.retryable
                    return EngineResult(done.outcome, result, done.error)
                last_rows = done.record.rows or 0
        result = self._task_result(statements, summaries)
        result["rows"] = last_rows
        return EngineResult("succeeded", result)

    def _trace_lineage(self, statement: Statement, record: QueryRecord) -> None:
        """Add what the statement (as written, before any policy rewrite) read and wrote to the task's lineage."""
        if self.lineage is None:
            return
        try:
            tables = statement_tables(statement.text, dialect=self.lineage.dialect)
            if tables is not None:
                self.lineage.add(
                    tables, index=statement.index, job_name=self.context.task_key, resolve=self.backend.resolve_table,
                    file_dataset=self.backend.file_dataset, rows=record.rows, sql=statement.text,
                )  # fmt: skip
        except Exception as exc:  # lineage is a by-product: it never fails a statement that ran
            self.context.emit(
                "lineage.failed", f"statement {statement.index}: lineage not traced: {exc}", level="warning"
            )

    def _report_lineage(self, started_at: str, *, failed: bool) -> None:
        if self.lineage is None:
            return
        payload = self.lineage.payload(self.context, engine=self.backend.engine, started_at=started_at, failed=failed)
        if payload is None:
            return
        try:
            self.context.report("lineage", payload)
        except Exception as exc:  # the statements' work is done: a lost lineage report must not undo it
            self.context.emit("lineage.failed", f"lineage was not recorded: {exc}", level="warning")
            return
        self.context.emit(
            "lineage",
            f"{len(payload['datasets'])} dataset(s), {len(payload['edges'])} edge(s)",
            data={"datasets": [f"{d['namespace']} {d['name']}" for d in payload["datasets"]][:50],
                  "edges": len(payload["edges"])},
        )  # fmt: skip

    def _task_result(self, statements: list[Statement], summaries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "engine": self.backend.engine,
            "statements": len(statements),
            "statements_run": len(summaries),
            "scan_cap_bytes": self.scan_cap,
            "queries": summaries[:RESULT_SUMMARY_LIMIT],
        }

    def _stopped(self, reason: StopReason, statement: Statement, summaries: list[dict[str, Any]]) -> EngineResult:
        message = self._stop_message(reason, f"before statement {statement.index}")
        return EngineResult(reason, {"engine": self.backend.engine, "queries": summaries}, message)

    def _stop_message(self, reason: StopReason, where: str) -> str:
        if reason == "cancelled":
            return f"cancelled on request {where}"
        return f"stopped {where}: the task's runtime limit of {self.runtime_limit} s passed"

    def _report(self, record: QueryRecord) -> None:
        self.context.report("queries", {"queries": [record.payload()]})

    def _run_statement(self, statement: Statement, name: str, watcher: StopWatcher) -> _StatementOutcome:
        identity = self.backend.identity()
        record = QueryRecord(
            statement_index=statement.index,
            engine=self.backend.engine,
            sql_text=statement.text,
            query_user=identity.user,
            catalog=identity.catalog,
            schema_name=identity.schema,
            scan_cap_bytes=self.scan_cap,
        )
        self.context.emit(
            "sql.statement.started",
            f"statement {statement.index}: {statement.keyword or 'SQL'}",
            data={"statement_index": statement.index, "sql": statement.text[:2000]},
        )
        try:
            statement, refusal, access = self._check_policies(statement)
            if refusal is None:
                refusal = self._check_estimate(statement, record)
            if refusal is not None:
                record.finish("refused", error=refusal)
                self._report(record)
                data = _summary(record) | ({"access": access} if access else {})
                self.context.emit("sql.statement.refused", refusal, level="error", data=data)
                return _StatementOutcome("failed", record, refusal)
            self._report(record)
            return self._execute(statement, name, record, watcher)
        except EngineError as exc:
            record.query_id = getattr(exc, "query_id", None) or record.query_id
            done = self._failed_or_stopped(record, watcher, str(exc))
            done.retryable = bool(getattr(exc, "retryable", False))
            return done
        except Exception as exc:
            # A fault of ours or of the control plane: record it if we still can, then let the runner see it.
            record.finish("failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                self._report(record)
            raise

    def _check_policies(self, statement: Statement) -> tuple[Statement, str | None, dict[str, str] | None]:
        """The statement to run (rewritten for row filters and masks), or the refusal of access policies
        (with, for a missing privilege, what the access audit records: dataset, privilege, reason)."""
        if self.guard is None or not self.guard.active:
            return statement, None, None
        try:
            checked = self.guard.check(statement.text, index=statement.index)
        except PolicyRefused as exc:
            return statement, str(exc), exc.audit()
        if checked == statement.text:
            return statement, None, None
        self.context.emit(
            "sql.statement.rewritten",
            f"statement {statement.index}: row filters and column masks applied",
            data={"statement_index": statement.index, "sql": checked[:2000]},
        )
        return Statement(index=statement.index, text=checked), None, None

    def _check_estimate(self, statement: Statement, record: QueryRecord) -> str | None:
        """Estimate the scan; the refusal message when the estimate is over the cap, else None."""
        if not statement.explainable:
            return None
        estimate = self.backend.estimate(statement)
        record.estimated_scan_bytes = estimate.scan_bytes
        record.estimated_rows = estimate.rows
        record.details["estimate"] = {"tables": estimate.tables[:20], "note": estimate.note}
        self.context.emit(
            "sql.estimate",
            f"statement {statement.index}: estimated scan "
            + (f"{estimate.scan_bytes} bytes" if estimate.scan_bytes is not None else "unknown"),
            data={
                "statement_index": statement.index,
                "estimated_scan_bytes": estimate.scan_bytes,
                "estimated_rows": estimate.rows,
                "scan_cap_bytes": self.scan_cap,
                "tables": estimate.tables[:20],
                "note": estimate.note,
            },
        )
        if self.scan_cap is None:
            return None
        if estimate.scan_bytes is None:
            if self.spec.on_unknown_estimate == "refuse":
                return (
                    f"statement {statement.index} refused before running: the scanned-bytes cap is "
                    f"{_bytes(self.scan_cap)} and the scan estimate is unknown ({estimate.note or 'no statistics'}); "
                    'collect table statistics or set on_unknown_estimate to "run"'
                )
            self.context.emit(
                "sql.estimate.unknown",
                f"statement {statement.index}: scan size unknown, running under the cap of {_bytes(self.scan_cap)}",
                level="warning",
                data={"statement_index": statement.index, "note": estimate.note},
            )
            return None
        if estimate.scan_bytes > self.scan_cap:
            return (
                f"statement {statement.index} refused before running: its estimated scan of "
                f"{_bytes(estimate.scan_bytes)} exceeds the scanned-bytes cap of {_bytes(self.scan_cap)} "
                "(scanned_bytes_per_query); filter or select fewer columns, or ask an admin to raise the cap"
            )
        return None

    def _execute(self, statement: Statement, name: str, record: QueryRecord, watcher: StopWatcher) -> _StatementOutcome:
        execution = self.backend.execute(statement)
        record.query_id = execution.query_id
        watcher.reinforce(self.backend.interrupt)
        writer: ResultWriter | None = None
        try:
            schema = execution.schema
            if schema is not None:
                writer = ResultWriter(
                    self.results_dir,
                    name,
                    schema,
                    self.spec.output,
                    max_output_bytes=self.context.limits.max_output_bytes,
                )
                self._stream(statement, execution, writer, record, watcher)
            else:
                for _ in execution.batches():
                    pass
            if watcher.reason is not None:
                raise StatementFailed("interrupted", query_id=record.query_id)
            record.apply(execution.actuals())
            record.query_id = execution.query_id or record.query_id
            if writer is not None:
                files = writer.close()
                writer = None
                record.rows = files.rows
                record.result_artifact = files.files[0].name
                record.details["result"] = {"row_groups": files.row_groups, "bytes": files.bytes_written}
                for result_file in files.files:
                    self.context.upload_artifact(
                        result_file.path,
                        name=result_file.name,
                        content_type=result_file.content_type,
                        metadata={
                            "kind": "query_result",
                            "format": result_file.path.suffix.lstrip(".")
                            if ".preview" not in result_file.name
                            else "preview",
                            "statement_index": statement.index,
                            "query_id": record.query_id,
                            "rows": files.rows,
                            "row_groups": files.row_groups,
                            "columns": files.columns,
                        },
                    )
            elif execution.update_count is not None:
                record.rows = execution.update_count
        except BaseException:
            if writer is not None:
                writer.abort()
            # Stop the engine's query too: a half-read result must not keep running (or queued) there.
            self.backend.interrupt()
            raise
        record.finish("finished")
        self._report(record)
        self.context.emit(
            "sql.statement.finished",
            f"statement {statement.index}: {record.rows or 0} rows in {record.elapsed_ms} ms",
            data=_summary(record),
        )
        return _StatementOutcome("succeeded", record)

    def _stream(
        self,
        statement: Statement,
        execution: Execution,
        writer: ResultWriter,
        record: QueryRecord,
        watcher: StopWatcher,
    ) -> None:
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        for batch in execution.batches():
            if watcher.reason is not None:
                raise StatementFailed("interrupted", query_id=record.query_id)
            writer.write(batch)
            if time.monotonic() >= next_progress:
                next_progress = time.monotonic() + PROGRESS_EVERY_S
                self.context.progress(
                    f"statement {statement.index}: {writer.rows} rows streamed",
                    statement_index=statement.index,
                    rows=writer.rows,
                    query_id=record.query_id,
                )

    def _failed_or_stopped(self, record: QueryRecord, watcher: StopWatcher, message: str) -> _StatementOutcome:
        state: QueryState
        outcome: Outcome
        if watcher.reason is not None:
            outcome = watcher.reason
            state = watcher.reason
            where = f"while running statement {record.statement_index}"
            if record.query_id:
                where += f" (query {record.query_id})"
            message = self._stop_message(watcher.reason, where)
        else:
            outcome, state = "failed", "failed"
        record.finish(state, error=message)
        self._report(record)
        self.context.emit(
            f"sql.statement.{state}", message, level="error" if state == "failed" else "warning", data=_summary(record)
        )
        return _StatementOutcome(outcome, record, message)


def _summary(record: QueryRecord) -> dict[str, Any]:
    return {
        "statement_index": record.statement_index,
        "query_id": record.query_id,
        "state": record.state,
        "rows": record.rows,
        "bytes_read": record.bytes_read,
        "elapsed_ms": record.elapsed_ms,
        "estimated_scan_bytes": record.estimated_scan_bytes,
        "result_artifact": record.result_artifact,
        "error": record.error,
    }


def _bytes(value: int) -> str:
    """Bytes with a readable unit beside the exact number (``12884901888 bytes (12.0 GiB)``)."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            readable = f"{size:.1f} {unit}" if unit != "B" else f"{value} B"
            break
        size /= 1024
    return f"{value} bytes ({readable})"
