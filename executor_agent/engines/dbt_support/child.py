"""The dbt child process: runs dbt invocations with ``dbtRunner`` and prints one JSON line per event.

dbt is not thread-safe and keeps global state, so the agent never imports it: it starts this file as
a script (``python child.py <invocations.json>``). Standard output carries only JSON lines (node
started/finished, log lines of level info and up, the end of each invocation); everything else that
writes to standard output (dbt's console, libraries) is moved to standard error. This file imports
nothing from ``executor_agent``, so it runs from any working directory.

Exit status: 0 when every invocation succeeded, 1 when dbt ran but some node failed, 2 when dbt
could not run (bad arguments, a project or profile error, an exception).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

EXIT_OK, EXIT_NODES_FAILED, EXIT_ERROR = 0, 1, 2
# dbt event names forwarded as log lines (when their level is info or above).
LEVELS = {"debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error"}


class EventWriter:
    """Writes JSON lines to the original standard output, one whole line at a time from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)  # from now on, fd 1 (dbt's console, C libraries) goes to standard error

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, **fields}, default=str, separators=(",", ":"))
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def _utc(stamp: str | None) -> str | None:
    # dbt's node timestamps are naive UTC ("2026-11-26T02:51:30.838159").
    if not stamp:
        return None
    return stamp if stamp.endswith("Z") or "+" in stamp[10:] else stamp + "Z"


def _whole(value: Any) -> Any:
    # Protobuf structs carry every number as a double: 8.0 rows are 8 rows.
    return int(value) if isinstance(value, float) and value.is_integer() else value


class NodeEvents:
    """Turns dbt's event stream into node started/finished records and log lines."""

    def __init__(self, writer: EventWriter, invocation: int) -> None:
        self.writer = writer
        self.invocation = invocation  # which of the request's invocations (0: the task's command)
        self.positions: dict[str, tuple[int, int]] = {}
        # dbt fires NodeStart before the node's LogStartLine, which alone carries its index and the
        # invocation's total: a start is held until that line (or the node's end) so it carries them.
        self.pending: dict[str, dict[str, Any]] = {}
        self.total = 0

    def __call__(self, event: Any) -> None:
        try:
            self._handle(event)
        except Exception as exc:  # a callback must never break dbt's run
            self.writer.write("log", level="warning", message=f"event not forwarded ({event.info.name}): {exc}")

    def _handle(self, event: Any) -> None:
        from google.protobuf.json_format import MessageToDict

        name = event.info.name
        if name in ("NodeStart", "NodeFinished", "LogStartLine"):
            data = MessageToDict(event.data, preserving_proto_field_name=True)
            node = data.get("node_info", {})
            unique_id = node.get("unique_id", "")
            if name == "LogStartLine":
                self.positions[unique_id] = (int(data.get("index", 0)), int(data.get("total", 0)))
                self.total = self.total or int(data.get("total", 0))
                self._release(unique_id)
            else:
                self._node(name, node, data.get("run_result", {}))
        level = LEVELS.get(event.info.level, "info")
        if level != "debug" and event.info.msg:
            self.writer.write("log", level=level, message=event.info.msg, event=name)

    def _release(self, unique_id: str) -> None:
        """Write a held start with the node's position (a skipped node has none: the total only)."""
        record = self.pending.pop(unique_id, None)
        if record is None:
            return
        index, total = self.positions.get(unique_id, (0, self.total))
        self.writer.write("node_started", **{**record, "index": index, "total": total or self.total})

    def _node(self, name: str, node: dict[str, Any], result: dict[str, Any]) -> None:
        unique_id = node.get("unique_id", "")
        index, total = self.positions.get(unique_id, (0, self.total))
        relation = node.get("node_relation", {})
        record: dict[str, Any] = {
            "invocation": self.invocation,
            "unique_id": unique_id,
            "name": node.get("node_name", ""),
            "resource_type": node.get("resource_type", ""),
            "materialized": node.get("materialized", ""),
            "path": node.get("node_path", ""),
            "relation": relation.get("relation_name")
            or ".".join(
                part for part in (relation.get("database"), relation.get("schema"), relation.get("alias")) if part
            ),
            "started_at": _utc(node.get("node_started_at")),
            "index": index,
            "total": total,
        }
        if name == "NodeStart":
            self.pending[unique_id] = record
            return
        self._release(unique_id)
        adapter = result.get("adapter_response", {})
        rows = adapter.get("rows_affected")
        self.writer.write(
            "node_finished",
            **record,
            status=result.get("status") or node.get("node_status", ""),
            finished_at=_utc(node.get("node_finished_at")),
            execution_time=float(result.get("execution_time", 0.0)),
            message=result.get("message", ""),
            # A test's failing rows; proto3 leaves a zero out, so a finished test without it had none.
            failures=int(result.get("num_failures", 0)) if node.get("resource_type") == "test" else None,
            rows_affected=int(rows) if rows is not None else None,
            adapter_response={k: _whole(v) for k, v in adapter.items() if not k.startswith("_")},
        )


def main(argv: list[str]) -> int:
    writer = EventWriter()
    if len(argv) != 2:
        writer.write("invocation_finished", success=False, error="usage: child.py <invocations.json>")
        return EXIT_ERROR
    with open(argv[1], encoding="utf-8") as handle:
        invocations: list[list[str]] = json.load(handle)["invocations"]
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:
        writer.write("invocation_finished", success=False, error=f"dbt is not installed for {sys.executable}: {exc}")
        return EXIT_ERROR
    status = EXIT_OK
    for index, args in enumerate(invocations):
        runner = dbtRunner(callbacks=[NodeEvents(writer, index)])
        try:
            outcome = runner.invoke(args)
        except BaseException as exc:  # dbt raised instead of reporting: still say how it ended
            writer.write("invocation_finished", args=args, success=False, error=f"{type(exc).__name__}: {exc}")
            return EXIT_ERROR
        error = None if outcome.exception is None else f"{type(outcome.exception).__name__}: {outcome.exception}"
        writer.write("invocation_finished", args=args, success=bool(outcome.success), error=error)
        if outcome.exception is not None:
            return EXIT_ERROR
        if not outcome.success:
            status = EXIT_NODES_FAILED
            break
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
