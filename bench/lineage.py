"""Lineage benchmarks (issue 21). Prints figures; targets in the issue.

* ``ingest``: OpenLineage ingest through HTTP: ``POST /api/v1/lineage`` with one event per request (as
  the OpenLineage clients send them), from 8 concurrent connections; each event is validated against the
  OpenLineage JSON Schema and stored (job, input and output datasets, edge with column lineage).
  Target: at least 500 events/s on 2 cores. The machine running it is often shared, so it also prints the
  load average and the CPU each event cost the API server, Postgres and the load generator, and the rate
  that 2 idle cores would sustain server side. ``--api-workers N`` serves the API with N uvicorn worker
  processes, as ``lakehouse api`` does with LAKEHOUSE_API_WORKERS.
* ``graph``: a synthetic project of 5,000 datasets and 10,000 edges (layers of a DAG, plus a 50-hop
  chain), stored in Postgres, read as a viewer through RLS exactly as the page does: the whole graph's
  server layout cold (cache emptied: queries, graph, layout, figure) and cached; a 2-hop focus view;
  expanding a node in place; a 10-hop view along the chain. Targets: < 3 s cold, < 1 s cached,
  < 500 ms focus, < 300 ms expand (server side; the browser adds drawing).
* ``browser``: the same project in the bench database (bench/seed_history.py's embedded Postgres), the
  real ``lakehouse run`` and Chromium: navigation to /lineage until the whole graph is drawn (plotly
  has drawn all 5,000 dataset markers), with the phases (HTML, scripts, the page's shell, the server's
  answer, drawn) and the figure's size on the websocket. Target < 2 s. Builds the frontend first (minutes):
  run it alone, under the e2e lock: ``flock /tmp/lh-e2e.lock .venv/bin/python bench/lineage.py browser``.

    .venv/bin/python bench/lineage.py [ingest|graph|browser ...] [--api-workers N] [--clients N] [--diagnose]
    # default: ingest graph
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import psycopg
from _harness import BenchEnv, bench_env, fmt, percentiles

from tests.live import LiveServer, free_port, wait_until_healthy

EVENTS = 3000
CONCURRENCY = 8
WARMUP = 200  # events of other jobs sent first: the server's first-use costs (pool, validators) stay out
JOBS = 300
NS = "postgres://warehouse.bench:5432"
FACET = {"_producer": "https://example.com/bench", "_schemaURL": "https://openlineage.io/spec/facets/x.json"}


def event(index: int, jobs: str = "job") -> dict[str, Any]:
    job = index // 2 % JOBS
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-{jobs}-run-{index // 2}"))
    return {
        "eventType": "START" if index % 2 == 0 else "COMPLETE",
        "eventTime": f"2026-12-03T10:{index // 120 % 60:02d}:{index // 2 % 60:02d}.{index % 2}Z",
        "producer": "https://example.com/bench",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id},
        "job": {"namespace": "bench", "name": f"{jobs}_{job}"},
        "inputs": [{"namespace": NS, "name": f"raw.{jobs}{job}"}],
        "outputs": [
            {
                "namespace": NS,
                "name": f"mart.{jobs}{job}",
                "facets": {
                    "schema": {**FACET, "fields": [{"name": "id", "type": "BIGINT"}, {"name": "v", "type": "TEXT"}]},
                    "columnLineage": {
                        **FACET,
                        "fields": {"v": {"inputFields": [{"namespace": NS, "name": f"raw.{jobs}{job}", "field": "v"}]}},
                    },
                },
            }
        ],
    }


async def ingest(base_url: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Post the pre-encoded bodies from ``clients`` concurrent keep-alive connections (aiohttp: its C
    parser costs this process, which shares the cores with the server, a fraction of httpx's CPU)."""
    samples: list[float] = []
    pending = iter(bodies)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector) as session:

        async def client() -> None:
            for body in pending:  # one shared iterator: each body is posted once
                started = time.perf_counter()
                async with session.post("/api/v1/lineage", data=body) as reply:
                    answer = await reply.read()
                samples.append((time.perf_counter() - started) * 1000)
                if reply.status != 201:
                    raise SystemExit(f"ingest failed: {reply.status} {answer.decode(errors='replace')}")

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - began, samples


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU time (user + system) of a process and of its children, live and exited."""
    total = 0.0
    for proc in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


class WaitSampler:
    """What the database's backends are doing, sampled every 20 ms from a connection of its own
    (``--diagnose``): active (on CPU) or waiting, and on which wait event (WAL flush, lock, client...)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.02):
                rows = conn.execute(
                    "select state, wait_event_type, wait_event from pg_stat_activity "
                    "where backend_type = 'client backend' and pid <> pg_backend_pid() and datname = current_database()"
                ).fetchall()
                self.samples += 1
                for state, kind, name in rows:
                    key = f"{state}: {kind}/{name}" if kind else f"{state}: on CPU"
                    self.counts[key] = self.counts.get(key, 0) + 1

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def lines(self) -> list[str]:
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])
        return [f"    {count / max(self.samples, 1):5.2f} backends {key}" for key, count in ranked[:8]]


class WorkersServer(LiveServer):
    """The API served by several uvicorn worker processes, as ``lakehouse api`` serves it
    (LAKEHOUSE_API_WORKERS)."""

    def __init__(self, base: LiveServer, workers: int) -> None:
        super().__init__(f"http://127.0.0.1:{free_port()}", base.database_url, base.data_dir, base.env)
        self.workers = workers

    def start(self) -> None:
        port = self.base_url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "uvicorn", "control_room.api:api", "--host", "127.0.0.1", "--port", port]
        command += ["--workers", str(self.workers), "--log-level", "warning", "--lifespan", "on"]
        self.proc = subprocess.Popen(command, env=self.env, start_new_session=True)
        wait_until_healthy(self.base_url, self.proc, timeout=180)


@contextlib.contextmanager
def api_server(env: BenchEnv, workers: int) -> Iterator[LiveServer]:
    """The bench's API server: the one bench_env started, or one with several worker processes."""
    if workers == 1:
        yield env.server
        return
    env.server.stop()
    server = WorkersServer(env.server, workers)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def bench_ingest(workers: int = 1, clients: int = CONCURRENCY, diagnose: bool = False) -> None:
    """Throughput and, since the machine is shared, what each event costs in CPU: the API server's
    process(es), Postgres (postmaster and backends) and this load generator. The capacity line divides
    2 cores by the server-side cost: the rate 2 idle cores would sustain with the clients elsewhere."""
    with bench_env() as env, api_server(env, workers) as api:
        tenant = env.provision.tenant()
        token = env.provision.user_token("operator", tenant)[1]
        assert api.proc is not None
        server = psutil.Process(api.proc.pid)
        with psycopg.connect(env.database_url) as conn:
            row = conn.execute("select pg_backend_pid()").fetchone()
            assert row is not None
            postgres = psutil.Process(int(row[0])).parent()  # while the backend lives: it exits on close
        assert postgres is not None
        warmup = [json.dumps(event(i, jobs="warmup")).encode() for i in range(WARMUP)]
        asyncio.run(ingest(api.base_url, token, warmup, clients))
        bodies = [json.dumps(event(i)).encode() for i in range(EVENTS)]
        load = os.getloadavg()[0]
        sampler = WaitSampler(env.database_url) if diagnose else contextlib.nullcontext()
        with sampler:
            before = (_cpu_seconds(server), _cpu_seconds(postgres), time.process_time())
            elapsed, samples = asyncio.run(ingest(api.base_url, token, bodies, clients))
            after = (_cpu_seconds(server), _cpu_seconds(postgres), time.process_time())
        api_ms, pg_ms, client_ms = ((b - a) * 1000 / EVENTS for a, b in zip(before, after, strict=True))
        print(
            f"openlineage ingest: {EVENTS} RunEvents over HTTP (after {WARMUP} of other jobs), {clients} concurrent "
            f"clients (producers), {workers} API worker process(es)"
        )
        print(f"  {fmt(percentiles(samples))}")
        print(
            f"  throughput {EVENTS / elapsed:,.0f} events/s (target >= 500/s on 2 cores); "
            f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)"
        )
        print(
            f"  CPU per event: API server {api_ms:.2f} ms, Postgres {pg_ms:.2f} ms, "
            f"this load generator {client_ms:.2f} ms"
        )
        print(f"  capacity of 2 idle cores, server side: {2000 / (api_ms + pg_ms):,.0f} events/s")
        if isinstance(sampler, WaitSampler):
            print(f"  Postgres backends, mean over {sampler.samples} samples (the sampler's own query excluded):")
            for line in sampler.lines():
                print(line)


# The synthetic graph -------------------------------------------------------------------------------

DATASETS = 5000
EDGES = 10000
CHAIN = 50  # hops: 51 datasets in one line
LAYERS = 12
GRAPH_NS = "duckdb:///bench/warehouse.duckdb"
COLUMNS = [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}, {"name": "label", "type": "TEXT"}]


def synthetic_project(seed: int = 21) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Datasets and edges: a 50-hop chain, the rest spread over layers, each edge from a lower layer to a
    higher one (a DAG, as dbt projects are), with column lineage on every edge."""
    rng = random.Random(seed)
    chain = [f"chain.step_{i:02d}" for i in range(CHAIN + 1)]
    others = [f"layer_{i % LAYERS:02d}.table_{i:05d}" for i in range(DATASETS - len(chain))]
    layer_of = {name: int(name[6:8]) for name in others}
    by_layer: dict[int, list[str]] = {}
    for name in others:
        by_layer.setdefault(layer_of[name], []).append(name)
    datasets = [
        {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-dataset-{name}")), "name": name} for name in chain + others
    ]
    pairs = {(chain[i], chain[i + 1]) for i in range(CHAIN)}
    pairs.add((chain[0], others[0]))
    while len(pairs) < EDGES:
        down = rng.choice(others)
        if layer_of[down] == 0:
            continue
        up = rng.choice(by_layer[rng.randrange(0, layer_of[down])])
        pairs.add((up, down))
    ids = {d["name"]: d["id"] for d in datasets}
    lineage = [
        {"upstream_column": "amount", "downstream_column": "amount"},
        {"upstream_column": "id", "downstream_column": "id"},
    ]
    edges = [{"upstream_id": ids[u], "downstream_id": ids[d], "column_lineage": lineage} for u, d in sorted(pairs)]
    return datasets, edges


def store_project(url: str, project_id: str) -> None:
    """Writes the synthetic project's datasets and edges (as the database owner: a bench fixture)."""
    datasets, edges = synthetic_project()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into ops.datasets (id, project_id, namespace, name, kind, columns, updated_at) "
            "select r.id, %s, %s, r.name, 'model', %s::jsonb, now() - (random() * interval '10 days') "
            "from jsonb_to_recordset(%s::jsonb) as r (id uuid, name text) on conflict (project_id, namespace, name) "
            "do nothing",
            (project_id, GRAPH_NS, json.dumps(COLUMNS), json.dumps(datasets)),
        )
        conn.execute(
            "insert into ops.lineage_edges (project_id, upstream_id, downstream_id, job_name, column_lineage) "
            "select %s, r.upstream_id, r.downstream_id, 'bench', r.column_lineage "
            "from jsonb_to_recordset(%s::jsonb) as r (upstream_id uuid, downstream_id uuid, column_lineage jsonb) "
            "on conflict (upstream_id, downstream_id) do nothing",
            (project_id, json.dumps(edges)),
        )


def _line(name: str, samples: list[float], target_ms: float) -> str:
    median = statistics.median(samples)
    verdict = "meets" if median < target_ms else "OVER"
    return (
        f"  {name:<44} median {median:8.1f} ms   max {max(samples):8.1f} ms   target < {target_ms:.0f} ms: "
        f"{verdict}   (n={len(samples)})"
    )


async def _graph_figures(url: str, project_id: uuid.UUID, user_id: uuid.UUID, email: str) -> list[str]:
    from control_room.components.lineage_figure import lineage_figure
    from control_room.services import lineage_graph
    from control_room.services.auth import UserPrincipal, scoped

    principal = UserPrincipal(user_id=user_id, email=email)
    datasets, _ = synthetic_project()
    chain_head = datasets[0]["id"]
    middle = [d["id"] for d in datasets if d["name"].startswith("layer_06.")]

    async def timed(draw: Callable[[lineage_graph.LineageGraph], Any]) -> float:
        started = time.perf_counter()
        async with await psycopg.AsyncConnection.connect(url) as conn, scoped(conn, principal):
            graph = await lineage_graph.load_graph(conn, project_id)
        draw(graph)
        return (time.perf_counter() - started) * 1000

    def whole(graph: lineage_graph.LineageGraph) -> None:
        lineage_figure(lineage_graph.view(graph)).to_plotly_json()

    cold, cached, focus, expand, chain = [], [], [], [], []
    for _ in range(5):
        lineage_graph.CACHE.clear()
        cold.append(await timed(whole))
        cached.append(await timed(whole))
    for node in middle[:10]:

        def focused(graph: lineage_graph.LineageGraph, node: str = node) -> None:
            lineage_figure(lineage_graph.view(graph, focus=node, hops=2), focus=node).to_plotly_json()

        focus.append(await timed(focused))

        def expanded(graph: lineage_graph.LineageGraph, node: str = node) -> None:
            shown = lineage_graph.view(graph, focus=node, hops=2)
            other = next(n.id for n in shown.nodes if n.id != node)
            drawn = lineage_graph.view(graph, focus=node, hops=2, expanded=[other])
            lineage_figure(drawn, focus=node).to_plotly_json()

        expand.append(await timed(expanded))

    def along_chain(graph: lineage_graph.LineageGraph) -> None:
        lineage_figure(lineage_graph.view(graph, focus=chain_head, hops=10), focus=chain_head).to_plotly_json()

    for _ in range(5):
        lineage_graph.CACHE.clear()
        chain.append(await timed(along_chain))
    graph_size = len(datasets)
    return [
        f"lineage graph: {graph_size:,} datasets, {EDGES:,} edges (a {CHAIN}-hop chain among them); "
        "server side, as a viewer through RLS, figure built",
        _line("whole graph, cold (cache emptied)", cold, 3000),
        _line("whole graph, cached", cached, 1000),
        _line("2-hop focus view (graph cached, layout not)", focus, 500),
        _line("expand a node in place", expand, 300),
        _line("10 hops along the chain, cold", chain, 3000),
    ]


def bench_graph() -> None:
    with bench_env() as env:
        tenant = env.provision.tenant()
        user_id, _ = env.provision.user_token("viewer", tenant)
        store_project(env.database_url, str(tenant.project_id))
        with psycopg.connect(env.database_url) as conn:
            row = conn.execute("select email from ops.users where id = %s", (user_id,)).fetchone()
        email = str(row[0]) if row else ""
        for line in asyncio.run(_graph_figures(env.database_url, tenant.project_id, user_id, email)):
            print(line)


# Phases of one page load, each marked (ms since navigation start) by a check on every frame from the
# first script on: the page's shell drawn, the server's figure arrived (the graph's container mounts, for
# this connection's figure only), all 5,000 markers drawn.
PHASES = {
    "shell": "!!document.querySelector('#lineage-summary')",
    "answer": "!!document.querySelector('#lineage-graph .js-plotly-plot')",
    "drawn": "(() => { const gd = document.querySelector('#lineage-graph .js-plotly-plot');"
    f" return !!gd && !!gd._fullData && gd._fullData.some(t => t.x && t.x.length >= {DATASETS}); }})()",
}
MARKS_JS = (
    "window.__marks = {}; const __phases = " + json.dumps(PHASES) + ";\n"
    "const __tick = () => { for (const [name, test] of Object.entries(__phases)) {"
    " try { if (!(name in window.__marks) && eval(test)) window.__marks[name] = performance.now(); } catch (e) {} }"
    " if (!('drawn' in window.__marks)) requestAnimationFrame(__tick); };\n"
    "requestAnimationFrame(__tick);"
)
READ_MARKS = (
    "() => { const n = performance.getEntriesByType('navigation')[0];"
    " return {...window.__marks, html: n.responseEnd, scripts: n.domContentLoadedEventEnd}; }"
)


def bench_browser(repeat: int = 5) -> None:
    """Whole-graph page in Chromium: navigation to the 5,000 dataset markers drawn, with its phases."""
    from playwright.sync_api import sync_playwright

    from bench.seed_history import BENCH_ADMIN, BENCH_PASSWORD, DEMO_PROJECT, database, prepare
    from bench.ui_pages import CHROMIUM_ARGS, _start_control_room, _stop_control_room

    url, server = database(os.environ.get("LAKEHOUSE_BENCH_DATABASE_URL"))
    try:
        prepare(url)
        store_project(url, DEMO_PROJECT)
        phases: dict[str, list[float]] = {}
        payload = 0
        with tempfile.TemporaryDirectory(prefix="lh-bench-lineage-") as tmp:
            process, base = _start_control_room(url, Path(tmp))
            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                    context = browser.new_context(viewport={"width": 1440, "height": 900})
                    page = context.new_page()
                    page.set_default_timeout(120_000)
                    page.goto(f"{base}/login")
                    page.fill("#login-email", BENCH_ADMIN)
                    page.fill("#login-password", BENCH_PASSWORD)
                    page.click("#login-submit")
                    page.wait_for_url(lambda u: "/login" not in u)
                    context.add_init_script(MARKS_JS)
                    received: list[int] = []
                    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(len(f))))
                    for index in range(repeat + 1):
                        page.goto("about:blank")
                        received.clear()
                        page.goto(f"{base}/lineage", wait_until="commit")
                        page.wait_for_function("() => 'drawn' in (window.__marks || {})")
                        marks = page.evaluate(READ_MARKS)
                        if index:  # the first load warms the server's graph cache and the browser's
                            for name, value in marks.items():
                                phases.setdefault(name, []).append(float(value))
                            payload = max(received, default=0)
                    page.screenshot(path=str(Path(tempfile.gettempdir()) / "lh-bench-lineage-whole.png"))
                    browser.close()
            finally:
                _stop_control_room(process)
        print(f"lineage page in Chromium: {DATASETS:,} datasets, {EDGES:,} edges, whole project, page load")
        print(_line("navigation to drawn (graph cached)", phases["drawn"], 2000))
        print("  phases (median ms since navigation start): " + ", ".join(
            f"{name} {statistics.median(phases[name]):.0f}" for name in ("html", "scripts", "shell", "answer", "drawn")
        ))  # fmt: skip
        print(f"  largest websocket frame (the figure): {payload / 1e6:.2f} MB")
    finally:
        stop = getattr(server, "stop", None)
        if callable(stop):
            stop()


BENCHES = ("ingest", "graph", "browser")
DEFAULT_BENCHES = ("ingest", "graph")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Checked below, not with choices=: Python 3.11's argparse checks what an empty nargs="*" positional
    # defaults to (a list) against the choices as one value and refuses it, and `make bench` passes nothing.
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHES)}; default: {' '.join(DEFAULT_BENCHES)}")
    parser.add_argument(
        "--api-workers", type=int, default=1, help="ingest: API worker processes (LAKEHOUSE_API_WORKERS); default 1"
    )
    parser.add_argument(
        "--clients", type=int, default=CONCURRENCY, help=f"ingest: concurrent producers; default {CONCURRENCY}"
    )
    parser.add_argument(
        "--diagnose", action="store_true", help="ingest: also sample what Postgres's backends wait on (costs CPU)"
    )
    args = parser.parse_args()
    if unknown := [name for name in args.which if name not in BENCHES]:
        parser.error(f"unknown bench {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    runs: dict[str, Callable[[], None]] = {
        "ingest": lambda: bench_ingest(args.api_workers, args.clients, args.diagnose),
        "graph": bench_graph,
        "browser": bench_browser,
    }
    for name in args.which or DEFAULT_BENCHES:
        runs[name]()


if __name__ == "__main__":
    main()
