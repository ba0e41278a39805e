"""Before every event of a tab (its hydrate first), the session of the websocket's HttpOnly cookie is
handed to SessionState; when it is not the session the tab's states were loaded for, every page's
state is reset first, so the first state the browser receives after a sign-out (or a sign-in as
someone else) holds nothing of the previous session.

Reflex keeps a tab's states on the server across page loads (keyed by the tab's token), so without
this a sign-out followed by opening /runs would send the previous run list with the hydrate, before
the page's load event redirects to the sign-in page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reflex.middleware.middleware import Middleware
from reflex.state import BaseState, StateUpdate

from control_room import session_cookie
from control_room.config import get_settings
from control_room.state.base import SessionState

if TYPE_CHECKING:
    from reflex.app import App
    from reflex_base.event import Event


def _state_classes(root: type[BaseState]) -> list[type[BaseState]]:
    """``root`` and every state below it."""
    found = [root]
    for child in sorted(root.get_substates(), key=lambda cls: cls.get_full_name()):
        found.extend(_state_classes(child))
    return found


HYDRATE = ".hydrate_and_load"  # a tab loading a page anew (or reconnecting): the full state is sent next


async def _forget_page_data(state: BaseState) -> None:
    """Before a hydrate, the states that keep a page's data per visit (a ``_forget_page_data`` method) drop it,
    so the hydrate does not send, and the browser does not draw, the rows of the last visit before the page's
    load event reads them again."""
    for cls in _state_classes(SessionState):
        if "_forget_page_data" in vars(cls):
            loaded: Any = await state.get_state(cls)
            loaded._forget_page_data()


class SessionGuard(Middleware):
    """Hands the cookie's session token to SessionState, resetting every page's state on a change."""

    async def preprocess(self, app: App, state: BaseState, event: Event) -> StateUpdate | None:
        token = session_cookie.session_token(state.router.headers.cookie, get_settings())
        session = await state.get_state(SessionState)
        if session.holds_session(token):
            if event.name.endswith(HYDRATE):
                await _forget_page_data(state)
            return None
        for cls in _state_classes(SessionState):
            loaded: Any = await state.get_state(cls)  # Any: Reflex's reset() carries no annotations
            loaded.reset()
        session.adopt_session(token)
        return None
