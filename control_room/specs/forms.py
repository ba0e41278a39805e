"""Forms generated from JSON Schemas: one field per top-level property (type, required, default, enum,
description), and the typed values their texts stand for.

Two forms use it: the job "Run" dialog (a version's params schema) and the task form of the Submit
dialog and the job editor (each engine's task-spec schema, from ``control_room.specs.tasks``).
"""

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
    placeholder: str = ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _resolved(prop: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """A property with its ``$ref`` followed and an optional's ``anyOf [X, null]`` read as X."""
    prop = dict(prop) if isinstance(prop, dict) else {}
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        prop = {**defs.get(ref.removeprefix("#/$defs/"), {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    members = prop.get("anyOf")
    if isinstance(members, list):
        kept = [m for m in members if not (isinstance(m, dict) and m.get("type") == "null")]
        if len(kept) == 1:
            rest = {k: v for k, v in prop.items() if k != "anyOf"}
            return {**_resolved(kept[0], defs), **rest}
    return dict(prop)


def _placeholder(prop: dict[str, Any], kind: str) -> str:
    sample = (prop.get("examples") or [None])[0]
    if sample is not None:
        return _text(sample)
    if kind == "json":
        return {"array": '["…"]', "object": '{"…": "…"}'}.get(str(prop.get("type")), "JSON value")
    return kind


def form_fields(schema: dict[str, Any], *, skip: frozenset[str] = frozenset()) -> list[ParamField]:
    """The form's fields in the schema's order (required ones marked), without the names in ``skip``."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    defs = schema.get("$defs") if isinstance(schema.get("$defs"), dict) else {}
    required = set(schema.get("required") or [])
    fields = []
    for name, raw in properties.items():
        if name in skip:
            continue
        prop = _resolved(raw, defs or {})
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
                placeholder=_placeholder(prop, kind),
            )
        )
    return fields


def initial_values(fields: list[ParamField]) -> dict[str, str]:
    """Each field's starting text: its default, else empty (booleans: false)."""
    return {f.name: f.default or ("false" if f.kind == "boolean" else "") for f in fields}


def typed_value(field: ParamField, text: str) -> Any:
    """The value a field's (non-empty) text stands for; ValueError saying what it must be otherwise."""
    text = text.strip()
    try:
        if field.kind == "boolean":
            return text == "true"
        if field.kind == "integer":
            return int(text)
        if field.kind == "number":
            return float(text)
        if field.kind == "enum" and text in field.options:
            return json.loads(field.option_json[field.options.index(text)])  # the option with its type
        if field.kind in ("json", "enum"):
            return json.loads(text)
        return text
    except ValueError as exc:
        kind = {"integer": "a whole number", "number": "a number"}.get(field.kind, "JSON")
        raise ValueError(f"must be {kind}") from exc


def typed_params(fields: list[ParamField], values: dict[str, str]) -> dict[str, Any]:
    """The params the form's texts stand for; empty fields are left out (the schema's defaults and
    required checks apply on the server). Raises Invalid naming the field a text does not fit."""
    params: dict[str, Any] = {}
    for f in fields:
        text = values.get(f.name, "").strip()
        if text == "" and f.kind != "boolean":
            continue
        try:
            params[f.name] = typed_value(f, text)
        except ValueError as exc:
            raise Invalid(str(exc), field=f"/params/{f.name}") from exc
    return params


def field_of(pointer: str | None) -> str:
    """The form field a service error names (``/params/limit`` -> ``limit``), or "" for the whole form."""
    if pointer and pointer.startswith("/params/"):
        return pointer.removeprefix("/params/").split("/", 1)[0]
    return ""
