"""The published JSON Schemas under spec/ (bundle, backlog, capabilities, ...) against the models they come from."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_room.bundle import BUNDLE_SCHEMA_PATH
from control_room.bundle.models import bundle_json_schema
from control_room.dashboards import DASHBOARD_SCHEMA_PATH
from control_room.dashboards.models import dashboard_json_schema
from control_room.reports.backlog import BACKLOG_SCHEMA_PATH, backlog_json_schema
from control_room.reports.capabilities import CAPABILITIES_SCHEMA_PATH, capabilities_json_schema
from control_room.validators.results import CheckResult

PUBLISHED_SCHEMAS: dict[Path, Callable[[], dict[str, Any]]] = {
    BUNDLE_SCHEMA_PATH: bundle_json_schema,
    BACKLOG_SCHEMA_PATH: backlog_json_schema,
    CAPABILITIES_SCHEMA_PATH: capabilities_json_schema,
    DASHBOARD_SCHEMA_PATH: dashboard_json_schema,
}


def render_schema(schema: dict[str, Any]) -> str:
    """A schema as published: indented JSON with a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def stale_schemas() -> list[Path]:
    """Published schema files that differ from what their models generate (or are missing)."""
    return [
        path
        for path, generate in PUBLISHED_SCHEMAS.items()
        if not path.exists() or path.read_text(encoding="utf-8") != render_schema(generate())
    ]


def write_schemas() -> list[Path]:
    """Regenerate every published schema file; returns the files that changed."""
    changed = stale_schemas()
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_schema(PUBLISHED_SCHEMAS[path]()), encoding="utf-8")
    return changed


def check_schemas() -> CheckResult:
    """Fails naming each stale file and the command that regenerates it."""
    stale = stale_schemas()
    names = ", ".join(p.name for p in PUBLISHED_SCHEMAS)
    if stale:
        return CheckResult(
            name="schemas",
            status="failed",
            summary=f"{len(stale)} published JSON Schema file(s) out of date: run `lakehouse validate schemas --write`",
            details=[f"spec/{p.name} differs from its model" for p in stale],
        )
    return CheckResult(name="schemas", status="passed", summary=f"up to date: {names}")
