"""Jobs list: the project's job templates with last run, success rate, p50/p95, next fire, owner and tags;
search, filters (tag, owner, last status, archived) and keyset pages, refreshed live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room import routes
from control_room.services import jobs
from control_room.services.pagination import Page
from control_room.state import formatting
from control_room.state.base import ALL, SessionState, SignedIn
from control_room.state.events import background, handler
from control_room.state.paging import KeysetPages, filter_setter
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


class JobsState(KeysetPages, SessionState):
    """The Jobs table of the selected project."""

    rows: rx.Field[list[JobRow]] = rx.field(default_factory=list)
    text: rx.Field[str] = rx.field("")
    tag: rx.Field[str] = rx.field(ALL)
    owner: rx.Field[str] = rx.field(ALL)
    last_status: rx.Field[str] = rx.field(ALL)
    archived: rx.Field[bool] = rx.field(False)
    tag_options: rx.Field[list[str]] = rx.field(default_factory=list)
    owner_options: rx.Field[list[str]] = rx.field(default_factory=list)
    updated_at: rx.Field[str] = rx.field("")

    @rx.var
    def can_admin(self) -> bool:
        """Admins of the project create jobs."""
        return self.role == "admin"

    async def _list(self) -> AsyncIterator[Any]:
        """The current page and the filter choices."""
        async with self:
            text, tag, owner, last_status, archived = self.text, self.tag, self.owner, self.last_status, self.archived
        facets: dict[str, list[str]] = {"tags": [], "owners": []}

        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            assert signed.project_id is not None  # _load_page reads only for a user with a project
            query = jobs.TemplatesQuery(
                project_id=signed.project_id,
                text=text.strip() or None,
                tag=None if tag == ALL else tag,
                owner=None if owner == ALL else owner,
                last_status=None if last_status == ALL else last_status,
                archived=archived,
            )
            found = await jobs.templates_page(conn, query=query, cursor=cursor, limit=PAGE_SIZE)
            facets.update(await jobs.template_facets(conn, project_id=signed.project_id))
            return found

        def show(found: list[dict[str, Any]]) -> None:
            self.rows = [job_row(row) for row in found]
            self.tag_options, self.owner_options = facets["tags"], facets["owners"]
            self.updated_at = datetime.now(UTC).strftime("%H:%M:%S")

        async for event in self._load_page(read, show):
            yield event

    @background
    async def tick(self, _now: str = "") -> AsyncIterator[Any]:
        """Live refresh of the page on screen (last runs, figures and next fires move)."""
        async with self:
            busy = self.is_loading or not self.loaded
        if not busy:
            yield JobsState.load

    @handler
    def restart(self) -> Any:
        """Back to the first page (on opening, and after a project switch)."""
        return self._first_page()

    set_text = filter_setter("text", longest=200)  # name, description, owner and tags (the input is debounced)

    @handler
    def set_filter(self, name: str, value: str) -> Any:
        """Narrow by tag, owner or last run status."""
        if name in ("tag", "owner", "last_status"):
            setattr(self, name, value)
        return self._first_page()

    @handler
    def set_archived(self, value: bool) -> Any:
        """Show archived templates instead of active ones."""
        self.archived = bool(value)
        return self._first_page()
