"""Jobs list: the project's job templates with last run, success rate, p50/p95, next fire, owner and tags;
search, filters (tag, owner, last status, archived) and keyset pages, refreshed live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx

from control_room import routes
from control_room.services import jobs
from control_room.state import formatting
from control_room.state.base import ALL, SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler
from control_room.state.rows import JobRow

PAGE_SIZE = 50
LAST_STATUSES = ("succeeded", "failed", "running", "queued", "cancelled", "never")


def job_row(row: dict[str, Any]) -> JobRow:
    """The list row of a template as ``jobs.templates_page`` returns it."""
    rate = row["success_rate"]
    return JobRow(
        id=str(row["id"]),
        name=row["name"],
        description=(row["description"] or "")[:140],
        owner=row["owner"] or "",
        tags=list(row["tags"]),
        version=f"v{row['latest_version']}" if row["latest_version"] else "no version",
        last_status=row["last_status"] or "",
        last_run=formatting.timestamp(row["last_run_at"]),
        success="" if rate is None else f"{100 * rate:.0f}%",
        runs=row["runs"] or 0,
        p50=formatting.duration(row["p50_s"]),
        p95=formatting.duration(row["p95_s"]),
        next_fire=formatting.timestamp(row["next_fire_at"]),
        href=routes.job_detail(str(row["id"])),
    )


class JobsState(SessionState):
    """The Jobs table of the selected project."""

    rows: rx.Field[list[JobRow]] = rx.field(default_factory=list)
    text: rx.Field[str] = rx.field("")
    tag: rx.Field[str] = rx.field(ALL)
    owner: rx.Field[str] = rx.field(ALL)
    last_status: rx.Field[str] = rx.field(ALL)
    archived: rx.Field[bool] = rx.field(False)
    tag_options: rx.Field[list[str]] = rx.field(default_factory=list)
    owner_options: rx.Field[list[str]] = rx.field(default_factory=list)
    page: rx.Field[int] = rx.field(1)
    has_next: rx.Field[bool] = rx.field(False)
    is_loading: rx.Field[bool] = rx.field(False)
    loaded: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    updated_at: rx.Field[str] = rx.field("")

    _cursors: list[str | None] = [None]
    _generation: int = 0

    @rx.var
    def can_admin(self) -> bool:
        """Admins of the project create jobs."""
        return self.role == "admin"

    def _query(self, signed: SignedIn) -> jobs.TemplatesQuery | None:
        if signed.project_id is None:
            return None
        return jobs.TemplatesQuery(
            project_id=signed.project_id,
            text=self.text.strip() or None,
            tag=None if self.tag == ALL else self.tag,
            owner=None if self.owner == ALL else self.owner,
            last_status=None if self.last_status == ALL else self.last_status,
            archived=self.archived,
        )

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        """Fetch the current page and the filter choices."""
        async with self:
            self._generation += 1
            generation = self._generation
            self.is_loading = True
            query = self._query(signed)
            cursor = self._cursors[self.page - 1] if self.page - 1 < len(self._cursors) else None
        rows: list[JobRow] = []
        facets: dict[str, list[str]] = {"tags": [], "owners": []}
        next_cursor: str | None = None
        error = ""
        if query is None:
            error = "You are not a member of any project yet: ask an admin for a role."
        else:
            try:
                async with as_user(signed.principal) as conn:
                    found, next_cursor = await jobs.templates_page(conn, query=query, cursor=cursor, limit=PAGE_SIZE)
                    facets = await jobs.template_facets(conn, project_id=query.project_id)
                rows = [job_row(row) for row in found]
            except Exception as exc:
                error = problem_text(exc)
        async with self:
            if generation != self._generation:
                return
            self.rows, self.error = rows, error
            self.tag_options, self.owner_options = facets["tags"], facets["owners"]
            self.has_next = next_cursor is not None
            del self._cursors[self.page :]
            self._cursors.append(next_cursor)
            self.is_loading = False
            self.loaded = True
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")

    @background
    async def tick(self, _now: str = "") -> AsyncIterator[Any]:
        """Live refresh of the page on screen (last runs, figures and next fires move)."""
        async with self:
            busy = self.is_loading or not self.loaded
        if not busy:
            yield JobsState.load

    def _restart(self) -> Any:
        self.page = 1
        self._cursors = [None]
        return JobsState.load

    @handler
    def restart(self) -> Any:
        """Back to the first page (on opening, and after a project switch)."""
        return self._restart()

    @handler
    def set_text(self, value: str) -> Any:
        """Search name, description, owner and tags (the input is debounced)."""
        self.text = value[:200]
        return self._restart()

    @handler
    def set_filter(self, name: str, value: str) -> Any:
        """Narrow by tag, owner or last run status."""
        if name in ("tag", "owner", "last_status"):
            setattr(self, name, value)
        return self._restart()

    @handler
    def set_archived(self, value: bool) -> Any:
        """Show archived templates instead of active ones."""
        self.archived = bool(value)
        return self._restart()

    @handler
    def turn_page(self, step: int) -> Any:
        """The next (step 1) or previous (step -1) page by name."""
        wanted = self.page + step
        if wanted < 1 or (step > 0 and not self.has_next):
            return None
        self.page = wanted
        return JobsState.load
