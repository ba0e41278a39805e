"""Errors as application/problem+json (RFC 9457) naming the offending field; never echoing secrets."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_room.services.errors import ServiceError, from_db_error
from control_room.storage import ArtifactMissing, StorageError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

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


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or ".".join(str(p) for p in loc)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem(exc.status, exc.title, exc.message, field=exc.field)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field_of(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
    first = errors[0] if errors else {"field": None, "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}" if first["field"] else str(first["message"])
    return problem(422, "Invalid request", detail, field=first["field"], errors=errors)


async def _db_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, psycopg.Error)
    mapped = from_db_error(exc)
    if mapped is not None:
        return problem(mapped.status, mapped.title, mapped.message, field=mapped.field)
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
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
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
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = problem_schema
    schemas = schema["components"]["schemas"]
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
