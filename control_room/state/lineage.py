"""Lineage graph: the whole project or N hops around one dataset or job, coloured by freshness or last
outcome; search to focus, click a node for its panel, expand it in place, highlight a column's path."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import reflex as rx

from control_room import routes
from control_room.components.lineage_figure import COLOR_MODES, DATASET_CURVE, JOB_CURVE, legend, lineage_figure
from control_room.services import lineage_graph
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.events import background, handler, page_url
from control_room.state.rows import LegendRow, NodeRow

DEFAULT_HOPS = 2


def node_row(node: lineage_graph.Node) -> NodeRow:
    return NodeRow(
        id=node.id, kind=node.kind, name=node.name, namespace=node.namespace, subtype=node.subtype,
        outcome=node.outcome or "no run yet",
        updated=f"{node.updated_at:%Y-%m-%d %H:%M} UTC" if node.updated_at else "never",
    )  # fmt: skip


class LineageState(SessionState):
    """What is drawn (focus, hops, expanded nodes, colour mode, column) and the figure."""

    figure: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    focus: rx.Field[NodeRow] = rx.field(default_factory=NodeRow)
    hops: rx.Field[int] = rx.field(DEFAULT_HOPS)
    mode: rx.Field[str] = rx.field("freshness")
    legend_rows: rx.Field[list[LegendRow]] = rx.field(default_factory=list)
    search: rx.Field[str] = rx.field("")
    matches: rx.Field[list[NodeRow]] = rx.field(default_factory=list)
    columns: rx.Field[list[str]] = rx.field(default_factory=list)
    column: rx.Field[str] = rx.field("")
    path_size: rx.Field[int] = rx.field(0)
    selected: rx.Field[NodeRow] = rx.field(default_factory=NodeRow)
    summary: rx.Field[str] = rx.field("")
    node_count: rx.Field[int] = rx.field(0)
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)
    # The websocket session the figure was drawn for. A page load hydrates the state of the tab's last
    # visit, figure included, before on_load draws the current one: the page shows the graph only once
    # the figure is this connection's, so a stale 5,000-node figure is never drawn first.
    drawn_for: rx.Field[str] = rx.field("")

    _focus_id: str | None = None
    _expanded: list[str] = []
    _curves: dict[int, list[str]] = {}

    @signed_in_event
    async def open_page(self, _signed: SignedIn) -> None:
        """Draws what the address asks for: ``?node=<id>&hops=N`` (else the whole project)."""
        async with self:
            query = page_url(self).query_parameters
            self._focus_id = query.get("node") or None
            self.hops = _hops(query.get("hops", ""))
            self._expanded = []
            self.column = ""
        await self._draw()

    async def _load(self) -> lineage_graph.LineageGraph | None:
        """The project's graph (the service caches it per version: a reload costs one small query)."""
        signed = await self.signed_in()
        if signed is None or signed.project_id is None:
            async with self:
                self.error = "You are not a member of any project yet: ask an admin for a role." if signed else ""
                self.loaded = True
            return None
        async with as_user(signed.principal) as conn:
            return await lineage_graph.load_graph(conn, signed.project_id)

    async def _draw(self) -> None:
        async with self:
            focus, hops, expanded, mode, column = (
                self._focus_id,
                self.hops,
                list(self._expanded),
                self.mode,
                self.column,
            )
        try:
            graph = await self._load()
            if graph is None:
                return
            drawn = lineage_graph.view(graph, focus=focus, hops=hops, expanded=expanded)
            highlight: set[tuple[str, str]] = set()
            on_path: set[str] = set()
            if focus and column:
                highlight, on_path = lineage_graph.column_path(graph, focus, column)
            figure = lineage_figure(drawn, mode=mode, focus=focus, highlight=highlight, on_path=on_path)
        except Exception as exc:
            async with self:
                self.error, self.loaded = problem_text(exc), True
            return
        async with self:
            self.figure = figure
            self.drawn_for = self.router.session.session_id
            self._curves = {
                DATASET_CURVE: [n.id for n in drawn.nodes if n.kind == "dataset"],
                JOB_CURVE: [n.id for n in drawn.nodes if n.kind == "job"],
            }
            focused = graph.nodes.get(focus) if focus else None
            self.focus = node_row(focused) if focused else NodeRow()
            self.columns = list(focused.columns) if focused else []
            self.path_size = len(on_path)
            self.node_count = len(drawn.nodes)
            self.legend_rows = [LegendRow(color, meaning) for color, meaning in legend(mode)]
            self.summary = f"{len(drawn.nodes):,} nodes · {len(drawn.edges):,} edges" + (
                f" · {hops} hops around {focused.name}" if focused else " · whole project"
            )
            self.error, self.loaded = "", True

    @signed_in_event
    async def redraw(self, _signed: SignedIn) -> None:
        await self._draw()

    @background
    async def set_search(self, value: str) -> None:
        """Nodes whose name holds the text, to focus on."""
        async with self:
            self.search = value[:200]
        graph = await self._load()
        found = lineage_graph.find_nodes(graph, value[:200]) if graph else []
        async with self:
            self.matches = [node_row(node) for node in found]

    @handler
    def focus_on(self, node_id: str) -> Any:
        """Draws the neighbourhood of one node (and puts it in the address, so the view can be shared)."""
        self._focus_id = node_id
        self._expanded = []
        self.column, self.search, self.matches = "", "", []
        return rx.redirect(f"{routes.LINEAGE}?node={node_id}&hops={self.hops}")

    @handler
    def whole_project(self) -> Any:
        return rx.redirect(routes.LINEAGE)

    @handler
    def set_hops(self, value: str) -> Any:
        self.hops = _hops(value)
        return LineageState.redraw

    @handler
    def set_mode(self, value: str) -> Any:
        self.mode = value if value in COLOR_MODES else "freshness"
        return LineageState.redraw

    @handler
    def set_column(self, value: str) -> Any:
        self.column = "" if value == "(none)" else value
        return LineageState.redraw

    @background
    async def pick(self, points: list[dict[str, Any]]) -> None:
        """A click on a node opens its panel."""
        async with self:
            curves = dict(self._curves)
        for point in points or []:
            ids = curves.get(int(point.get("curveNumber") or -1), [])
            index = point.get("pointIndex")
            if isinstance(index, int) and 0 <= index < len(ids):
                graph = await self._load()
                node = graph.nodes.get(ids[index]) if graph else None
                if node is not None:
                    async with self:
                        self.selected = node_row(node)
                return

    @handler
    def expand(self) -> Any:
        """Adds the selected node's direct neighbours to the view, in place."""
        if self.selected.id and self.selected.id not in self._expanded:
            self._expanded = [*self._expanded, self.selected.id]
            if self._focus_id is None:
                self._focus_id = self.selected.id
        return LineageState.redraw

    @handler
    def close_panel(self) -> None:
        self.selected = NodeRow()


def _hops(value: str) -> int:
    try:
        return max(1, min(int(value), lineage_graph.MAX_HOPS))
    except ValueError:
        return DEFAULT_HOPS
