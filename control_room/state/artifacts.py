"""Artifact browser: a project's artifacts across runs (or one run's), previews, verify and download."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room import routes
from control_room.services import artifacts, ui_previews
from control_room.services.errors import Invalid
from control_room.services.pagination import Page
from control_room.state import formatting
from control_room.state.base import SessionState, SignedIn, download_script, signed_in_event
from control_room.state.events import background, handler, page_url
from control_room.state.paging import KeysetPages, filter_setter
from control_room.state.rows import ArtifactRow
from control_room.storage import VerifyResult

PAGE_SIZE = 50


def artifact_row(row: dict[str, Any]) -> ArtifactRow:
    """The table row of an artifact as the artifacts service returns it."""
    return ArtifactRow(
        id=str(row["id"]),
        name=row["name"],
        content_type=row["content_type"],
        kind=ui_previews.preview_kind(row["name"], row["content_type"]),
        size=formatting.size(row["size_bytes"]),
        sha256=row["sha256"],
        sha_short=row["sha256"][:12],
        created=formatting.timestamp(row["created_at"]),
        run_id=str(row["run_id"]),
        run_name=row.get("run_name") or formatting.short_id(row["run_id"]),
        run_href=routes.run_detail(str(row["run_id"]), tab="artifacts"),
        task_key=row["task_key"] or "",
        attempt=row["attempt"] or 0,
    )


def verify_message(result: VerifyResult) -> str:
    """What re-hashing the stored bytes found, in a sentence."""
    if result.ok:
        return f"Verified: the stored {result.actual_size:,} bytes hash to {result.actual_sha256}, as recorded."
    if result.actual_size is None:
        return f"Missing: nothing is stored for this artifact ({result.message})."
    if result.actual_size != result.expected_size:
        return f"Size differs: {result.actual_size:,} bytes are stored, {result.expected_size:,} were recorded."
    return (
        f"Checksum mismatch: the stored bytes hash to {result.actual_sha256}, "
        f"but {result.expected_sha256} was recorded at upload."
    )


class ArtifactsState(KeysetPages, SessionState):
    """The table, its filters and pages, and the preview panel of the selected artifact."""

    rows: rx.Field[list[ArtifactRow]] = rx.field(default_factory=list)
    text: rx.Field[str] = rx.field("")
    run_filter: rx.Field[str] = rx.field("")

    selected: rx.Field[ArtifactRow] = rx.field(default_factory=ArtifactRow)
    preview_open: rx.Field[bool] = rx.field(False)
    preview_kind: rx.Field[str] = rx.field("")
    preview_text: rx.Field[str] = rx.field("")
    preview_has_earlier: rx.Field[bool] = rx.field(False)
    preview_json_html: rx.Field[str] = rx.field("")
    preview_columns: rx.Field[list[str]] = rx.field(default_factory=list)
    preview_rows: rx.Field[list[list[str]]] = rx.field(default_factory=list)
    preview_page: rx.Field[int] = rx.field(0)
    preview_pages: rx.Field[int] = rx.field(1)
    preview_total_rows: rx.Field[int] = rx.field(0)
    preview_image: rx.Field[str] = rx.field("")
    preview_note: rx.Field[str] = rx.field("")
    preview_loading: rx.Field[bool] = rx.field(False)
    verify_state: rx.Field[str] = rx.field("")  # "", "checking", "ok", "mismatch"
    verify_message: rx.Field[str] = rx.field("")

    _text_start: int = 0

    @rx.var
    def preview_page_label(self) -> str:
        """``rows 51-100 of 1,234``."""
        if not self.preview_total_rows:
            return "no rows"
        first = self.preview_page * ui_previews.TABLE_PAGE_ROWS + 1
        last = min(first + ui_previews.TABLE_PAGE_ROWS - 1, self.preview_total_rows)
        return f"rows {first:,} to {last:,} of {self.preview_total_rows:,}"

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """Page load: take ``?run=`` and ``?artifact=`` from the URL, then list (and open the preview)."""
        async with self:
            self.run_filter = page_url(self).query_parameters.get("run", "")
            # The preview is open only when the URL asks for it: a reload, Back or a later visit never
            # reopens the one looked at before.
            self.preview_open = False
        async for event in self._open_first_page("artifact", ArtifactsState.open_preview):
            yield event

    async def _list(self) -> AsyncIterator[Any]:
        async with self:
            text, run_filter = self.text, self.run_filter

        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            try:
                run_id = uuid.UUID(run_filter) if run_filter else None
            except ValueError as exc:
                raise Invalid(f'"{run_filter}" is not a run id') from exc
            assert signed.project_id is not None  # _load_page reads only for a user with a project
            return await artifacts.list_project_artifacts(
                conn, project_id=signed.project_id, run_id=run_id, text=text or None, cursor=cursor, limit=PAGE_SIZE
            )

        def show(found: list[dict[str, Any]]) -> None:
            self.rows = [artifact_row(row) for row in found]

        async for event in self._load_page(read, show):
            yield event

    set_text = filter_setter("text", longest=200)  # by name

    @handler
    def clear_run_filter(self) -> Any:
        """Show artifacts of every run again."""
        self.run_filter = ""
        return [rx.redirect(routes.ARTIFACTS), self._first_page()]

    # Preview ------------------------------------------------------------------------------------

    @handler
    def set_preview_open(self, is_open: bool) -> Any:
        """Close (or open) the preview; closing one that the URL opened drops ``?artifact=`` from it."""
        self.preview_open = is_open
        if not is_open and page_url(self).query_parameters.get("artifact"):
            return rx.redirect(routes.artifacts(run_id=self.run_filter or None), replace=True)
        return None

    @signed_in_event
    async def open_preview(self, signed: SignedIn, artifact_id: str) -> None:
        """Open the preview of an artifact: text tail, JSON tree, first table page or image."""
        async with self:
            found = next((row for row in self.rows if row.id == artifact_id), None)
            if found is not None:
                self.selected = found
            self.preview_open = True
            self.preview_page = 0
            self.verify_state = self.verify_message = ""
        await self._preview(signed, artifact_id, page=0, text_end=None)

    @signed_in_event
    async def preview_page_to(self, signed: SignedIn, page: int) -> None:
        """Another page of a table preview."""
        async with self:
            artifact_id = self.selected.id
            page = max(0, min(int(page), self.preview_pages - 1))
        await self._preview(signed, artifact_id, page=page, text_end=None)

    @signed_in_event
    async def preview_earlier(self, signed: SignedIn) -> None:
        """The text before what is shown (logs open at their end)."""
        async with self:
            artifact_id, end = self.selected.id, self._text_start
        await self._preview(signed, artifact_id, page=0, text_end=end, prepend=True)

    async def _preview(
        self, signed: SignedIn, artifact_id: str, *, page: int, text_end: int | None, prepend: bool = False
    ) -> None:
        async with self:
            self.preview_loading = True
        reading = await self._read_as(
            signed,
            lambda conn, _: ui_previews.artifact_preview(
                conn, artifact_id=uuid.UUID(artifact_id), page=page, text_end=text_end
            ),
            needs_project=False,
        )
        preview = reading.value
        if preview is None:
            async with self:
                self.preview_loading = False
                self.preview_kind = "binary"
                self.preview_note = reading.error
            return
        async with self:
            self.selected = artifact_row(preview.artifact)
            self.preview_kind = preview.kind
            self.preview_note = preview.note
            self.preview_json_html = preview.json_html
            self.preview_image = preview.image_url
            if preview.text is not None:
                self.preview_text = preview.text.text + self.preview_text if prepend else preview.text.text
                self._text_start = preview.text.start
                self.preview_has_earlier = preview.text.has_earlier
            else:
                self.preview_text = ""
                self.preview_has_earlier = False
            if preview.table is not None:
                self.preview_columns = preview.table.columns
                self.preview_rows = preview.table.rows
                self.preview_page = preview.table.page
                self.preview_pages = preview.table.pages
                self.preview_total_rows = preview.table.total_rows
            else:
                self.preview_columns, self.preview_rows = [], []
                self.preview_page, self.preview_pages, self.preview_total_rows = 0, 1, 0
            self.preview_loading = False

    @signed_in_event
    async def verify(self, signed: SignedIn) -> None:
        """Re-read the stored bytes and compare size and SHA-256 with the recorded ones."""
        async with self:
            if self.verify_state == "checking" or not self.selected.id:
                return
            self.verify_state = "checking"
            self.verify_message = ""
            artifact_id = self.selected.id
        reading = await self._read_as(
            signed,
            lambda conn, _: ui_previews.verify_artifact(conn, artifact_id=uuid.UUID(artifact_id)),
            needs_project=False,
        )
        result = reading.value
        state = "ok" if result is not None and result.ok else "mismatch"
        message = verify_message(result) if result is not None else reading.error
        async with self:
            if self.selected.id == artifact_id:
                self.verify_state, self.verify_message = state, message

    @handler
    def download(self) -> Any:
        """Download through the HTTP API (bytes stream from the store)."""
        if not self.selected.id:
            return None
        filename = self.selected.name.rsplit("/", 1)[-1]
        return rx.call_script(download_script(f"/api/v1/artifacts/{self.selected.id}/content", filename))
