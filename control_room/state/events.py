"""Event decorators of our states, typed for mypy.

Reflex types ``rx.event`` for pyright: its ``__new__`` returns a descriptor that is not an instance of
the class, which mypy does not accept (it reads ``rx.event(...)`` as an ``EventNamespace`` object and
refuses to call it). These wrappers call the very same decorator and hand the handler back as Any,
so pages can write ``State.handler(arg)`` the way Reflex intends.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import reflex as rx
from reflex.istate.data import ReflexURL
from reflex_base.constants.route import RouteVar
from reflex_base.event.context import EventContext


def handler(fn: Callable[..., Any]) -> Any:
    """A regular event handler (runs with the state locked: keep it free of I/O)."""
    return rx.event(fn)


def background(fn: Callable[..., Any]) -> Any:
    """A background event handler: does its I/O unlocked, and enters ``async with self`` to assign."""
    return rx.event(background=True)(fn)  # type: ignore[operator]


def setter(var: str, *, longest: int | None = None, then: str | None = None) -> Any:
    """A regular event handler ``set_<var>`` that stores the value it is given in the state var ``var`` (an
    input, a select, a switch or a dialog that opened or closed). ``longest``: a text is cut to that many
    characters. ``then``: the name of a method of the state that follows the change (redraws what depends on
    the var); the handler returns its result, the events to run next. Assign it to the class attribute of the
    same name: ``set_body = setter("body")``."""

    def set_var(self: Any, value: Any) -> Any:  # not self: a state class, which Reflex reads as another state
        setattr(self, var, value if longest is None else value[:longest])
        return getattr(self, then)() if then else None

    # Reflex names an event after its function's qualified name: it must be the attribute's.
    set_var.__name__ = set_var.__qualname__ = f"set_{var}"
    return handler(set_var)


def exclusive(flag: str) -> Callable[[Callable[..., Any]], Any]:
    """An event (a coroutine or an async generator, under ``background`` or ``signed_in_event``) that runs once
    at a time in a tab: it sets the state's bool ``flag`` (the page shows it busy), does nothing when ``flag``
    was set already (a second click), and clears it when it ends, however it ends."""

    def wrap(fn: Callable[..., Any]) -> Any:
        async def event(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with self:
                if getattr(self, flag):
                    return
                setattr(self, flag, True)
            try:
                async for item in passed_on(fn(self, *args, **kwargs)):
                    yield item
            finally:
                async with self:
                    setattr(self, flag, False)

        return functools.update_wrapper(event, fn)

    return wrap


async def passed_on(done: AsyncIterator[Any] | Awaitable[Any]) -> AsyncIterator[Any]:
    """The events of an event's body: each one an async generator yields, or a coroutine's result (when not
    None)."""
    if isinstance(done, AsyncIterator):
        async for item in done:
            yield item
    elif (result := await done) is not None:
        yield result


def page_url(state: Any) -> ReflexURL:
    """The address of the page that sent the event being handled (path and query).

    Read this, not ``state.router.url``, in a background event: its ``async with self`` loads the tab's newest
    state, whose router is that of the tab's last event, which can come from the page the person just left (a
    ticker's event sent before a navigation and handled after it; CI saw a saved job's page say "This is not a
    job id" so). Reflex keeps each event's own routing data in its context, and the events it yields inherit it.
    """
    try:
        address = EventContext.get().router_data.get(RouteVar.ORIGIN, "")
    except LookupError:  # outside an event
        address = ""
    return ReflexURL(address) if address else state.router.url


def page_tail(state: Any) -> str:
    """The last segment of the event's page path: a dynamic route's id (``/jobs/<id>``, ``/runs/<id>``)."""
    return page_url(state).path.rstrip("/").rsplit("/", 1)[-1]


def page_id(state: Any) -> uuid.UUID | None:
    """The id the event's page path ends with (``/jobs/<id>``, ``/runs/<id>``), or None when it names none."""
    try:
        return uuid.UUID(page_tail(state))
    except ValueError:
        return None
