"""`lakehouse api`: the contract API served on its own by uvicorn worker processes, for deployments that
run the UI (``lakehouse run``) and the API as separate services. Any number of these may share one
Postgres: every background loop is exactly-once by its unique keys (DESIGN decision 8)."""

from __future__ import annotations

import sys

import uvicorn

from control_room.config import get_settings
from control_room.db.migrate import MigrationError
from control_room.supervisor import SupervisorError, apply_migrations


def serve() -> int:
    """Migrate the shared database, then serve control_room.api:api on LAKEHOUSE_HOST:LAKEHOUSE_PORT."""
    settings = get_settings()
    if not settings.database_url:
        print(
            "lakehouse api needs the shared control-plane database: set LAKEHOUSE_DATABASE_URL "
            "(use `lakehouse run` for the embedded single-process setup).",
            file=sys.stderr,
        )
        return 2
    try:
        apply_migrations(settings.database_url)
    except (SupervisorError, MigrationError) as exc:
        print(f"lakehouse api: {exc}", file=sys.stderr)
        return 1
    print(
        f"lakehouse api: serving on http://{settings.host}:{settings.port}/api/v1 "
        f"with {settings.api_workers} worker process(es)",
        flush=True,
    )
    uvicorn.run(
        "control_room.api:api",
        host=settings.host,
        port=settings.port,
        workers=settings.api_workers,
        lifespan="on",
        log_level="warning",
    )
    return 0
