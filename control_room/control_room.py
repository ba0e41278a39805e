"""The Reflex app: our FastAPI routes mounted via ``api_transformer``, pages registered on import."""

import reflex as rx

from control_room.api import api, lifespan
from control_room.pages import (  # noqa: F401  (each import registers its page)
    artifacts,
    catalog,
    coming_later,
    executors,
    home,
    job_detail,
    jobs,
    login,
    run_detail,
    runs,
)

app = rx.App(api_transformer=api, stylesheets=["/control_room.css"])
# Starlette skips a mounted app's lifespan, so Reflex runs ours (DB pool, background loops).
app.register_lifespan_task(lifespan)
