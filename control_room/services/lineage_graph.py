"""The lineage graph of a project: datasets and OpenLineage jobs as nodes, with a layered layout computed
server-side (networkx) and cached per graph version.

A job that OpenLineage producers reported (``ops.lineage_jobs``) stands between its inputs and outputs;
the dataset-to-dataset edges it implies are then drawn through it rather than beside it. Engine reports
(dbt, Spark, Delta) have no job rows: their edges join datasets directly and carry the transformation's
name. Column lineage rides on the dataset edges (pairs of upstream and downstream columns) and is followed
across them, whichever way the edge is drawn.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import networkx as nx
from psycopg import AsyncConnection

from control_room.db.rows import dict_rows, scalar
from control_room.services.errors import NotFound

CACHE_SIZE = 16
MAX_HOPS = 10

VERSION = """
select (select count(*) || '@' || coalesce(max(updated_at)::text, '') from ops.datasets where project_id = %(p)s)
    || '|' || (select count(*) || '@' || coalesce(max(updated_at)::text, '') from ops.lineage_edges
               where project_id = %(p)s)
    || '|' || (select count(*) || '@' || coalesce(max(updated_at)::text, '') from ops.lineage_jobs
               where project_id = %(p)s)
"""
DATASETS = """
select d.id, d.namespace, d.name, d.kind, d.columns, d.updated_at,
       coalesce(r.status, (select j.last_event_type
                           from ops.lineage_job_datasets jd join ops.lineage_jobs j on j.id = jd.job_id
                           where jd.dataset_id = d.id and jd.direction = 'output'
                           order by j.last_event_time desc nulls last limit 1)) as outcome
from ops.datasets d left join ops.runs r on r.id = d.last_run_id
where d.project_id = %(p)s
"""
EDGES = """
select upstream_id, downstream_id, job_name, column_lineage from ops.lineage_edges where project_id = %(p)s
"""
JOBS = """
select j.id, j.namespace, j.name, j.last_event_type as outcome, coalesce(j.last_event_time, j.updated_at) as updated_at,
       coalesce(array_agg(jd.dataset_id) filter (where jd.direction = 'input'), '{}') as inputs,
       coalesce(array_agg(jd.dataset_id) filter (where jd.direction = 'output'), '{}') as outputs
from ops.lineage_jobs j left join ops.lineage_job_datasets jd on jd.job_id = j.id
where j.project_id = %(p)s
group by j.id
"""


@dataclass(frozen=True)
class Node:
    """A dataset or an OpenLineage job."""

    id: str
    kind: str  # "dataset" or "job"
    namespace: str
    name: str
    subtype: str  # the dataset's kind (model, seed, table...) or "job"
    updated_at: datetime | None
    outcome: str | None  # the last run's status (datasets) or the last event type (jobs)
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class ColumnEdge:
    """A dataset edge with the column pairs it carries (upstream column, downstream column)."""

    upstream: str
    downstream: str
    pairs: tuple[tuple[str, str], ...]


@dataclass
class LineageGraph:
    """Nodes, drawn edges (``graph``) and the dataset edges column lineage follows."""

    version: str
    nodes: dict[str, Node]
    graph: nx.DiGraph
    column_edges: list[ColumnEdge] = field(default_factory=list)
    # A dataset edge drawn through a job: (upstream, downstream) -> job id.
    via_job: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class View:
    """The drawn part of the graph with node positions (x: layer, y: place in the layer)."""

    nodes: list[Node]
    edges: list[tuple[str, str]]
    positions: dict[str, tuple[float, float]]


def _column_pairs(value: Iterable[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (str(pair["upstream_column"]), str(pair["downstream_column"]))
        for pair in value
        if pair.get("upstream_column") and pair.get("downstream_column")
    )


def build_graph(
    version: str, datasets: list[dict[str, Any]], edges: list[dict[str, Any]], jobs: list[dict[str, Any]]
) -> LineageGraph:
    """The graph from rows of the three queries above (pure, so the bench and tests can feed it)."""
    nodes: dict[str, Node] = {}
    graph = nx.DiGraph()
    for row in datasets:
        node = Node(
            id=str(row["id"]), kind="dataset", namespace=row["namespace"], name=row["name"], subtype=row["kind"],
            updated_at=row["updated_at"], outcome=row["outcome"],
            columns=tuple(str(c.get("name", "")) for c in row["columns"] or [] if c.get("name")),
        )  # fmt: skip
        nodes[node.id] = node
        graph.add_node(node.id)
    lineage = LineageGraph(version=version, nodes=nodes, graph=graph)
    job_pairs: dict[tuple[str, str], str] = {}
    for row in jobs:
        job = Node(
            id=str(row["id"]), kind="job", namespace=row["namespace"], name=row["name"], subtype="job",
            updated_at=row["updated_at"], outcome=row["outcome"],
        )  # fmt: skip
        nodes[job.id] = job
        graph.add_node(job.id)
        inputs = [str(i) for i in row["inputs"] if str(i) in nodes]
        outputs = [str(o) for o in row["outputs"] if str(o) in nodes]
        graph.add_edges_from((i, job.id) for i in inputs)
        graph.add_edges_from((job.id, o) for o in outputs)
        for i in inputs:
            for o in outputs:
                job_pairs.setdefault((i, o), job.id)
    for row in edges:
        up, down = str(row["upstream_id"]), str(row["downstream_id"])
        if up not in nodes or down not in nodes:
            continue
        lineage.column_edges.append(ColumnEdge(up, down, _column_pairs(row["column_lineage"] or [])))
        if (up, down) in job_pairs:
            lineage.via_job[(up, down)] = job_pairs[(up, down)]
        else:
            graph.add_edge(up, down)
    return lineage


def layered_layout(graph: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Each node one layer right of its deepest upstream (cycles collapse into one layer), ordered within
    its layer by the mean place of its upstream nodes (one barycentre sweep), centred on y = 0."""
    if graph.number_of_nodes() == 0:
        return {}
    condensed = nx.condensation(graph)
    members: dict[int, list[str]] = {c: sorted(condensed.nodes[c]["members"]) for c in condensed.nodes}
    place: dict[str, float] = {}
    positions: dict[str, tuple[float, float]] = {}
    for layer, components in enumerate(nx.topological_generations(condensed)):
        keyed: list[tuple[float, str]] = []
        for component in components:
            for node in members[component]:
                ups = [place[u] for u in graph.predecessors(node) if u in place]
                keyed.append((sum(ups) / len(ups) if ups else -1.0, node))
        keyed.sort()
        middle = (len(keyed) - 1) / 2
        for index, (_, node) in enumerate(keyed):
            place[node] = float(index)
            positions[node] = (float(layer), middle - index)
    return positions


class _Cache:
    """Graphs and layouts by (project, version, view), the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = _Cache(CACHE_SIZE)


async def _rows(conn: AsyncConnection, statement: str, project_id: uuid.UUID) -> list[dict[str, Any]]:
    return await dict_rows(conn, statement, {"p": project_id})


async def load_graph(conn: AsyncConnection, project_id: uuid.UUID) -> LineageGraph:
    """The project's lineage as the connection's user sees it, rebuilt only when its version moved."""
    version = str(await scalar(conn, VERSION, {"p": project_id}))
    key = ("graph", project_id, version)
    cached = CACHE.get(key)
    if isinstance(cached, LineageGraph):
        return cached
    graph = build_graph(
        version,
        await _rows(conn, DATASETS, project_id),
        await _rows(conn, EDGES, project_id),
        await _rows(conn, JOBS, project_id),
    )
    CACHE.put(key, graph)
    return graph


def neighbourhood(graph: nx.DiGraph, focus: str, hops: int, expanded: Iterable[str] = ()) -> set[str]:
    """Nodes within ``hops`` upstream and downstream of ``focus``, plus the direct neighbours of every
    expanded node (a node opened in place)."""
    keep = {focus}
    for step in (graph.predecessors, graph.successors):
        frontier = deque([(focus, 0)])
        while frontier:
            node, depth = frontier.popleft()
            if depth == hops:
                continue
            for other in step(node):
                if other not in keep:
                    keep.add(other)
                    frontier.append((other, depth + 1))
    for node in expanded:
        if node in graph:
            keep.add(node)
            keep.update(graph.predecessors(node))
            keep.update(graph.successors(node))
    return keep


def view(lineage: LineageGraph, *, focus: str | None = None, hops: int = 2, expanded: Iterable[str] = ()) -> View:
    """The whole graph (no focus) or the neighbourhood of one node, laid out; layouts are cached."""
    if focus is not None and focus not in lineage.nodes:
        raise NotFound(f"no dataset or job {focus} in this project's lineage")
    hops = max(0, min(hops, MAX_HOPS))
    opened = tuple(sorted(set(expanded)))
    key = ("view", lineage.version, id(lineage), focus, hops, opened)
    cached = CACHE.get(key)
    if isinstance(cached, View):
        return cached
    sub = lineage.graph if focus is None else lineage.graph.subgraph(neighbourhood(lineage.graph, focus, hops, opened))
    positions = layered_layout(sub)
    nodes = [lineage.nodes[n] for n in sorted(sub.nodes, key=lambda n: (positions[n][0], -positions[n][1]))]
    drawn = View(nodes=nodes, edges=list(sub.edges), positions=positions)
    CACHE.put(key, drawn)
    return drawn


def column_path(lineage: LineageGraph, dataset_id: str, column: str) -> tuple[set[tuple[str, str]], set[str]]:
    """Where a column comes from and goes to: the (dataset, column) pairs reached upstream and downstream
    along the edges' column lineage, as the drawn edges to highlight and the datasets on the path."""
    upstream_of: dict[tuple[str, str], list[tuple[str, str, ColumnEdge]]] = {}
    downstream_of: dict[tuple[str, str], list[tuple[str, str, ColumnEdge]]] = {}
    for edge in lineage.column_edges:
        for up_column, down_column in edge.pairs:
            upstream_of.setdefault((edge.downstream, down_column), []).append((edge.upstream, up_column, edge))
            downstream_of.setdefault((edge.upstream, up_column), []).append((edge.downstream, down_column, edge))
    drawn: set[tuple[str, str]] = set()
    datasets = {dataset_id}
    for links in (upstream_of, downstream_of):
        seen = {(dataset_id, column)}
        frontier = deque(seen)
        while frontier:
            for other, other_column, edge in links.get(frontier.popleft(), []):
                job = lineage.via_job.get((edge.upstream, edge.downstream))
                if job is None:
                    drawn.add((edge.upstream, edge.downstream))
                else:
                    drawn.update({(edge.upstream, job), (job, edge.downstream)})
                datasets.add(other)
                if (other, other_column) not in seen:
                    seen.add((other, other_column))
                    frontier.append((other, other_column))
    return drawn, datasets


def find_nodes(lineage: LineageGraph, text: str, limit: int = 20) -> list[Node]:
    """Nodes whose name holds ``text`` (case-insensitive), shortest names first."""
    needle = text.strip().lower()
    if not needle:
        return []
    found = [node for node in lineage.nodes.values() if needle in node.name.lower()]
    return sorted(found, key=lambda node: (len(node.name), node.name))[:limit]
