"""The ``catalog_sync`` engine: sync the run's project with an outside catalog (OpenMetadata), as a task
a job can schedule.

The control room does the sync, since it holds the catalog's credentials and the catalog; this engine
asks for it under the task's lease (``POST /tasks/{id}/catalog-sync``) and reports what changed, or,
with ``dry_run``, what would: one event per difference, the whole answer as the artifact
``catalog-sync.json``, and the counts with the first differences as the task's result. Spec fields:
``catalog`` (``openmetadata``), ``dry_run`` (default false).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from executor_agent.client import ClientError, LeaseLost
from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskContext

OPERATION = "catalog-sync"
ARTIFACT = "catalog-sync.json"
EVENTS_UP_TO = 500  # one event per difference; the artifact has them all
RESULT_CHANGES = 20
DEFAULT_TIMEOUT_S = 600.0


def describe(change: Mapping[str, Any]) -> str:
    """One difference as a line: ``push create table svc.db.main.orders (columns, owners)``."""
    fields = ", ".join(str(f) for f in change.get("fields") or [])
    return f"{change.get('direction')} {change.get('action')} {change.get('target')}" + (
        f" ({fields})" if fields else ""
    )


class CatalogSyncEngine(Engine):
    name: ClassVar[str] = "catalog_sync"

    def run(self, context: TaskContext) -> EngineResult:
        catalog = context.spec.get("catalog", "openmetadata")
        if catalog != "openmetadata":
            raise EngineError(f"spec.catalog must be 'openmetadata', got {catalog!r}")
        dry_run = context.spec.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise EngineError(f"spec.dry_run must be true or false, got {dry_run!r}")
        context.progress(f"{'dry run: comparing with' if dry_run else 'syncing with'} {catalog}")
        try:
            reply = context.ask(
                OPERATION,
                {"catalog": catalog, "dry_run": dry_run},
                timeout_s=float(context.timeout_s or DEFAULT_TIMEOUT_S),
            )
        except LeaseLost:
            raise
        except ClientError as exc:  # refused (no admin behind the run, no catalog configured): fix, then rerun
            raise EngineError(f"the control room refused the {catalog} sync: {exc}") from exc
        changes = [dict(c) for c in reply.get("changes") or []]
        for change in changes[:EVENTS_UP_TO]:
            context.emit("catalog_sync.change", describe(change), data=change)
        if len(changes) > EVENTS_UP_TO:
            context.emit("catalog_sync.change", f"... and {len(changes) - EVENTS_UP_TO} more (see {ARTIFACT})")
        for warning in reply.get("warnings") or []:
            context.emit("catalog_sync.warning", str(warning), level="warning")
        path = context.work_dir / ARTIFACT
        path.write_text(json.dumps(dict(reply), indent=2, sort_keys=True), encoding="utf-8")
        context.upload_artifact(path, name=ARTIFACT, content_type="application/json")
        summary = (
            f"{'dry run: ' if dry_run else ''}{reply.get('tables', 0)} tables; "
            f"{reply.get('pushed', 0)} {'to push' if dry_run else 'pushed'}, "
            f"{reply.get('pulled', 0)} {'to pull' if dry_run else 'pulled'}"
        )
        context.emit("catalog_sync.done", summary, data={k: reply.get(k) for k in ("tables", "pushed", "pulled")})
        return EngineResult.ok(
            catalog=catalog,
            dry_run=dry_run,
            service=reply.get("service"),
            tables=reply.get("tables", 0),
            pushed=reply.get("pushed", 0),
            pulled=reply.get("pulled", 0),
            warnings=len(reply.get("warnings") or []),
            changes=[describe(c) for c in changes[:RESULT_CHANGES]],
        )
