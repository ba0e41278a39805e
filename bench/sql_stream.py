"""A million-row SQL result through a real agent process, on DuckDB and on the Trino test server.

Prints, per engine: rows, seconds, rows/s, the Parquet artifact's size, the agent's idle and peak
resident memory (the kernel's VmHWM high-water mark, and the highest RSS sampled every 20 ms), and
how long the API takes to serve the preview and two further pages of the result. Each engine gets an
agent process of its own so the peak belongs to that engine's run alone. No assertions: figures only.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _harness import bench_env

from tests.engines.sql.agent_process import sql_agent
from tests.trino_server.process import trino_test_server

ROWS = 1_000_000
PAGE_ROWS = 500
# (label, engine, SQL): the plain DuckDB query measures streaming alone; with ORDER BY, DuckDB sorts
# inside the agent process (its sort buffers count); on Trino the sort happens on the server.
CASES = (
    ("duckdb", "duckdb", f"select range as id, range * 3 as tripled, 'row ' || range as label from range({ROWS})"),
    ("duckdb+sort", "duckdb",
     f"select range as id, range * 3 as tripled, 'row ' || range as label from range({ROWS}) order by id"),
    ("trino+sort", "trino", f"SELECT x AS id, x * 3 AS tripled, 'row ' || CAST(x AS varchar) AS label "
                            f"FROM UNNEST(sequence(1, {ROWS})) AS t(x) ORDER BY x"),
)  # fmt: skip


class RssSampler:
    """The highest resident set size of a process, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def timed_get(client: httpx.Client, path: str, **params: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000, response


def run_case(label: str, engine: str, sql: str, env: Any, trino_url: str, workdir: Path) -> dict[str, Any]:
    pool = f"bench-{label.replace('+', '-')}"
    operator = httpx.Client(
        base_url=env.server.base_url + "/api/v1",
        headers={"Authorization": f"Bearer {env.provision.user_token('operator')[1]}"},
        timeout=120,
    )
    with sql_agent(workdir / pool, url=env.server.base_url, token=env.provision.executor_token(pool),
                   trino_url=trino_url, engines=engine) as agent:  # fmt: skip
        # A warm-up task loads the engine's libraries, so "idle" is the agent ready to work.
        warm = {"key": "warm", "engine": engine, "pool": pool, "sql": "SELECT 1 AS one"}
        run = operator.post("/runs", json={"project": str(env.provision.tenant().project_id),
                                           "spec": {"name": "warm-up", "tasks": [warm]}}).json()  # fmt: skip
        wait(operator, run["id"])
        idle_rss = psutil.Process(agent.pid).memory_info().rss
        task = {"key": "stream", "engine": engine, "pool": pool, "sql": sql}
        with RssSampler(agent.pid) as sampler:
            started = time.perf_counter()
            run = operator.post("/runs", json={"project": str(env.provision.tenant().project_id),
                                               "spec": {"name": "sql-stream", "tasks": [task]}}).json()  # fmt: skip
            detail = wait(operator, run["id"])
            seconds = time.perf_counter() - started
        high_water = agent.peak_rss_bytes()
    if detail["status"] != "succeeded":
        raise SystemExit(f"{label}: the run ended {detail['status']}: {detail['tasks'][0]['error']}")
    artifacts = {a["name"]: a for a in operator.get(f"/runs/{run['id']}/artifacts").json()["items"]}
    parquet = artifacts["result.parquet"]
    preview_ms, preview = timed_get(operator, f"/artifacts/{artifacts['result.preview.json']['id']}/content")
    first_ms, first = timed_get(operator, f"/artifacts/{parquet['id']}/rows", offset=100, limit=PAGE_ROWS)
    second_ms, second = timed_get(
        operator, f"/artifacts/{parquet['id']}/rows", offset=first.json()["next_offset"], limit=PAGE_ROWS
    )
    (history,) = operator.get("/queries", params={"run_id": run["id"]}).json()["items"]
    return {
        "engine": label,
        "rows": parquet["metadata"]["rows"],
        "seconds": seconds,
        "parquet_mb": parquet["size_bytes"] / 2**20,
        "idle_mb": idle_rss / 2**20,
        "peak_mb": high_water / 2**20,
        "sampled_peak_mb": sampler.peak / 2**20,
        "preview_rows": len(json.loads(preview.content)["rows"]),
        "preview_ms": preview_ms,
        "page_ms": (first_ms, second_ms),
        "pages": (first.json()["rows"][0][0], second.json()["rows"][0][0]),
        "history": history,
    }


def wait(operator: httpx.Client, run_id: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = dict(operator.get(f"/runs/{run_id}").json())
        if detail["status"] in ("succeeded", "failed", "cancelled"):
            return detail
        time.sleep(0.2)  # polling the control plane: the agent is another process
    raise SystemExit(f"run {run_id} did not finish in {timeout_s} s")


def main() -> None:
    print(f"sql_stream: a {ROWS:,}-row result streamed to Parquet by an agent process (figures, no assertions)")
    workdir = Path(tempfile.mkdtemp(prefix="lh-bench-sql-"))
    with bench_env(lease_seconds="30") as env, trino_test_server(workdir / "trino") as trino:
        results = [run_case(*case, env, trino.url, workdir) for case in CASES]
    print(f"{'case':12} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'parquet':>9} {'idle RSS':>9} "
          f"{'peak RSS':>9} {'sampled':>9}")  # fmt: skip
    for r in results:
        print(
            f"{r['engine']:12} {r['rows']:>9,} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
            f"{r['parquet_mb']:>7.1f}MB {r['idle_mb']:>7.0f}MB {r['peak_mb']:>7.0f}MB {r['sampled_peak_mb']:>7.0f}MB"
        )
    for r in results:
        h = r["history"]
        print(
            f"{r['engine']}: API preview ({r['preview_rows']} rows) {r['preview_ms']:.0f} ms; pages of {PAGE_ROWS} "
            f"rows from offsets {r['pages'][0]:,} and {r['pages'][1]:,}: {r['page_ms'][0]:.0f} ms, "
            f"{r['page_ms'][1]:.0f} ms; history: state={h['state']} rows={h['rows']:,} elapsed={h['elapsed_ms']} ms "
            f"cpu={h['cpu_time_ms']} ms bytes_read={h['bytes_read']:,}"
        )
    verdict = "under" if max(r["peak_mb"] for r in results) < 300 else "OVER"
    print(f"agent peak RSS is {verdict} the 300 MB target")


if __name__ == "__main__":
    main()
