"""Run actions shared by the runs list and the run page: a re-run as the signed-in user, and where it leads."""

from __future__ import annotations

import uuid

import reflex as rx
from reflex.event import EventSpec

from control_room import routes
from control_room.services import runs
from control_room.state.base import SignedIn, as_user, problem_text


async def rerun_event(
    signed: SignedIn | None, run_id: uuid.UUID, *, mode: str, from_task: str | None = None
) -> EventSpec | None:
    """Re-run ``run_id`` (runs.retry_run, checked again by the SQL as the user): the new run's page, or a
    toast saying why it was refused; None when nobody is signed in."""
    if signed is None:
        return None
    try:
        async with as_user(signed.principal) as conn:
            created = await runs.retry_run(
                conn, run_id=run_id, requested_by=signed.principal.user_id, requested_by_name=signed.principal.email,
                mode=mode, from_task=from_task,
            )  # fmt: skip
    except Exception as exc:
        refused: EventSpec = rx.toast.error(f"Re-run refused: {problem_text(exc)}")
        return refused
    return rx.redirect(routes.run_detail(str(created["id"])))
