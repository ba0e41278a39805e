"""A run form generated from a version's params JSON Schema: one field per top-level property (type,
required, default, enum, description), and the typed params its text values stand for."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from control_room.services.errors import Invalid

SCALAR_KINDS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


@dataclasses.dataclass
class ParamField:
    """One input of the run form; ``kind`` is string, integer, number, boolean, enum or json."""

    name: str = ""
    kind: str = "string"
    required: bool = False
    options: list[str] = dataclasses.field(default_factory=list)
    option_json: list[str] = dataclasses.field(default_factory=list)  # each option's value as JSON (its type)
    description: str = ""
    default: str = ""
    label: str = ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def form_fields(schema: dict[str, Any]) -> list[ParamField]:
    """The form's fields in the schema's order (required ones marked)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in properties.items():
        prop = prop if isinstance(prop, dict) else {}
        declared = prop.get("type")
        if isinstance(prop.get("enum"), list):
            kind = "enum"
        elif isinstance(declared, str) and declared in SCALAR_KINDS:
            kind = SCALAR_KINDS[declared]
        else:
            kind = "json"  # objects, arrays, unions: typed in as JSON
        fields.append(
            ParamField(
                name=name,
                kind=kind,
                required=name in required,
                options=[_text(v) for v in prop.get("enum") or []],
                option_json=[json.dumps(v) for v in prop.get("enum") or []],
                description=str(prop.get("description") or ""),
                default=_text(prop["default"]) if "default" in prop else "",
                label=name + (" *" if name in required else ""),
            )
        )
    return fields


def initial_values(fields: list[ParamField]) -> dict[str, str]:
    """Each field's starting text: its default, else empty (booleans: false)."""
    return {f.name: f.default or ("false" if f.kind == "boolean" else "") for f in fields}


def typed_params(fields: list[ParamField], values: dict[str, str]) -> dict[str, Any]:
    """The params the form's texts stand for; empty fields are left out (the schema's defaults and
    required checks apply on the server). Raises Invalid naming the field a text does not fit."""
    params: dict[str, Any] = {}
    for f in fields:
        text = values.get(f.name, "").strip()
        if f.kind == "boolean":
            params[f.name] = text == "true"
            continue
        if text == "":
            continue
        try:
            if f.kind == "integer":
                params[f.name] = int(text)
            elif f.kind == "number":
                params[f.name] = float(text)
            elif f.kind == "enum" and text in f.options:
                params[f.name] = json.loads(f.option_json[f.options.index(text)])  # the option with its type
            elif f.kind in ("json", "enum"):
                params[f.name] = json.loads(text)
            else:
                params[f.name] = text
        except ValueError as exc:
            kind = {"integer": "a whole number", "number": "a number"}.get(f.kind, "JSON")
            raise Invalid(f"must be {kind}", field=f"/params/{f.name}") from exc
    return params


def field_of(pointer: str | None) -> str:
    """The form field a service error names (``/params/limit`` -> ``limit``), or "" for the whole form."""
    if pointer and pointer.startswith("/params/"):
        return pointer.removeprefix("/params/").split("/", 1)[0]
    return ""
