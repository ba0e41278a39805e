"""Catalog: the project's datasets with search (name, column, description, tag, owner) in keyset pages,
and one dataset's panel (schema, freshness, row count, quality, neighbours, runs, schema changes)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.services import catalog
from control_room.services.pagination import Page
from control_room.state.base import SessionState, SignedIn, signed_in_event
from control_room.state.events import background, setter
from control_room.state.paging import KeysetPages, filter_setter
from control_room.state.rows import CatalogRow, ColumnRow, LineRow

PAGE_SIZE = 50


def catalog_row(row: dict[str, Any]) -> CatalogRow:
    return CatalogRow(
        id=str(row["id"]), namespace=row["namespace"], name=row["name"], kind=row["kind"], owner=row["owner"] or "",
        columns=len(row["columns"] or []), description=(row["description"] or "")[:200],
    )  # fmt: skip


def _tone(status: str | None) -> str:
    return {"pass": "green", "success": "green", "COMPLETE": "green", "warn": "amber"}.get(status or "", "red")


def panel_lines(page: dict[str, Any]) -> dict[str, list[LineRow]]:
    """The dataset page's lists as display lines."""
    return {
        "quality": [LineRow(q["name"], f"{q['status']}" + (f" ({q['failures']} failing rows)" if q["failures"] else ""),
                            _tone(q["status"])) for q in page["quality"]],
        "upstream": [LineRow(n["name"], n["job_name"] or n["namespace"]) for n in page["upstream"]],
        "downstream": [LineRow(n["name"], n["job_name"] or n["namespace"]) for n in page["downstream"]],
        "runs": [LineRow(f"{r['access']} by {r['job_name']}", f"{r['event_type']} at {r['event_time']:%Y-%m-%d %H:%M}"
                         + (f" · run {r['run_id']}" if r["run_id"] else f" · {r['job_namespace']}"),
                         _tone(r["event_type"])) for r in page["runs"]],
        "schema_changes": [LineRow(f"{c['detected_at']:%Y-%m-%d %H:%M}", "; ".join(
            f"{x['column']} {x['change']}" + (f" ({x.get('old_type', '')} -> {x.get('new_type', '')})"
                                              if x["change"] == "retyped" else "") for x in c["changes"]))
            for c in page["schema_changes"]],
    }  # fmt: skip


class CatalogState(KeysetPages, SessionState):
    """The list (search, pages) and the selected dataset's panel."""

    rows: rx.Field[list[CatalogRow]] = rx.field(default_factory=list)
    text: rx.Field[str] = rx.field("")
    selected: rx.Field[CatalogRow] = rx.field(default_factory=CatalogRow)
    panel_open: rx.Field[bool] = rx.field(False)
    columns: rx.Field[list[ColumnRow]] = rx.field(default_factory=list)
    lines: rx.Field[dict[str, list[LineRow]]] = rx.field(default_factory=dict)
    facts: rx.Field[dict[str, str]] = rx.field(default_factory=dict)
    panel_error: rx.Field[str] = rx.field("")

    @background
    async def open_page(self) -> AsyncIterator[Any]:
        """First page; opens the dataset named by ``?dataset=``."""
        async for event in self._open_first_page("dataset", CatalogState.open_dataset):
            yield event

    async def _list(self) -> AsyncIterator[Any]:
        async with self:
            text = self.text

        async def read(conn: AsyncConnection, signed: SignedIn, cursor: str | None) -> Page:
            return await catalog.search_datasets(
                conn, project=str(signed.project_id), text=text or None, cursor=cursor, limit=PAGE_SIZE
            )

        def show(found: list[dict[str, Any]]) -> None:
            self.rows = [catalog_row(row) for row in found]

        async for event in self._load_page(read, show):
            yield event

    set_text = filter_setter("text", longest=200)  # by name, column, description, tag or owner
    set_panel_open = setter("panel_open")

    @signed_in_event
    async def open_dataset(self, signed: SignedIn, dataset_id: str) -> None:
        """Open a dataset's panel."""
        reading = await self._read_as(
            signed, lambda conn, _: catalog.dataset_page(conn, uuid.UUID(dataset_id)), needs_project=False
        )
        page = reading.value
        if page is None:
            async with self:
                self.panel_error, self.panel_open = reading.error, True
            return
        facts = {
            "Namespace": page["namespace"],
            "Kind": page["kind"],
            "Owner": page["owner"] or "—",
            "Last reported": (f"run {page['last_run_id']} · task {page['last_task_key']} ({page['last_run_status']})"
                              if page["last_run_id"] else "OpenLineage ingest"),
            "Last write": (f"{page['last_write']['event_time']:%Y-%m-%d %H:%M} by {page['last_write']['job_name']}"
                           if page["last_write"] else "—"),
            "Rows": "—" if page["row_count"] is None else f"{page['row_count']:,}",
            "Size": "—" if page["size_bytes"] is None else f"{page['size_bytes']:,} bytes",
            "Upstream / downstream": f"{page['upstream_count']} / {page['downstream_count']}",
            "Tags": ", ".join(page["metadata"].get("tags") or []) or "—",
        }  # fmt: skip
        async with self:
            self.selected = catalog_row(page)
            self.columns = [ColumnRow(str(c.get("name", "")), str(c.get("type") or ""), str(c.get("description") or ""))
                            for c in page["columns"]]  # fmt: skip
            self.lines = panel_lines(page)
            self.facts = facts
            self.panel_error = ""
            self.panel_open = True
