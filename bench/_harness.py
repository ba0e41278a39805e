"""Shared set-up for the benchmarks: a fresh embedded Postgres, migrated, and a real API server."""

from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
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


# A child process that echoes what it reads on one TCP connection (the port it listens on goes to stdout).
_ECHO_CHILD = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(4096):
    conn.sendall(data)
"""


def echo_round_trips(pace_s: float, count: int = 200) -> list[float]:
    """Round trips of 50 bytes to an echo in another process, one every ``pace_s`` seconds (0: back to back),
    in ms: what one hand-off between two processes costs on this machine when the other one sleeps between
    messages (every hop of a paced request pays it) and when it is still awake."""
    child = subprocess.Popen([sys.executable, "-c", _ECHO_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        with socket.create_connection(("127.0.0.1", int(child.stdout.readline()))) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            samples: list[float] = []
            next_at = time.perf_counter()
            for _ in range(count):
                next_at += pace_s
                time.sleep(max(0.0, next_at - time.perf_counter()))  # pacing, as the latency benches do
                sent = time.perf_counter()
                sock.sendall(b"x" * 50)
                sock.recv(4096)
                samples.append((time.perf_counter() - sent) * 1000)
            return samples
    finally:
        child.kill()
        child.wait()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ordered[-1]}


def fmt(stats: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:7.2f} ms" for k, v in stats.items())
