"""End-to-end fixtures: Debian's Chromium for Playwright, and the real `lakehouse run` as a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

from control_room.config import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Deadlines, not expectations: a first run on a fresh clone installs the frontend packages.
READY_DEADLINE_SECONDS = 300.0
STOP_DEADLINE_SECONDS = 60.0
LAKEHOUSE = Path(sys.executable).with_name("lakehouse")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is e2e, whether or not its module says so."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)


# pytest-playwright starts Playwright once per session. Its sync API marks an event loop as running in the main
# thread until it stops, so any later test calling ``asyncio.run`` would fail. Here it lives as long as this
# package's tests: a test worker that runs them can go on with other tests after them.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return cast(BrowserType, getattr(playwright, browser_name))


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    return lambda **options: browser_type.launch(**{**browser_type_launch_args, **options})


@pytest.fixture(scope="package")
def browser_context_args(playwright: Playwright, device: str | None, base_url: str | None) -> dict[str, Any]:
    """The pytest-playwright options these tests may pass: --device and --base-url (no video recording)."""
    return {**(playwright.devices[device] if device else {}), **({"base_url": base_url} if base_url else {})}


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Launch the system Chromium (Playwright cannot download browsers on these machines)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install it with `apt-get install -y chromium` (make test does, as root)")
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningControlRoom:
    """A `lakehouse run` subprocess and every process it started (recorded once it was healthy)."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path
    started: list[psutil.Process] = field(default_factory=list)

    def output(self) -> str:
        """What the supervisor and Reflex printed so far."""
        return self.log.read_text(errors="replace")

    def record_started_processes(self) -> None:
        """Remember the supervisor and all its descendants, to check later that none survives."""
        supervisor = psutil.Process(self.process.pid)
        self.started = [supervisor, *supervisor.children(recursive=True)]

    def stop(self, sig: signal.Signals = signal.SIGINT) -> list[psutil.Process]:
        """Send ``sig`` to the supervisor, wait for it to exit; returns started processes still alive."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`lakehouse run` did not exit {STOP_DEADLINE_SECONDS:.0f} s after {sig.name}")
        return alive(self.started)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run (zombies and reused PIDs do not count)."""
    survivors = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                survivors.append(proc)
        except psutil.NoSuchProcess:
            continue
    return survivors


def wait_until_healthy(running: RunningControlRoom) -> None:
    """Poll the health endpoint until 200, failing early if the supervisor exits."""
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    last = "no answer yet"
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if running.process.poll() is not None:
                pytest.fail(f"`lakehouse run` exited with {running.process.returncode}:\n{running.output()}")
            try:
                response = client.get(f"{running.url}/api/v1/health")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
    pytest.fail(f"not healthy after {READY_DEADLINE_SECONDS:.0f} s (last: {last}):\n{running.output()}")


StartControlRoom = Callable[..., RunningControlRoom]


@pytest.fixture
def start_control_room(tmp_path: Path) -> Iterator[StartControlRoom]:
    """Factory: start `lakehouse run` with the given LAKEHOUSE_* settings, return once healthy."""
    runs: list[RunningControlRoom] = []
    # Not under pytest's tmp dir: pytest re-restricts it to root, and embedded Postgres runs as another user.
    data_root = Path(tempfile.mkdtemp(prefix="lh-e2e-"))

    def start(**settings: str) -> RunningControlRoom:
        port = free_port()
        data_dir = data_root / f"run-{len(runs)}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE_")}
        env.update({"LAKEHOUSE_PORT": str(port), "LAKEHOUSE_DATA_DIR": str(data_dir), **settings})
        # The MLflow tracking server it starts gets a free port too (another control room may hold 5050).
        env.pop("MLFLOW_TRACKING_URI", None)
        env.setdefault("LAKEHOUSE_MLFLOW_PORT", str(free_port()))
        log = tmp_path / f"lakehouse-run-{len(runs)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(LAKEHOUSE), "run"], cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        running = RunningControlRoom(process=process, url=f"http://127.0.0.1:{port}", log=log, data_dir=data_dir)
        runs.append(running)
        wait_until_healthy(running)
        running.record_started_processes()
        return running

    yield start
    for running in runs:  # a failed test must not leave servers behind
        if running.process.poll() is None:
            running.stop(signal.SIGTERM)
        for proc in alive(running.started):
            proc.kill()
    shutil.rmtree(data_root, ignore_errors=True)
