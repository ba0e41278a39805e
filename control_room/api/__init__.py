"""The FastAPI app mounted into Reflex (``api_transformer``): routers under /api/v1 and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from control_room.api import alerts, auth, executors, health, jobs, lineage, metrics, ml, problems, queries, runs
from control_room.api import promotions as promotions_api
from control_room.api.access_policies import router as access_policies_router
from control_room.api.ask import router as ask_router
from control_room.api.catalog_sync import router as catalog_sync_router
from control_room.api.dashboards import router as dashboards_router
from control_room.api.governance import router as governance_router
from control_room.api.models import Problem
from control_room.api.retention import router as retention_router
from control_room.api.serving import proxy_router as serving_proxy_router
from control_room.api.serving import router as serving_router
from control_room.api.superset import router as superset_router
from control_room.api.web_sessions import router as web_sessions_router
from control_room.db.connection import DatabaseNotConfigured, close_pool, database_url, get_pool
from control_room.db.notify import stop_notifier
from control_room.loops.start import start_when_serving

API_PREFIX = "/api/v1"

# Every router of the contract API; add new ones here (they are mounted under API_PREFIX).
ROUTERS: tuple[APIRouter, ...] = (
    health.router, metrics.router, executors.router, runs.router, lineage.router, lineage.ingest_router,
    queries.router, jobs.router,
    auth.router, alerts.router,
    governance_router,
    ml.router,
    web_sessions_router,
    promotions_api.router,
    access_policies_router,
    dashboards_router,
    superset_router,
    ask_router,
    catalog_sync_router,
    serving_router,
    retention_router,
    serving_proxy_router,
)

DESCRIPTION = """\
The one HTTP contract of Lakehouse Control Room.

* **Executor agents** authenticate with a pool-scoped executor token (`lhx_…`, created with
  `lakehouse executors token create`): register, claim (long-poll), heartbeat their leases, append events,
  upload artifacts (size and SHA-256 verified) and finalize. A lost lease answers 409: stop the work.
* **Clients** authenticate with a user API token (`lhu_…`): submit, list, inspect, cancel and retry runs,
  read and stream events (Server-Sent Events, resumable with `Last-Event-ID`), download artifacts.

Errors are `application/problem+json` with `field` naming the offending input. Text is stored in
PostgreSQL, so strings (also inside free-form JSON objects) cannot contain NUL (U+0000) characters or
unpaired surrogates: such requests get 422.
"""


@asynccontextmanager
async def lifespan(_app: object = None) -> AsyncIterator[None]:
    """Process lifetime of the server: the DB pool opens at once, background loops start once it serves
    (control_room/loops/start.py), the pool closes after.

    Under ``reflex run`` Starlette does not run a mounted app's lifespan, so control_room.py also
    registers this function as a Reflex lifespan task; FastAPI runs it when served alone (tests).
    """
    loops: list[asyncio.Task[None]] = []

    async def start_loops() -> None:
        # Imported here: the loops' modules are the process's business once it serves, not before.
        from control_room.loops.alerts import run_alert_evaluator
        from control_room.loops.deliveries import run_delivery_sender
        from control_room.loops.promotions import run_promotion_evaluator
        from control_room.loops.reaper import run_reaper
        from control_room.loops.retention import run_retention
        from control_room.loops.scheduler import run_scheduler
        from control_room.loops.serving import run_serving_restarter

        with contextlib.suppress(DatabaseNotConfigured):
            loops.append(asyncio.create_task(run_reaper(database_url()), name="lease-reaper"))
            loops.append(asyncio.create_task(run_scheduler(database_url()), name="scheduler"))
            loops.append(asyncio.create_task(run_alert_evaluator(database_url()), name="alert-evaluator"))
            loops.append(asyncio.create_task(run_delivery_sender(database_url()), name="alert-deliveries"))
            loops.append(asyncio.create_task(run_promotion_evaluator(database_url()), name="promotion-gates"))
            loops.append(asyncio.create_task(run_serving_restarter(database_url()), name="serving-restarts"))
            loops.append(asyncio.create_task(run_retention(database_url()), name="event-retention"))

    starter = start_when_serving(start_loops)
    with contextlib.suppress(DatabaseNotConfigured):
        await get_pool()  # opens without waiting: its first connection is made while the socket starts to listen
    # The imported modules, routes and models (some 250,000 objects, as long-lived as the process) leave the
    # garbage collector's view: each full collection walked them all again, 60-110 ms of stopped event loop
    # every few seconds under load (bench/results/event-append-2026-12-05.md). They hold almost no cycles to
    # free (a collection here finds about 60 objects), so none is run first.
    gc.freeze()
    try:
        yield
    finally:
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop_notifier()
        await close_pool()
        gc.unfreeze()  # a process that enters the lifespan again (tests do) collects them as before meanwhile


def _plain_event_streams(schema: dict[str, Any]) -> dict[str, Any]:
    """Describe SSE bodies as text (OpenAPI 3.1 has no `itemSchema`; that arrives with 3.2)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                stream = response.get("content", {}).get("text/event-stream")
                if stream is not None:
                    stream.pop("itemSchema", None)
                    stream["schema"] = {"type": "string", "description": "Server-Sent Events stream."}
    return schema


def _hot_routes_first(route: Any) -> int:
    """Sort key: the serving proxy's routes, then OpenLineage ingest, then the rest in the contract's order."""
    if getattr(route, "original_router", None) is serving_proxy_router:
        return 0
    return 1 if getattr(route, "original_router", None) is lineage.ingest_router else 2


def create_api() -> FastAPI:
    """A new FastAPI app with every router; OpenAPI docs live under /api so they never shadow a page."""
    app = FastAPI(
        title="Lakehouse Control Room API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    documented = list(app.router.routes)  # the contract's order
    # Requests try the routes in order and the invocations proxy came after ~170 others, each matched per
    # request: about a third of the proxy's own cost (issue 23's target: < 5 ms added at p95). It is tried
    # first, then OpenLineage ingest (issue 21's target: >= 500 events/s, one event per request); no other
    # route has their method and path shape, so every request still reaches the same route.
    app.router.routes.sort(key=_hot_routes_first)
    problems.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=documented)
            schema = problems.document_problems(schema, Problem.model_json_schema())
            app.openapi_schema = _plain_event_streams(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


api = create_api()
