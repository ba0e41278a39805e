"""Shared set-up for the benchmarks: a fresh embedded Postgres, migrated, and a real API server."""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from control_room.db.embedded import start_embedded  # noqa: E402
from control_room.db.migrate import migrate  # noqa: E402
from tests.live import LiveServer, Provisioner, live_server  # noqa: E402


@dataclass
class BenchEnv:
    database_url: str
    server: LiveServer
    provision: Provisioner


@contextmanager
def bench_env(**settings: str) -> Iterator[BenchEnv]:
    """Embedded Postgres in a temp dir + migrations + one uvicorn API server, all torn down after."""
    root = Path(tempfile.mkdtemp(prefix="lh-bench-"))
    pg = start_embedded(root / "pgdata")
    try:
        url = pg.ensure_database("bench")
        migrate(url)
        with live_server(url, root / "data", **settings) as server:
            yield BenchEnv(url, server, Provisioner(url))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ordered[-1]}


def fmt(stats: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:7.2f} ms" for k, v in stats.items())
