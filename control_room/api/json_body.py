"""Routes whose JSON body pydantic-core validates straight from its bytes (the hot event batches).

FastAPI parses a body with ``json.loads`` and validates the Python objects it gets: two walks of the batch,
the second through Python objects. Here the request's ``json()`` validates the bytes into the body's model in
one walk (pydantic-core's own JSON parser) and hands FastAPI the model, which FastAPI's validation then takes
as it is. A body the model refuses is parsed as before and goes through FastAPI's own validation, so a bad body
gets the very same 422 (or 400) as on every other route. The contract does not change: the route declares its
body as always."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, ValidationError


def model_body_route(model: type[BaseModel]) -> type[APIRoute]:
    """A route class (``route_class_override`` of ``APIRouter.add_api_route``) for a route whose body is
    ``model``."""

    class ModelBodyRequest(Request):
        async def json(self) -> Any:
            if not hasattr(self, "_json"):
                body = await self.body()
                try:
                    self._json = model.model_validate_json(body)
                except ValidationError:
                    self._json = json.loads(body)  # FastAPI validates this, and names what is wrong, as elsewhere
            return self._json

    class ModelBodyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def validated_from_bytes(request: Request) -> Response:
                return await handler(ModelBodyRequest(request.scope, request.receive))

            return validated_from_bytes

    return ModelBodyRoute


def post_with_model_body(
    router: APIRouter, path: str, model: type[BaseModel], **route: Any
) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """``router.post(path, **route)`` for an endpoint whose body is ``model``, validated from its bytes."""

    def register(endpoint: DecoratedCallable) -> DecoratedCallable:
        router.add_api_route(path, endpoint, methods=["POST"], route_class_override=model_body_route(model), **route)
        return endpoint

    return register
