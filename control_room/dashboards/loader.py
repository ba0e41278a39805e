"""Reading dashboard YAML: parse, validate against the published JSON Schema (errors name the path), build the model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from control_room.dashboards import TEMPLATES_DIR
from control_room.dashboards.models import DashboardFile, dashboard_json_schema
from control_room.services.errors import Invalid

if TYPE_CHECKING:  # imported where used: jsonschema's format checkers take seconds, a replica's start pays none
    from jsonschema import Draft202012Validator

MAX_YAML_CHARS = 100_000


@cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(dashboard_json_schema())


def json_path(parts: Any) -> str:
    """``charts[0].type`` from a jsonschema/pydantic location."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_dashboard(text: str) -> DashboardFile:
    """A dashboard from its YAML; Invalid names the first wrong path (every one in ``errors``)."""
    if len(text) > MAX_YAML_CHARS:
        raise Invalid(f"the dashboard is longer than {MAX_YAML_CHARS} characters", field="yaml")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise Invalid(f"the YAML does not parse{where}: {getattr(exc, 'problem', exc)}", field="yaml") from exc
    errors = sorted(_validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        found = [{"field": json_path(e.absolute_path), "message": e.message} for e in errors]
        first = found[0]
        raise Invalid(f"{first['field']}: {first['message']}", field=first["field"], errors=found)
    try:
        return DashboardFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = json_path(error["loc"])
        raise Invalid(f"{path}: {error['msg'].removeprefix('Value error, ')}", field=path) from exc


def content_sha256(dashboard: DashboardFile) -> str:
    """SHA-256 of the dashboard's canonical JSON: a save that changes nothing adds no version."""
    canonical = json.dumps(dashboard.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Template:
    """A dashboard template shipped with the product."""

    name: str
    source_yaml: str
    dashboard: DashboardFile


@cache
def shipped_templates() -> dict[str, Template]:
    """Every template under control_room/dashboards/templates, by name (the file name without .yaml)."""
    found: dict[str, Template] = {}
    for path in sorted(TEMPLATES_DIR.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        found[path.stem] = Template(path.stem, text, parse_dashboard(text))
    return found
