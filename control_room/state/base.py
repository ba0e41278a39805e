"""The shared base of every page's state: who is signed in, their projects and roles, the selected
project and environment, and the principal that services scope their SQL to.

The session token lives in an HttpOnly cookie (control_room.session_cookie) that page scripts cannot
read: the websocket's request carries it, ``SessionGuard`` (state/session_guard.py) copies it into the
backend-only ``_session_token`` before every event, and it is never sent to the browser. It is checked
against ops.user_sessions (and the memberships reloaded) at most every SESSION_CHECK_SECONDS, so
signing out or expiry takes effect within that time. Nothing here trusts the browser: roles only
decide which buttons show, and every action is checked again by the service and the SQL functions
as the user.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import psycopg
import reflex as rx
from psycopg import AsyncConnection
from reflex.state import OnLoadInternalState

from control_room import routes
from control_room.config import get_settings
from control_room.db.connection import get_pool
from control_room.services import users
from control_room.services.auth import UserPrincipal, scoped
from control_room.services.errors import ServiceError, Unauthorized, from_db_error
from control_room.state.events import background, handler, page_url, passed_on
from control_room.state.rows import ALL as ALL  # re-exported: the pages import it with the state
from control_room.state.rows import ProjectChoice

logger = logging.getLogger(__name__)

SESSION_CHECK_SECONDS = 30.0
LOAD_WATCH_SECONDS = 2.0  # the shell's load watchdog ticks this often while a page is not loaded
LOAD_STUCK_SECONDS = 6.0  # pages load in well under a second
ENVIRONMENTS = ("dev", "staging", "prod")
ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}
NO_PROJECT = "You are not a member of any project yet: ask an admin for a role."
T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="SessionState")


@dataclass(frozen=True)
class SignedIn:
    """What a background event needs after the session check: who, and where they are looking."""

    principal: UserPrincipal
    project_id: uuid.UUID | None
    environment: str | None
    roles: dict[str, str]
    is_org_admin: bool

    def role_on(self, project_id: uuid.UUID | str | None) -> str:
        """The user's role on a project ("" when none)."""
        return self.roles.get(str(project_id), "")

    def can_operate(self, project_id: uuid.UUID | str | None) -> bool:
        """Operators and admins submit, cancel and retry runs."""
        return ROLE_RANK.get(self.role_on(project_id), 0) >= ROLE_RANK["operator"]


@dataclass(frozen=True)
class Reading(Generic[T]):
    """What one read as the user gave: its value (None when it failed), the error to show, and who read
    (None: nobody is signed in, so the page sends the person to sign in)."""

    value: T | None
    error: str
    signed: SignedIn | None

    @property
    def failed(self) -> bool:
        """Nobody was signed in, or the work failed (``error`` says why)."""
        return self.signed is None or bool(self.error)

    def toast(self) -> Any:
        """The error as a toast (None when there is none to show)."""
        return rx.toast.error(self.error) if self.error else None


def replace_address(path: str) -> str:
    """A script that shows ``path`` in the address bar without navigating (the router's own history state is
    kept, so Back and Forward still work as before)."""
    return f"window.history.replaceState(window.history.state, '', {json.dumps(path)})"


def download_script(url: str, filename: str) -> str:
    """A script that downloads ``url`` of the HTTP API as a file, authenticated by the HttpOnly session
    cookie the browser sends (the API checks access as the user, like every other read)."""
    return (
        f"fetch({json.dumps(url)}, {{credentials: 'same-origin'}})"
        ".then(r => { if (!r.ok) { throw new Error('download failed: HTTP ' + r.status); } return r.blob(); })"
        f".then(b => {{ const a = document.createElement('a'); a.href = URL.createObjectURL(b); "
        f"a.download = {json.dumps(filename)}; document.body.appendChild(a); a.click(); "
        "setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000); })"
        ".catch(e => alert(e.message))"
    )


def problem_text(exc: Exception) -> str:
    """A message a person can act on, for errors of services and of the database."""
    if isinstance(exc, ServiceError):
        return f"{exc.message} ({exc.field})" if exc.field else exc.message
    if isinstance(exc, psycopg.Error):
        mapped = from_db_error(exc)
        if mapped is not None:
            return problem_text(mapped)
        logger.warning("the control-plane database failed to answer", exc_info=exc)  # the page says: see the logs
        return "the control-plane database failed to answer; try again, and check its logs if it persists"
    logger.error("unexpected error shown to a person", exc_info=exc)
    return f"unexpected error: {exc}"


class SessionState(rx.State):
    """Signed-in user, memberships and the project/environment switcher, shared by every page."""

    selected_project: str = rx.LocalStorage("", name="lh_project")
    selected_environment: str = rx.LocalStorage(ALL, name="lh_environment")
    time_display: str = rx.LocalStorage("local", name="lh_time_display")  # "utc": times shown in UTC
    user_email: rx.Field[str] = rx.field("")
    user_name: rx.Field[str] = rx.field("")
    projects: rx.Field[list[ProjectChoice]] = rx.field(default_factory=list)
    is_org_admin: rx.Field[bool] = rx.field(False)
    auth_provider: rx.Field[str] = rx.field("local")
    session_ended: rx.Field[bool] = rx.field(False)  # expired or revoked while a page was open

    # Backend-only (never sent to or settable by the browser): the session token of the websocket's
    # cookie (set by SessionGuard), one the database refused, and the last successful session check.
    _session_token: str = ""
    _rejected_token: str = ""
    _user_id: str = ""
    _checked_token: str = ""
    _checked_at: float = 0.0
    # The shell's load watchdog (reload_if_stuck): the page it watches, since when, and its last tick.
    _unloaded_path: str = ""
    _unloaded_since: float = 0.0
    _unloaded_tick: float = 0.0

    @handler
    def reload_if_stuck(self, _now: str = "") -> Any:
        """The shell's watchdog while a page is not hydrated (its load events not yet run). A navigation sends
        one event that makes the server run the new page's load events; were it lost (a websocket that
        reconnected mid-navigation), the page would wait for ever. Still waiting LOAD_STUCK_SECONDS after
        its first tick, the page asks again."""
        now = time.monotonic()
        path = self.router.url.path
        if path != self._unloaded_path or now - self._unloaded_tick > 2 * LOAD_WATCH_SECONDS:  # another wait
            self._unloaded_path, self._unloaded_since = path, now
        self._unloaded_tick = now
        if now - self._unloaded_since < LOAD_STUCK_SECONDS:
            return None
        self._unloaded_since = now
        logger.warning("page %s was not loaded after %.0f s: asking for its load events again", path,
                       LOAD_STUCK_SECONDS)  # fmt: skip
        return OnLoadInternalState.on_load_internal

    @rx.var
    def project_id(self) -> str:
        """The selected project, or the first one the user can see."""
        ids = [p.id for p in self.projects]
        if self.selected_project in ids:
            return self.selected_project
        return ids[0] if ids else ""

    @rx.var
    def project_name(self) -> str:
        """Name of the selected project."""
        return next((p.name for p in self.projects if p.id == self.project_id), "")

    @rx.var
    def environment(self) -> str:
        """The selected environment, or ALL."""
        return self.selected_environment if self.selected_environment in ENVIRONMENTS else ALL

    @rx.var
    def pin_utc(self) -> bool:
        """Whether the person pinned UTC for every time shown (else the browser's time zone)."""
        return self.time_display == "utc"

    @rx.var
    def role(self) -> str:
        """The user's role on the selected project."""
        return next((p.role for p in self.projects if p.id == self.project_id), "")

    @rx.var
    def can_operate(self) -> bool:
        """Operators and admins see the submit, cancel and retry buttons."""
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK["operator"]

    @rx.var
    def user_initials(self) -> str:
        """Initials for the avatar in the sidebar."""
        source = self.user_name or self.user_email.split("@", 1)[0]
        parts = [part for part in source.replace(".", " ").replace("-", " ").split() if part]
        return "".join(part[0] for part in parts[:2]).upper() or "?"

    def _signed_in_from_cache(self) -> SignedIn | None:
        """Call with the state lock held: the cached check, when still fresh for the current cookie."""
        fresh = time.monotonic() - self._checked_at < SESSION_CHECK_SECONDS
        token = self._session_token
        if not token or token != self._checked_token or not fresh or not self._user_id:
            return None
        return self._signed_in_now()

    def _signed_in_now(self) -> SignedIn:
        project = self.project_id
        return SignedIn(
            principal=UserPrincipal(user_id=uuid.UUID(self._user_id), email=self.user_email),
            project_id=uuid.UUID(project) if project else None,
            environment=None if self.environment == ALL else self.environment,
            roles={p.id: p.role for p in self.projects},
            is_org_admin=self.is_org_admin,
        )

    def _forget_session(self) -> None:
        self._rejected_token = self._session_token
        self._user_id = self._checked_token = ""
        self._checked_at = 0.0
        self.user_email = self.user_name = ""
        self.projects = []
        self.is_org_admin = False

    async def signed_in(self) -> SignedIn | None:
        """For background events, called outside ``async with self``: the signed-in user (checking
        the session when the cached check is stale), or None when nobody is signed in."""
        async with self:
            cached = self._signed_in_from_cache()
            token = self._session_token
            rejected = token == self._rejected_token
        if cached is not None:
            return cached
        if not token or rejected:
            return None
        try:
            pool = await get_pool()
            async with pool.connection() as conn:
                user = await users.session_user(conn, token=token)
                projects, org_admin = await users.memberships(conn, user)
        except Unauthorized:
            async with self:
                if self._session_token == token:
                    self.session_ended = bool(self._user_id)  # a page was open: tell the person
                    self._forget_session()
            return None
        shown = {
            "session_ended": False,
            "user_email": user.email,
            "user_name": user.display_name,
            "is_org_admin": org_admin,
            "auth_provider": "supabase" if get_settings().supabase_url else "local",
            "projects": [
                ProjectChoice(id=str(p.project_id), slug=p.slug, name=p.name, org=p.org_name, role=p.role)
                for p in projects
            ],
        }
        async with self:
            self._user_id = str(user.user_id)
            self._checked_token = token
            self._checked_at = time.monotonic()
            # Only what changed: every page's table re-renders on any change of this state (the switcher and
            # roles are read in each row), and a check every 30 s usually finds nothing new.
            for name, value in shown.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
            return self._signed_in_now()

    async def current_path(self) -> str:
        """The path (with query) the browser is on, for returning there after signing in."""
        async with self:
            url = page_url(self)
            return url.path + (f"?{url.query}" if url.query else "")

    async def _login_redirect(self) -> Any:
        """The sign-in page, coming back here after (for a background event called outside ``async with``)."""
        return rx.redirect(routes.login(next_path=await self.current_path()))

    async def _read_as_user(
        self, read: Callable[[AsyncConnection, SignedIn], Awaitable[T]], *, needs_project: bool = True
    ) -> Reading[T]:
        """The session check, then ``read`` on a connection acting as the user; an error becomes the text to
        show. ``needs_project``: a user without any project gets NO_PROJECT instead of the read."""
        signed = await self.signed_in()
        if signed is None:
            return Reading(None, "", None)
        return await self._read_as(signed, read, needs_project=needs_project)

    async def _read_as(
        self, signed: SignedIn, read: Callable[[AsyncConnection, SignedIn], Awaitable[T]], *, needs_project: bool = True
    ) -> Reading[T]:
        """``read`` on a connection acting as ``signed`` (already checked, as in a ``signed_in_event``)."""
        if needs_project and signed.project_id is None:
            return Reading(None, NO_PROJECT, signed)
        try:
            async with as_user(signed.principal) as conn:
                return Reading(await read(conn, signed), "", signed)
        except Exception as exc:
            return Reading(None, problem_text(exc), signed)

    async def _read_shown(
        self,
        read: Callable[[AsyncConnection, SignedIn], Awaitable[T | None]],
        show: Callable[[T], None],
        *,
        signed: SignedIn | None = None,
        error: str = "error",
        needs_project: bool = True,
    ) -> None:
        """``read`` as the user (``signed`` when already checked, as in a ``signed_in_event``), then, with the
        state locked, its problem in the state var ``error`` ("" when none) and, when it found a value (not
        None), ``show`` of it. ``needs_project`` as for ``_read_as_user``."""
        reading = await (
            self._read_as(signed, read, needs_project=needs_project)
            if signed is not None
            else self._read_as_user(read, needs_project=needs_project)
        )
        async with self:
            setattr(self, error, reading.error)
            if reading.value is not None:
                show(reading.value)

    async def _dialog_sent(self, work: Callable[[], Awaitable[T]], *, error: str, dialog: str) -> T | None:
        """A dialog's form sent: ``work``'s result (never None), then the dialog (the state var ``dialog``)
        closed; or None when ``work`` failed, its problem shown in the state var ``error``, the dialog still
        open for a correction."""
        try:
            done = await work()
        except Exception as exc:
            async with self:
                setattr(self, error, problem_text(exc))
            return None
        async with self:
            setattr(self, dialog, False)
        return done

    @handler
    def set_project(self, project_id: str) -> None:
        """Switch project (the page's own load event runs next, see components.layout)."""
        self.selected_project = project_id

    @handler
    def set_pin_utc(self, pinned: bool) -> None:
        """Show every time in UTC (or again in the browser's time zone)."""
        self.time_display = "utc" if pinned else "local"

    @handler
    def set_environment(self, environment: str) -> None:
        """Switch environment, or ALL."""
        self.selected_environment = environment if environment in ENVIRONMENTS else ALL

    def holds_session(self, token: str) -> bool:
        """Whether this tab's states were loaded for this session token (of the websocket's cookie)."""
        return token == self._session_token

    def adopt_session(self, token: str) -> None:
        """Called by SessionGuard, after it reset every page's state, with the cookie's new token."""
        self._session_token = token
        self._rejected_token = ""
        self._user_id = self._checked_token = ""
        self._checked_at = 0.0


def signed_in_event(
    fn: Callable[Concatenate[S, SignedIn, P], AsyncIterator[Any] | Awaitable[Any]],
) -> Any:
    """A background event that runs only for a signed-in person: ``fn(self, signed, *args)`` after the session
    check, or the sign-in page (coming back to this address after) when nobody is signed in.

    ``fn`` may be an async generator (its events are passed on) or a coroutine (its result, when not None,
    is the one event). The event keeps ``fn``'s own parameters but ``signed``, so pages call it as before.
    """

    async def event(self: S, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[Any]:
        signed = await self.signed_in()
        if signed is None:
            yield await self._login_redirect()
            return
        async for item in passed_on(fn(self, signed, *args, **kwargs)):
            yield item

    functools.update_wrapper(event, fn)
    # Reflex reads an event's arguments from its signature and type hints: those of fn but its second (signed).
    self_param, signed_param, *params = inspect.signature(fn).parameters.values()
    event.__signature__ = inspect.signature(fn).replace(parameters=[self_param, *params])  # type: ignore[attr-defined]
    event.__annotations__ = {name: hint for name, hint in fn.__annotations__.items() if name != signed_param.name}
    return background(event)


@asynccontextmanager
async def as_user(principal: UserPrincipal) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in a transaction acting as the user (RLS and role checks apply)."""
    pool = await get_pool()
    async with pool.connection() as conn, scoped(conn, principal):
        yield conn
