"""The FastAPI app mounted into Reflex (``api_transformer``): routers under /api/v1 and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from control_room.api import health
from control_room.db.connection import close_pool

API_PREFIX = "/api/v1"

# Every router of the contract API; add new ones here (they are mounted under API_PREFIX).
ROUTERS: tuple[APIRouter, ...] = (health.router,)


@asynccontextmanager
async def lifespan(_app: object = None) -> AsyncIterator[None]:
    """Process lifetime of the server: background loops run inside, the DB pool closes after.

    Under ``reflex run`` Starlette does not run a mounted app's lifespan, so control_room.py also
    registers this function as a Reflex lifespan task; FastAPI runs it when served alone (tests).
    """
    # Background loops (control_room/loops: lease reaper, scheduler, alert evaluator) start here
    # as asyncio tasks and are cancelled before the pool closes.
    try:
        yield
    finally:
        await close_pool()


def create_api() -> FastAPI:
    """A new FastAPI app with every router; OpenAPI docs live under /api so they never shadow a page."""
    app = FastAPI(
        title="Lakehouse Control Room API",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    return app


api = create_api()
