"""The confirmation before revoking a token (a person's API token, an executor's), which cannot be undone."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room.components.dialogs import confirm_dialog


def revoke_token_dialog(state: Any, target: Any, description: str, confirm_id: str) -> rx.Component:
    """The dialog asking "Revoke ``target``?", saying what happens then: confirming runs the ``revoke`` event of
    ``state``, whose ``revoke_open`` var and ``set_revoke_open`` event open and close the dialog."""
    return confirm_dialog(
        title=("Revoke ", target, "?"),
        description=description,
        confirm_label="Revoke token",
        confirm_id=confirm_id,
        on_confirm=state.revoke,
        is_open=state.revoke_open,
        on_open_change=state.set_revoke_open,
    )
