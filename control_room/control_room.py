"""The Reflex app: our FastAPI routes mounted via ``api_transformer``, pages registered on import."""

import logging

import reflex as rx

from control_room.api import api, lifespan
from control_room.pages import (  # noqa: F401  (each import registers its page)
    alerts,
    api_tokens,
    artifacts,
    ask,
    catalog,
    coming_later,
    dashboards,
    executors,
    governance,
    home,
    job_detail,
    jobs,
    lineage,
    login,
    ml_endpoints,
    ml_experiments,
    ml_models,
    not_found,
    policies,
    preferences,
    promotions,
    run_detail,
    runs,
    superset,
)
from control_room.state.session_guard import SessionGuard


class _SamePageAppliedAgain(logging.Filter):
    """Reflex's server process applies the ``@rx.page`` pages a second time when it evaluates them, and says of
    each of ours that it "is being redefined with the same component": the same page again, which Reflex merges
    (another component on a route is an error, not this warning). Kept off `make run`'s console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is being redefined with the same component" not in record.getMessage()


logging.getLogger("reflex.app").addFilter(_SamePageAppliedAgain())

app = rx.App(api_transformer=api, stylesheets=["/control_room.css"])
# Every event first adopts the session of the websocket's HttpOnly cookie (see state/session_guard.py).
app.add_middleware(SessionGuard())
# Starlette skips a mounted app's lifespan, so Reflex runs ours (DB pool, background loops).
app.register_lifespan_task(lifespan)
