"""Lineage: datasets and jobs of the project as a layered graph (upstream left), the whole project or N
hops around one node; search to focus, colour by freshness or outcome, click a node for its panel and
expand it in place, pick a column of the focused dataset to highlight where it comes from and goes to."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import page_heading
from control_room.components.layout import layout, section_column
from control_room.components.styles import ROW
from control_room.state.lineage import LineageState
from control_room.state.rows import LegendRow, NodeRow

# Dataclass vars, typed Any: mypy resolves Reflex's Field descriptor for them to ArrayVar.
FOCUS: Any = LineageState.focus
SELECTED: Any = LineageState.selected


def _match(node: NodeRow) -> rx.Component:
    item: rx.Component = rx.button(
        rx.text(node.name, size="2", weight="medium"),
        rx.badge(node.subtype, variant="surface", size="1"),
        on_click=LineageState.focus_on(node.id),
        variant="ghost", width="100%", justify="start", class_name="lineage-match",
    )  # fmt: skip
    return item


def _legend(row: LegendRow) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.box(width="10px", height="10px", border_radius="50%", background=row.color),
        rx.text(row.meaning, size="1", color_scheme="gray"),
        spacing="1", align="center",
    )  # fmt: skip
    return item


def _controls() -> rx.Component:
    controls: rx.Component = rx.hstack(
        rx.box(
            rx.input(placeholder="Search a dataset or job to focus on", value=LineageState.search,
                     on_change=LineageState.set_search.debounce(250), width="320px", id="lineage-search"),
            rx.cond(LineageState.matches.length() > 0,
                    rx.card(rx.vstack(rx.foreach(LineageState.matches, _match), spacing="1"),
                            position="absolute", z_index="10", width="320px", id="lineage-matches")),
            position="relative",
        ),
        rx.hstack(rx.text("Hops", size="2"),
                  rx.select(["1", "2", "3", "4", "5"], value=LineageState.hops.to_string(),
                            on_change=LineageState.set_hops, size="1", id="lineage-hops"),
                  **ROW),
        rx.hstack(rx.text("Colour by", size="2"),
                  rx.select(["freshness", "outcome"], value=LineageState.mode, on_change=LineageState.set_mode,
                            size="1", id="lineage-mode"),
                  **ROW),
        rx.cond(LineageState.columns.length() > 0,
                rx.hstack(rx.text("Column path", size="2"),
                          rx.select(LineageState.columns, value=LineageState.column, placeholder="(none)",
                                    on_change=LineageState.set_column, size="1", id="lineage-column"),
                          **ROW)),
        rx.spacer(),
        rx.cond(FOCUS.id != "", rx.button("Whole project", on_click=LineageState.whole_project, variant="soft",
                                          size="1", id="lineage-whole")),
        width="100%", align="center", spacing="4", wrap="wrap",
    )  # fmt: skip
    return controls


def _panel() -> rx.Component:
    panel: rx.Component = rx.cond(
        SELECTED.id != "",
        rx.card(
            rx.vstack(
                rx.hstack(rx.badge(SELECTED.kind, size="1"),
                          rx.heading(SELECTED.name, size="3", id="lineage-node-name"),
                          rx.spacer(),
                          rx.icon_button(rx.icon("x", size=14), on_click=LineageState.close_panel, variant="ghost",
                                         size="1", color_scheme="gray"),
                          width="100%", align="center"),
                rx.text(SELECTED.namespace, size="1", color_scheme="gray"),
                rx.text("Kind: ", SELECTED.subtype, " · last outcome: ", SELECTED.outcome, " · updated ",
                        SELECTED.updated, size="2"),
                rx.hstack(
                    rx.button("Focus here", on_click=LineageState.focus_on(SELECTED.id), size="1",
                              id="lineage-focus-here"),
                    rx.button("Expand in place", on_click=LineageState.expand, size="1", variant="soft",
                              id="lineage-expand"),
                    rx.cond(SELECTED.kind == "dataset",
                            rx.link(rx.button("Open in catalog", size="1", variant="outline"),
                                    href=routes.CATALOG + "?dataset=" + SELECTED.id)),
                    spacing="2",
                ),
                spacing="2", width="100%",
            ),
            width="100%", id="lineage-panel",
        ),
    )  # fmt: skip
    return panel


def _graph() -> rx.Component:
    # template=None: the figure brings its own; with Reflex's default template every render deep-merged a
    # copy of the whole figure (5,000 hover texts) and handed plotly a new object to draw again.
    graph: rx.Component = rx.plotly.basic(
        data=LineageState.figure, template=None, on_click=LineageState.pick,
        config={"displayModeBar": False, "responsive": True, "scrollZoom": True}, width="100%",
    )  # fmt: skip
    return graph


@layout(route=routes.LINEAGE, title="Lineage", on_load=LineageState.open_page)
def lineage_page() -> rx.Component:
    return section_column(
        page_heading(
            "Lineage",
            rx.text(LineageState.summary, size="2", color_scheme="gray", id="lineage-summary"),
            rx.spacer(),
            rx.hstack(rx.foreach(LineageState.legend_rows, _legend), spacing="3"),
            spacing="3",
        ),
        _controls(),
        error_callout(LineageState.error, "lineage-error", size="2"),
        rx.cond(LineageState.path_size > 0,
                rx.text("Column ", LineageState.column, " flows through ", LineageState.path_size, " datasets",
                        size="2", color_scheme="indigo", id="lineage-path")),
        _panel(),
        rx.card(
            rx.cond((LineageState.drawn_for != "") & (LineageState.drawn_for == LineageState.router.session.session_id),
                    _graph()),
            width="100%", id="lineage-graph", min_height="300px",
        ),
        rx.cond(LineageState.loaded & (LineageState.node_count == 0), rx.text(
            "No lineage yet: run a dbt build or send OpenLineage events to /api/v1/lineage.", color_scheme="gray",
            id="lineage-empty")),
    )  # fmt: skip
