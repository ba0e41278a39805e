"""The Reflex app: our FastAPI routes mounted via ``api_transformer``, pages registered on import."""

import reflex as rx

from control_room.api import api, lifespan
from control_room.pages import home  # noqa: F401  (registers the page)

app = rx.App(api_transformer=api)
# Starlette skips a mounted app's lifespan, so Reflex runs ours (DB pool, background loops).
app.register_lifespan_task(lifespan)
