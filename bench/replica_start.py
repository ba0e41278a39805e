"""Replica cold start: from spawning a control-room API process to its first healthy answer, and where it goes.

A replica is started as the replica test and the soak start it (``python -m uvicorn control_room.api:api``,
tests/live.py) on a migrated embedded Postgres, BENCH_REPLICA_STARTS times (default 5), one after the other.
Printed: each start's time to the listening socket and to ``GET /api/v1/health`` answering 200 (the soak's
target: healthy within 30 s after a restart), with the 1-minute load average when it began, and the median;
then one process's phases (imports, app construction, lifespan start, first health check: the DB pool's
warm-up, the loops' start once healthy) and the top 15 of ``python -X importtime`` by package (the sum of its
modules' own times) and by module. ``--imports-only`` skips the starts (no database needed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
from _harness import ROOT

from control_room.db.embedded import start_embedded
from control_room.db.migrate import migrate
from tests.live import free_port

STARTS = int(os.environ.get("BENCH_REPLICA_STARTS", "5"))
TIMEOUT_S = 180.0
TOP = 15

# One process's phases, timed inside it: what a replica does before it can answer its health check.
PHASES = """
import asyncio, json, time
t0 = time.perf_counter()
import control_room.api as api_module
t1 = time.perf_counter()
app = api_module.create_api()
t2 = time.perf_counter()
from control_room.services.health import check_database
try:
    from control_room.loops.start import mark_serving
except ImportError:  # a tree where the loops start with the process (before issue 25's cold-start work)
    mark_serving = None

async def main():
    async with api_module.lifespan(app):
        t3 = time.perf_counter()
        health = await check_database(timeout_seconds=30)
        t4 = time.perf_counter()
        assert health.ok, health
        if mark_serving is not None:
            mark_serving()
        while not any(t.get_name() == "lease-reaper" for t in asyncio.all_tasks()):
            await asyncio.sleep(0.001)
        t5 = time.perf_counter()
    return t3, t4, t5

t3, t4, t5 = asyncio.run(main())
print(json.dumps({"import control_room.api (with its app)": t1 - t0, "create_api() again": t2 - t1,
                  "lifespan start": t3 - t2, "first health check (DB pool warm-up)": t4 - t3,
                  "loops started (after the first healthy answer, if they wait for it)": t5 - t4}))
"""


def _load() -> float:
    return os.getloadavg()[0]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_once(env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to a listening socket, seconds to a healthy answer, load average at spawn) of one replica."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load = _load()
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "control_room.api:api", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--lifespan", "on"],
        env=env, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    listening: float | None = None
    try:
        while time.monotonic() - began < TIMEOUT_S:
            if proc.poll() is not None:
                raise RuntimeError(f"replica exited with {proc.returncode} before it was healthy")
            if listening is None and _listening(port):
                listening = time.monotonic() - began
            if listening is not None:
                try:
                    if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                        return listening, time.monotonic() - began, load
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)  # polling a starting process: there is nothing to await
        raise TimeoutError(f"replica not healthy after {TIMEOUT_S:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def import_times() -> list[tuple[str, int, int]]:
    """(module, own µs, cumulative µs) of every module ``import control_room.api`` loads."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import control_room.api"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows: list[tuple[str, int, int]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((name.strip(), int(own), int(cumulative)))
    return rows


def print_imports() -> None:
    rows = import_times()
    total = sum(own for _, own, _ in rows)
    by_package: dict[str, int] = defaultdict(int)
    modules: dict[str, int] = defaultdict(int)
    for name, own, _ in rows:
        by_package[name.split(".")[0]] += own
        modules[name] += own
    print(f"\nimport control_room.api: {len(rows)} modules, {total / 1e6:.2f} s of imports (load {_load():.1f})")
    print(f"  top {TOP} packages by the sum of their modules' own import time:")
    for package, own in sorted(by_package.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"    {own / 1e3:8.1f} ms  {package}")
    print(f"  top {TOP} modules by own import time:")
    for name, own in sorted(modules.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"    {own / 1e3:8.1f} ms  {name}")


def print_phases(env: dict[str, str]) -> None:
    import json

    done = subprocess.run(
        [sys.executable, "-c", PHASES], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\none replica's phases (load {_load():.1f}):")
    for phase, seconds in phases.items():
        print(f"    {seconds * 1e3:8.1f} ms  {phase}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imports-only", action="store_true", help="only the import-time top 15")
    args = parser.parse_args()
    if args.imports_only:
        print_imports()
        return
    root = Path(tempfile.mkdtemp(prefix="lh-bench-replica-"))
    pg = start_embedded(root / "pgdata")
    try:
        url = pg.ensure_database("bench")
        migrate(url)
        env = {**os.environ, "LAKEHOUSE_DATABASE_URL": url, "LAKEHOUSE_DATA_DIR": str(root / "data"),
               "LAKEHOUSE_ENV": "test", "PYTHONPATH": str(ROOT)}  # fmt: skip
        env.pop("MLFLOW_TRACKING_URI", None)
        print(f"replica cold start: {STARTS} starts of `uvicorn control_room.api:api`, one after the other")
        healthy: list[float] = []
        for n in range(STARTS):
            listening, ready, load = start_once(env)
            healthy.append(ready)
            print(f"  start {n + 1}: listening after {listening:6.2f} s, healthy after {ready:6.2f} s "
                  f"(load {load:.1f})")  # fmt: skip
        print(f"start to healthy: median {statistics.median(healthy):.2f} s, max {max(healthy):.2f} s "
              f"(load average now {' / '.join(f'{x:.1f}' for x in os.getloadavg())})")  # fmt: skip
        print_phases(env)
        print_imports()
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
