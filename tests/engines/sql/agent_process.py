"""A real ``lakehouse-executor`` process running the SQL engines, for end-to-end tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class AgentProcess:
    """The agent's process and where its log goes."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss_bytes(self) -> int:
        """The kernel's high-water mark of the process's resident memory (VmHWM) so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM missing from /proc/<pid>/status")


@contextmanager
def sql_agent(
    directory: Path,
    *,
    url: str,
    token: str,
    trino_url: str | None = None,
    engines: str = "duckdb,trino",
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[AgentProcess]:
    """Run ``python -m executor_agent run`` with its own warehouse, lake, spool and work folders."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_EXECUTOR_")},
        "PYTHONPATH": str(PROJECT_ROOT),
        "LAKEHOUSE_EXECUTOR_URL": url,
        "LAKEHOUSE_EXECUTOR_TOKEN": token,
        "LAKEHOUSE_EXECUTOR_ENGINES": engines,
        "LAKEHOUSE_EXECUTOR_CONCURRENCY": "2",
        "LAKEHOUSE_EXECUTOR_CLAIM_WAIT_S": "2",
        "LAKEHOUSE_EXECUTOR_EXECUTOR_HEARTBEAT_S": "0.5",
        "LAKEHOUSE_EXECUTOR_GRACE_PERIOD_S": "5",
        "LAKEHOUSE_EXECUTOR_SPOOL_DIR": str(directory / "spool"),
        "LAKEHOUSE_EXECUTOR_WORK_DIR": str(directory / "work"),
        "LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE": str(directory / "warehouse.duckdb"),
        "LAKEHOUSE_EXECUTOR_DUCKDB_DATA_DIR": str(directory / "lake"),
        **({"LAKEHOUSE_EXECUTOR_TRINO_URL": trino_url} if trino_url else {}),
        "LAKEHOUSE_EXECUTOR_TRINO_CATALOG": "lakehouse",
        "LAKEHOUSE_EXECUTOR_TRINO_SCHEMA": "default",
        **(extra_env or {}),
    }
    log_path = directory / "agent.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "executor_agent", "run"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield AgentProcess(process, log_path)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
