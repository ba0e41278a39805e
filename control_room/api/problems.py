"""Errors as application/problem+json (RFC 9457) naming the offending field; never echoing secrets."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_room.services.errors import ServiceError, from_db_error
from control_room.specs.tasks import merged_items, pointer_of_field, spec_error_items
from control_room.storage import ArtifactMissing, StorageError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")

ERROR_DESCRIPTIONS = {
    "400": "Malformed request.",
    "401": "Missing, unknown, expired or revoked bearer token.",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object, or not visible to the caller.",
    "409": "Conflict: lease lost, already exists, or state does not allow it.",
    "422": "Invalid input; `field` names the offending field.",
    "429": "A cap was reached.",
    "500": "Server fault.",
}


def problem(status: int, title: str, detail: str, *, field: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _validation_item(error: Any) -> dict[str, str]:
    loc = list(error.get("loc", ()))
    where = loc[0] if loc else None
    loc = [p for p in loc if p not in ("body", "query", "path", "header")]
    item = spec_error_items(error, loc)
    if where != "body":
        item.pop("pointer", None)  # a JSON pointer names a place in the body; parameters have only a name
    return item


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return _service_problem(exc)


def _service_problem(exc: ServiceError) -> JSONResponse:
    extra: dict[str, Any] = {}
    if exc.errors:
        extra["errors"] = exc.errors
        extra["pointer"] = exc.errors[0].get("pointer")
    elif exc.field and exc.field.startswith("spec"):
        extra["pointer"] = pointer_of_field(exc.field)
    return problem(exc.status, exc.title, exc.message, field=exc.field, **extra)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = merged_items(_validation_item(e) for e in exc.errors())
    first = errors[0] if errors else {"message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first.get("field") else str(first["message"])
    extra = {"pointer": first["pointer"]} if first.get("pointer") else {}
    return problem(422, "Invalid request", detail, field=first.get("field"), errors=errors, **extra)


async def _db_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    mapped = from_db_error(exc)
    if mapped is not None:
        return _service_problem(mapped)
    log.exception("database error")
    return problem(500, "Server fault", "the database failed to answer this request; it was logged")


async def _storage_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ArtifactMissing):
        return problem(404, "Not found", f"the artifact is registered but its bytes are not in this store: {exc}")
    log.error("artifact store failed: %s", exc)
    return problem(500, "Server fault", f"the artifact store failed: {exc}")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = problem(exc.status_code, str(exc.detail), str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        # Starlette names only the first route matching the path; list every method served there.
        response.headers["Allow"] = ", ".join(_methods_at(request))
    return response


def _methods_at(request: Request) -> list[str]:
    # The contract knows every path and its methods (routers are wrapped, so app.routes does not list them).
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in item if method in HTTP_METHODS}
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers and make every operation's OpenAPI document its problem responses."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(psycopg.Error, _db_error)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def document_problems(schema: dict[str, Any], problem_schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite error responses in an OpenAPI document to problem+json with the Problem schema."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    # pydantic nests ProblemItem under $defs: lift it into the components and point there.
    text = json.dumps(problem_schema).replace('"#/$defs/', '"#/components/schemas/')
    problem_schema = json.loads(text)
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            codes = set(operation.pop("x-problems", ["400", "401", "403", "404", "422", "500"]))
            codes |= {c for c in responses if c.startswith(("4", "5")) and c != "503"}
            for code in sorted(codes):
                responses[code] = {
                    "description": responses.get(code, {}).get("description") or ERROR_DESCRIPTIONS.get(code, "Error"),
                    "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
                }
    return schema
