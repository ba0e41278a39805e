"""`lakehouse validate contract`: the OpenAPI file is valid and has no breaking change against a base ref.

Breaking, for the clients and agents already built against the base: a removed path or operation, a
request field or parameter that is new and required (or became required), a removed response field,
a removed enum value (in requests or responses), or a field whose type changed. Additions pass.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

from control_room.api.contract import FAST_SAFE_LOADER
from control_room.validators.gitref import GitError, read_at, relative_to_repo, repo_root
from control_room.validators.results import CheckResult

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
_MAX_DEPTH = 12


@dataclass(frozen=True, order=True)
class BreakingChange:
    """One incompatible change, named by operation (``POST /api/v1/runs``) and field path."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def load_document(text: str | bytes, name: str) -> dict[str, Any]:
    """Parse an OpenAPI YAML/JSON document; ``ValueError`` naming the file when it is not a mapping."""
    try:
        document = yaml.load(text, Loader=FAST_SAFE_LOADER)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{name}: an OpenAPI document must be a mapping at the top")
    return document


def validity_problems(document: dict[str, Any]) -> list[str]:
    """Why the document is not valid OpenAPI 3.0/3.1 (empty when it is)."""
    version = str(document.get("openapi", ""))
    if not version.startswith(("3.0", "3.1")):
        return [f'openapi: "{version}" is not a supported version (3.0.x or 3.1.x)']
    validator_class = OpenAPIV31SpecValidator if version.startswith("3.1") else OpenAPIV30SpecValidator
    problems: list[str] = []
    errors = validator_class(document).iter_errors()
    while True:
        try:
            error = next(errors)
        except StopIteration:
            break
        except Exception as exc:  # the validator's own checks can crash on a malformed document
            if not problems:
                problems.append(f"(document): the OpenAPI validator cannot process it ({type(exc).__name__}: {exc})")
            break
        where = "/".join(str(p) for p in getattr(error, "absolute_path", []) or [])
        message = str(getattr(error, "message", None) or error).strip().splitlines()
        problems.append(f"{where or '(document)'}: {message[0] if message else type(error).__name__}")
    return problems


# Schema walking ----------------------------------------------------------------------------------


class _Schemas:
    """Resolves local ``$ref``s of one document and flattens ``allOf`` and nullable ``anyOf``/``oneOf``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: Any, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part, {}) if isinstance(target, dict) else {}
            return {**self.resolve(target, seen | {ref}), **{k: v for k, v in schema.items() if k != "$ref"}}
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            properties: dict[str, Any] = dict(merged.get("properties", {}))
            required: list[str] = list(merged.get("required", []))
            for part in schema["allOf"]:
                resolved = self.resolve(part, seen)
                properties.update(resolved.get("properties", {}))
                required.extend(resolved.get("required", []))
                for key, value in resolved.items():
                    if key not in ("properties", "required"):
                        merged.setdefault(key, value)
            merged["properties"], merged["required"] = properties, required
            return merged
        for union in ("anyOf", "oneOf"):
            options = schema.get(union)
            if isinstance(options, list):
                concrete = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
                if len(concrete) == 1:  # the nullable pattern: X or null
                    return {**self.resolve(concrete[0], seen), **{k: v for k, v in schema.items() if k != union}}
        return schema


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = [k for k in kind if k != "null"]
        return kind[0] if len(kind) == 1 else None
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


def _compare_schemas(
    schemas_old: _Schemas,
    schemas_new: _Schemas,
    old: Any,
    new: Any,
    *,
    where: str,
    path: str,
    direction: str,
    out: list[BreakingChange],
    depth: int = 0,
) -> None:
    if depth > _MAX_DEPTH:
        return
    a, b = schemas_old.resolve(old), schemas_new.resolve(new)
    if not a or not b:
        return
    label = f'{direction} field "{path}"' if path else f"{direction} body"

    def deeper(old_child: Any, new_child: Any, child_path: str) -> None:
        _compare_schemas(
            schemas_old, schemas_new, old_child, new_child, where=where, path=child_path, direction=direction,
            out=out, depth=depth + 1,
        )  # fmt: skip

    type_a, type_b = _type_of(a), _type_of(b)
    if type_a and type_b and type_a != type_b:
        out.append(BreakingChange(where, f"{label} changed type from {type_a} to {type_b}"))
        return
    if direction == "request":
        _compare_request_narrowing(schemas_old, schemas_new, a, b, label, where, out)
    variants_a, variants_b = _variants(a), _variants(b)
    if variants_a and variants_b:
        property_name = _discriminator(a)
        for tag in sorted(set(variants_a) - set(variants_b)) if direction == "request" else []:
            out.append(BreakingChange(where, f"{label} no longer accepts {property_name} {tag!r}"))
        for tag in sorted(set(variants_a) & set(variants_b)):
            deeper(variants_a[tag], variants_b[tag], f"{path}({property_name}={tag})")
    if isinstance(a.get("enum"), list) and isinstance(b.get("enum"), list):
        removed = [v for v in a["enum"] if v not in b["enum"]]
        if removed:
            values = ", ".join(repr(v) for v in removed)
            out.append(BreakingChange(where, f"{label} no longer allows enum value(s) {values}"))
    if "items" in a and "items" in b:
        deeper(a["items"], b["items"], f"{path}[]")
    props_a: dict[str, Any] = a.get("properties") or {}
    props_b: dict[str, Any] = b.get("properties") or {}
    if direction == "request":
        required_a, required_b = set(a.get("required") or []), set(b.get("required") or [])
        for name in sorted(required_b - required_a):
            field = f"{path}.{name}" if path else name
            what = "new and required" if name not in props_a else "now required"
            out.append(BreakingChange(where, f'request field "{field}" is {what}'))
        if b.get("additionalProperties") is False:
            for name in sorted(set(props_a) - set(props_b)):
                field = f"{path}.{name}" if path else name
                out.append(BreakingChange(where, f'request field "{field}" was removed (clients sending it get 422)'))
    else:
        for name in sorted(set(props_a) - set(props_b)):
            field = f"{path}.{name}" if path else name
            out.append(BreakingChange(where, f'response field "{field}" was removed'))
    for name in sorted(set(props_a) & set(props_b)):
        deeper(props_a[name], props_b[name], f"{path}.{name}" if path else name)


_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")


def _json_types(schemas: _Schemas, schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema accepts (through unions); empty when it says nothing about types."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(k) for k in kind}
    found: set[str] = set()
    for union in ("anyOf", "oneOf"):
        for option in schema.get(union) or []:
            types = _json_types(schemas, schemas.resolve(option))
            if not types:
                return set()  # an option without a type accepts anything
            found |= types
    return found


def _compare_request_narrowing(
    schemas_old: _Schemas,
    schemas_new: _Schemas,
    a: dict[str, Any],
    b: dict[str, Any],
    label: str,
    where: str,
    out: list[BreakingChange],
) -> None:
    """What a client could send before and cannot now: fewer types, tighter bounds, a new pattern."""
    types_a, types_b = _json_types(schemas_old, a), _json_types(schemas_new, b)
    if types_a and types_b:
        # null is left out: the resolver folds "X or null" into X, so it cannot be compared here.
        lost = types_a - types_b - {"null"} - ({"integer"} if "number" in types_b else set())
        if lost:
            out.append(BreakingChange(where, f"{label} no longer accepts {', '.join(sorted(lost))}"))
    for bounds, tighter in ((_UPPER_BOUNDS, min), (_LOWER_BOUNDS, max)):
        for bound in bounds:
            old, new = a.get(bound), b.get(bound)
            if isinstance(new, int | float) and not (isinstance(old, int | float) and tighter(old, new) == old):
                message = f"{label} {bound} narrowed from {_number(old)} to {_number(new)}"
                out.append(BreakingChange(where, message))
    if b.get("pattern") is not None and b.get("pattern") != a.get("pattern"):
        out.append(BreakingChange(where, f"{label} pattern changed to {b['pattern']!r}"))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "none"


def _discriminator(schema: dict[str, Any]) -> str:
    found = schema.get("discriminator")
    return str(found.get("propertyName", "kind")) if isinstance(found, dict) else "kind"


def _variants(schema: dict[str, Any]) -> dict[str, Any]:
    """A discriminated union's members by tag (``{"dbt": {"$ref": ...}}``); empty for other schemas."""
    found = schema.get("discriminator")
    if not isinstance(found, dict) or not isinstance(found.get("mapping"), dict):
        return {}
    return {str(tag): {"$ref": ref} for tag, ref in found["mapping"].items()}


def _normalized(path: str) -> str:
    # /runs/{id} and /runs/{run_id} are the same URL to a client.
    return re.sub(r"\{[^}]+\}", "{}", path)


def _json_schema(content: Any) -> Any:
    if not isinstance(content, dict):
        return None
    for media_type, body in content.items():
        if "json" in media_type and isinstance(body, dict):
            return body.get("schema")
    return None


def _parameters(schemas: _Schemas, path_item: dict[str, Any], operation: dict[str, Any]) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for parameter in [*(path_item.get("parameters") or []), *(operation.get("parameters") or [])]:
        resolved = schemas.resolve(parameter)
        if "name" in resolved and "in" in resolved:
            found[(str(resolved["in"]), str(resolved["name"]))] = resolved
    return found


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[BreakingChange]:
    """Every change from ``old`` to ``new`` that breaks a client built against ``old``."""
    schemas_old, schemas_new = _Schemas(old), _Schemas(new)
    out: list[BreakingChange] = []
    new_paths = {_normalized(p): item for p, item in (new.get("paths") or {}).items()}
    for raw_path, old_item in (old.get("paths") or {}).items():
        if not isinstance(old_item, dict):
            continue
        new_item = new_paths.get(_normalized(raw_path))
        for method in HTTP_METHODS:
            old_op = old_item.get(method)
            if not isinstance(old_op, dict):
                continue
            name = f"{method.upper()} {raw_path}"
            operation_id = old_op.get("operationId")
            where = f"{name} ({operation_id})" if operation_id else name
            new_op = new_item.get(method) if isinstance(new_item, dict) else None
            if not isinstance(new_op, dict):
                reason = "path removed" if new_item is None else "operation removed"
                out.append(BreakingChange(where, reason))
                continue
            assert isinstance(new_item, dict)
            old_params = _parameters(schemas_old, old_item, old_op)
            for key, parameter in sorted(_parameters(schemas_new, new_item, new_op).items()):
                was = old_params.get(key)
                if parameter.get("required") and not (was and was.get("required")):
                    state = "new and required" if was is None else "now required"
                    out.append(BreakingChange(where, f'{key[0]} parameter "{key[1]}" is {state}'))
                if was is not None:
                    _compare_schemas(
                        schemas_old,
                        schemas_new,
                        was.get("schema"),
                        parameter.get("schema"),
                        where=where,
                        path=f"{key[0]}:{key[1]}",
                        direction="request",
                        out=out,
                    )
            old_body = schemas_old.resolve(old_op.get("requestBody"))
            new_body = schemas_new.resolve(new_op.get("requestBody"))
            if new_body.get("required") and not old_body:
                out.append(BreakingChange(where, "a request body is now required"))
            _compare_schemas(
                schemas_old,
                schemas_new,
                _json_schema(old_body.get("content")),
                _json_schema(new_body.get("content")),
                where=where,
                path="",
                direction="request",
                out=out,
            )
            new_responses = new_op.get("responses") or {}
            for status, old_response in (old_op.get("responses") or {}).items():
                if not str(status).startswith("2"):
                    continue
                new_response = new_responses.get(status)
                if new_response is None:
                    out.append(BreakingChange(where, f"response {status} was removed"))
                    continue
                _compare_schemas(
                    schemas_old,
                    schemas_new,
                    _json_schema(schemas_old.resolve(old_response).get("content")),
                    _json_schema(schemas_new.resolve(new_response).get("content")),
                    where=f"{where} -> {status}",
                    path="",
                    direction="response",
                    out=out,
                )
    return sorted(set(out))


def check_contract(path: Path, base_ref: str | None) -> CheckResult:
    """Validity of the contract file plus, with a base ref, its breaking changes against that ref."""
    started = time.monotonic()

    def result(status: str, summary: str, details: list[str] | None = None) -> CheckResult:
        return CheckResult.model_validate(
            {
                "name": "contract",
                "status": status,
                "summary": summary,
                "details": details or [],
                "duration_s": round(time.monotonic() - started, 3),
            }
        )

    try:
        current = load_document(path.read_bytes(), str(path))
    except (OSError, ValueError) as exc:
        return result("failed", f"{path} cannot be read", [str(exc)])
    problems = validity_problems(current)
    if problems:
        return result("failed", f"{path.name} is not valid OpenAPI ({len(problems)} problem(s))", problems)
    if base_ref is None:
        return result("passed", f"{path.name} is valid OpenAPI {current.get('openapi')}; no base ref to compare with")
    try:
        repo = repo_root(path.resolve())
        before = read_at(repo, base_ref, relative_to_repo(repo, path))
    except (GitError, ValueError) as exc:
        return result("failed", f"cannot read {path.name} at {base_ref}", [str(exc)])
    if before is None:
        return result("passed", f"{path.name} is valid and new since {base_ref}: nothing to compare")
    try:
        previous = load_document(before, f"{path.name}@{base_ref}")
    except ValueError as exc:
        return result("failed", f"{path.name} at {base_ref} cannot be parsed", [str(exc)])
    changes = breaking_changes(previous, current)
    if changes:
        return result(
            "failed",
            f"{path.name}: {len(changes)} breaking change(s) against {base_ref}",
            [str(change) for change in changes],
        )
    return result("passed", f"{path.name} is valid and backward compatible with {base_ref}")
