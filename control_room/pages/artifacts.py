"""Artifact browser: across runs or for one run; preview text/logs, JSON, tables and images; verify; download."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.dialogs import panel_dialog
from control_room.components.forms import error_callout
from control_room.components.layout import layout, section_column
from control_room.components.notice import empty_state
from control_room.components.paging import newer_older_pager, pager_bar
from control_room.components.search import search_box
from control_room.components.stacked_text import name_over_detail
from control_room.components.styles import BANNER, ROW, TOOLBAR
from control_room.components.tables import data_table, result_table
from control_room.state.artifacts import ArtifactsState

# A dataclass var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
SELECTED: Any = ArtifactsState.selected
KIND_ICONS = {"text": "file-text", "json": "braces", "csv": "sheet", "parquet": "table", "image": "image",
              "binary": "file"}  # fmt: skip
# A verification's outcome: its icon and colour.
VERIFIED_LOOKS = {"ok": ("shield-check", "grass"), "mismatch": ("shield-alert", "red")}


def _kind_icon(kind: Any) -> rx.Component:
    icon: rx.Component = rx.match(
        kind,
        *((name, rx.icon(icon, size=16, color=rx.color("gray", 10))) for name, icon in KIND_ICONS.items()),
        rx.icon("file", size=16, color=rx.color("gray", 10)),
    )
    return icon


def _row(artifact: Any) -> rx.Component:
    row: rx.Component = rx.table.row(
        rx.table.cell(
            rx.hstack(
                _kind_icon(artifact.kind),
                name_over_detail(artifact.name, artifact.content_type),
                **ROW,
            )
        ),
        rx.table.cell(rx.link(artifact.run_name, href=artifact.run_href, size="2", on_click=rx.stop_propagation)),
        rx.table.cell(rx.text(artifact.task_key, size="2", class_name="mono")),
        rx.table.cell(rx.text(artifact.size, size="2", class_name="tabular"), text_align="right"),
        rx.table.cell(rx.code(artifact.sha_short, size="1", variant="ghost", title=artifact.sha256)),
        rx.table.cell(rx.text(artifact.created, size="2", class_name="tabular", white_space="nowrap")),
        class_name="clickable",
        on_click=ArtifactsState.open_preview(artifact.id),
        data_artifact=artifact.name,
    )
    return row


def _toolbar() -> rx.Component:
    bar: rx.Component = rx.hstack(
        search_box(ArtifactsState.text, ArtifactsState.set_text, "Filter by name…", "artifacts-search", "280px"),
        rx.cond(
            ArtifactsState.run_filter != "",
            rx.badge(
                "run ", rx.text(ArtifactsState.run_filter[:8], class_name="mono"),
                rx.icon_button(rx.icon("x", size=12), size="1", variant="ghost",
                    on_click=ArtifactsState.clear_run_filter),
                size="2", variant="soft", id="artifacts-run-filter",
            ),
            rx.text("All runs of the project, newest first", size="2", color_scheme="gray"),
        ),
        rx.spacer(),
        rx.cond(ArtifactsState.is_loading, rx.spinner(size="2")),
        **TOOLBAR,
    )  # fmt: skip
    return bar


def _table() -> rx.Component:
    heads = ("Artifact", "Run", "Task", "Size", "SHA-256", "Created (UTC)")
    return data_table(heads, rx.foreach(ArtifactsState.rows, _row), "artifacts-table", right=("Size",))


def _pager() -> rx.Component:
    return newer_older_pager(ArtifactsState, rx.text("Page ", ArtifactsState.page, size="2", color_scheme="gray"))


def _table_preview() -> rx.Component:
    page = ArtifactsState.preview_page
    box: rx.Component = rx.vstack(
        rx.scroll_area(
            result_table(ArtifactsState.preview_columns, ArtifactsState.preview_rows, variant="surface",
                         id="preview-table"),
            type="auto",
            scrollbars="both",
            style={"max_height": "460px"},
        ),
        pager_bar(
            rx.text(ArtifactsState.preview_page_label, size="1", color_scheme="gray", id="preview-rows"),
            ArtifactsState.preview_page_to(page - 1), ArtifactsState.preview_page_to(page + 1),
            back_disabled=page <= 0, forward_disabled=page >= ArtifactsState.preview_pages - 1, prefix="preview",
            size="1",
        ),
        width="100%",
        spacing="2",
    )  # fmt: skip
    return box


def _preview_body() -> rx.Component:
    body: rx.Component = rx.match(
        ArtifactsState.preview_kind,
        (
            "text",
            rx.vstack(
                rx.cond(ArtifactsState.preview_has_earlier,
                        rx.button(rx.icon("chevrons-up", size=12), "Load earlier", size="1", variant="ghost",
                                  on_click=ArtifactsState.preview_earlier)),
                rx.el.pre(ArtifactsState.preview_text, class_name="preview-text mono", id="preview-text"),
                width="100%",
                spacing="1",
            ),
        ),
        ("json", rx.html(ArtifactsState.preview_json_html, id="preview-json", width="100%")),
        ("csv", _table_preview()),
        ("parquet", _table_preview()),
        ("image", rx.image(src=ArtifactsState.preview_image, class_name="preview-image", id="preview-image")),
        rx.callout("No preview for this file type: download it to look inside.", icon="file", size="1"),
    )  # fmt: skip
    return body


def _verify_result() -> rx.Component:
    result: rx.Component = rx.match(
        ArtifactsState.verify_state,
        ("checking", rx.callout("Re-reading the stored bytes…", icon="loader", **BANNER)),
        *((state, rx.callout(ArtifactsState.verify_message, icon=icon, color_scheme=color, **BANNER, id="verify-result",
                             data_state=state))
          for state, (icon, color) in VERIFIED_LOOKS.items()),
        rx.fragment(),
    )  # fmt: skip
    return result


def _preview_dialog() -> rx.Component:
    header = (
        rx.vstack(
            rx.dialog.title(SELECTED.name, margin="0", id="preview-title"),
            rx.hstack(
                rx.text(SELECTED.content_type, size="1", color_scheme="gray"),
                rx.text("·", size="1", color_scheme="gray"),
                rx.text(SELECTED.size, size="1", color_scheme="gray"),
                rx.text("·", size="1", color_scheme="gray"),
                rx.text("task ", SELECTED.task_key, " attempt ", SELECTED.attempt, size="1",
                        color_scheme="gray"),
                spacing="2",
            ),
            rx.code("sha256:", SELECTED.sha256, size="1", variant="ghost", color_scheme="gray",
                    id="preview-sha"),
            spacing="1",
            min_width="0",
        ),
        rx.spacer(),
        rx.button(rx.icon("shield-check", size=14), "Verify", variant="soft", on_click=ArtifactsState.verify,
                  loading=ArtifactsState.verify_state == "checking", id="verify-artifact"),
        rx.button(rx.icon("download", size=14), "Download", variant="soft", color_scheme="gray",
                  on_click=ArtifactsState.download, id="download-artifact"),
    )
    return panel_dialog(
        header,
        rx.vstack(
            _verify_result(),
            rx.cond(ArtifactsState.preview_note != "", rx.callout(ArtifactsState.preview_note, icon="info", **BANNER)),
            rx.cond(ArtifactsState.preview_loading, rx.center(rx.spinner(size="3"), padding="32px", width="100%"),
                    _preview_body()),
            spacing="3",
            margin_top="16px",
            width="100%",
        ),
        is_open=ArtifactsState.preview_open,
        on_open_change=ArtifactsState.set_preview_open,
        max_width="960px",
        width="90vw",
        element_id="artifact-preview",
        align="start",
        spacing="2",
    )  # fmt: skip


@layout(route=routes.ARTIFACTS, title="Artifacts", on_load=ArtifactsState.open_page)
def artifacts_page() -> rx.Component:
    """The table of artifacts; clicking one opens its preview."""
    return section_column(
        _toolbar(),
        error_callout(ArtifactsState.error, width="100%"),
        rx.cond(
            ArtifactsState.loaded & (ArtifactsState.rows.length() == 0),
            empty_state("package-open", "No artifacts here yet."),
            _table(),
        ),
        _pager(),
        _preview_dialog(),
    )  # fmt: skip
