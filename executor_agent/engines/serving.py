"""The ``serving`` engine: a long-running service task that serves one MLflow model until it is cancelled.

It runs ``mlflow models serve -m MODEL_URI --env-manager local -p PORT -h HOST`` as a child process group
(with the task's memory rlimits), waits until the server answers ``/ping``, then reports the replica's
address to the control plane under the task's lease (the ``serving`` report), which the invocations proxy
routes to. The runner keeps the lease alive while the process lives. The task ends:

* ``cancelled`` when the endpoint stops or retires the replica (cancel through the heartbeat);
* ``failed`` when the server process dies or never becomes ready: the control plane retries the task
  (its restart policy), and starts a new run for a replica whose attempts are used up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskContext
from executor_agent.engines.shell import describe_exit
from executor_agent.engines.specs import typed_spec
from executor_agent.generated.contract import ServingTaskSpec

PING_EVERY_S = 0.5
# Listening on every interface is the operator's choice (spec.host); these spell it.
ALL_INTERFACES = ("0.0.0.0", "::")  # noqa: S104


def free_port(host: str) -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("" if host in ALL_INTERFACES else host, 0))
        return int(sock.getsockname()[1])


def mlflow_argv(spec: ServingTaskSpec, port: int) -> list[str]:
    """The server's command line: the ``mlflow`` next to this interpreter when there is one."""
    host = spec.host or "127.0.0.1"
    beside = Path(sys.executable).with_name("mlflow")
    command = [str(beside)] if beside.is_file() else [shutil.which("mlflow") or "mlflow"]
    return [
        *command, "models", "serve", "-m", spec.model_uri, "--env-manager", "local",
        "-p", str(port), "-h", host, "--workers", str(spec.workers or 1),
    ]  # fmt: skip


class _Readiness:
    """Watches the starting server: pings it, reports its address once it answers, or gives up."""

    def __init__(self, context: TaskContext, spec: ServingTaskSpec, port: int, pid_file: Path) -> None:
        self.context = context
        self.spec = spec
        self.port = port
        self.pid_file = pid_file
        self.address = f"{spec.advertise_host or self._default_host()}:{port}"
        self.ready = threading.Event()
        self.gave_up: str | None = None
        self.done = threading.Event()
        self.ready_timeout_s = 180

    def _default_host(self) -> str:
        host = self.spec.host or "127.0.0.1"
        return socket.gethostname() if host in ALL_INTERFACES else host

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_file.read_text().strip())
        return None

    def watch(self) -> None:
        self.ready_timeout_s = self.spec.ready_timeout_s or 180
        deadline = time.monotonic() + self.ready_timeout_s
        ping = f"http://{self.address}/ping"
        try:
            with httpx.Client(timeout=2.0) as client:
                while not self.done.is_set() and not self.context.cancel_requested:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(ping).status_code == 200:
                            self._report()
                            return
                    if time.monotonic() > deadline:
                        self._give_up(f"the model server did not answer /ping within {self.ready_timeout_s} s")
                        return
                    self.done.wait(PING_EVERY_S)
        except Exception as exc:  # the watcher must never leave a half-started server behind
            self._give_up(f"watching the model server failed: {type(exc).__name__}: {exc}")

    def _report(self) -> None:
        pid = self.pid()
        try:
            self.context.report("serving", {"address": self.address, "pid": pid})
        except Exception as exc:
            self._give_up(f"the control plane refused the replica's address: {exc}")
            return
        self.ready.set()
        self.context.emit(
            "serving.ready",
            f"serving {self.spec.model_uri} at {self.address}",
            data={"address": self.address, "pid": pid, "model_uri": self.spec.model_uri},
        )

    def _give_up(self, why: str) -> None:
        self.gave_up = why
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)


class ServingEngine(Engine):
    """Runs ``mlflow models serve`` for ``spec.model_uri`` until the task is cancelled."""

    name: ClassVar[str] = "serving"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("mlflow") is not None

    def run(self, context: TaskContext) -> EngineResult:
        spec = typed_spec(ServingTaskSpec, context.spec, key=context.task_key, engine=self.name)
        port = spec.port or free_port(spec.host or "127.0.0.1")
        pid_file = context.work_dir / "server.pid"
        # The shell writes its pid, then becomes the server: the pid is the group leader's.
        argv = ["/bin/sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *mlflow_argv(spec, port)]
        env = context.environment_for_child(dict(spec.env or {}))
        # mlflow starts `uvicorn` by name: the one installed beside this interpreter must be found first.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        if not env.get("MLFLOW_TRACKING_URI") and spec.model_uri.startswith("models:/"):
            raise EngineError(
                "spec.model_uri names a registered model, but this executor has no MLFLOW_TRACKING_URI to find it "
                "in; set it in the agent's environment (or spec.env)"
            )
        readiness = _Readiness(context, spec, port, pid_file)
        context.progress(f"starting the model server for {spec.model_uri} on port {port}", step="start", port=port)
        watcher = threading.Thread(target=readiness.watch, name=f"{context.task_key}-ready", daemon=True)
        watcher.start()
        try:
            outcome = context.run_process(argv, cwd=context.work_dir, env=env)
        finally:
            readiness.done.set()
            watcher.join(5.0)
        result: dict[str, Any] = {"address": readiness.address, "returncode": outcome.returncode}
        if outcome.killed_for == "cancelled" or outcome.killed_for == "timed_out":
            return EngineResult(outcome.killed_for, result)
        if outcome.killed_for is not None:
            return EngineResult.failed(f"the model server was stopped: {outcome.killed_for}", **result)
        if readiness.gave_up:
            return EngineResult.failed(readiness.gave_up, **result)
        when = "after it served" if readiness.ready.is_set() else "before it was ready"
        return EngineResult.failed(f"the model server {describe_exit(outcome)} {when}", **result)
