"""The ``shell`` engine: one command in its own process group, with memory and CPU-time limits.

Spec fields (beside key, engine, depends_on, ...):

* ``command``: a string run by ``/bin/sh -c`` (``shell`` picks another shell), or ``argv``: a list;
* ``env``: extra environment variables; ``cwd``: a folder relative to the attempt's work folder;
* ``artifacts``: glob patterns (relative to the work folder) uploaded when the command ends on its own;
* ``max_memory_mb`` / ``cpu_time_s``: rlimits (the claim's ``max_memory_mb`` limit applies as well).

Output lines become ``log`` events; a line ``::lakehouse::{"type": "progress", ...}`` becomes that event,
and ``::lakehouse::{"artifact": "path"}`` uploads a file.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from executor_agent.context import iter_artifact_patterns
from executor_agent.engines.base import (
    Engine,
    EngineError,
    EngineResult,
    ProcessOutcome,
    TaskContext,
    report_cap_exceeded,
)


def command_argv(spec: Mapping[str, Any]) -> list[str]:
    """The argv a shell task runs; EngineError naming the spec field when it is missing or malformed."""
    command, argv = spec.get("command"), spec.get("argv")
    if command is not None and argv is not None:
        raise EngineError("give either spec.command (a string) or spec.argv (a list), not both")
    if isinstance(command, str) and command.strip():
        shell = spec.get("shell", "/bin/sh")
        if not isinstance(shell, str) or not shell:
            raise EngineError(f"spec.shell must be the path of a shell, got {shell!r}")
        return [shell, "-c", command]
    if isinstance(argv, list) and argv and all(isinstance(part, str) for part in argv):
        return list(argv)
    raise EngineError("a shell task needs spec.command (a non-empty string) or spec.argv (a list of strings)")


def string_map(spec: Mapping[str, Any], name: str) -> dict[str, str]:
    value = spec.get(name) or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise EngineError(f"spec.{name} must be an object of string values")
    return dict(value)


def working_folder(context: TaskContext) -> Path:
    cwd = context.spec.get("cwd")
    if cwd is None:
        return context.work_dir
    if not isinstance(cwd, str) or cwd.startswith("/") or ".." in Path(cwd).parts:
        raise EngineError(f"spec.cwd must be a folder relative to the work folder, got {cwd!r}")
    folder = context.work_dir / cwd
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def upload_declared_artifacts(context: TaskContext) -> list[str]:
    """Upload the files matching ``spec.artifacts``; returns their names."""
    patterns = context.spec.get("artifacts") or []
    if not isinstance(patterns, list):
        raise EngineError("spec.artifacts must be a list of glob patterns")
    names = []
    for path in iter_artifact_patterns(context.work_dir, patterns):
        name = path.relative_to(context.work_dir.resolve()).as_posix()
        context.upload_artifact(path, name=name)
        names.append(name)
    return names


def describe_exit(outcome: ProcessOutcome) -> str:
    code = outcome.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the CPU-time limit)" if name == "SIGXCPU" else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def process_result(context: TaskContext, outcome: ProcessOutcome, what: str) -> EngineResult:
    """The EngineResult of a finished child: killed (cancel/timeout), failed, or succeeded with artifacts."""
    if outcome.killed_for == "cancelled" or outcome.killed_for == "timed_out":
        return EngineResult(outcome.killed_for, {"returncode": outcome.returncode})
    if outcome.killed_for is not None:
        return EngineResult.failed(f"{what} was stopped: {outcome.killed_for}", returncode=outcome.returncode)
    artifacts = upload_declared_artifacts(context)
    if not outcome.succeeded:
        memory_mb = context.spec.get("max_memory_mb") or context.limits.max_memory_mb
        hint = f" (its address space is limited to {memory_mb} MB)" if memory_mb else ""
        if outcome.cap_exceeded is not None:
            hint = f": {report_cap_exceeded(context, outcome.cap_exceeded)}"
        return EngineResult.failed(
            f"{what} {describe_exit(outcome)}{hint}", returncode=outcome.returncode, artifacts=artifacts
        )
    return EngineResult.ok(returncode=0, artifacts=artifacts)


class ShellEngine(Engine):
    """Runs ``spec.command`` / ``spec.argv`` as a child process group."""

    name: ClassVar[str] = "shell"

    def run(self, context: TaskContext) -> EngineResult:
        argv = command_argv(context.spec)
        env = context.environment_for_child(string_map(context.spec, "env"))
        cwd = working_folder(context)
        shown = context.spec["command"] if isinstance(context.spec.get("command"), str) else shlex.join(argv)
        context.progress(f"running: {shown[:500]}", step="start")
        outcome = context.run_process(argv, cwd=cwd, env=env)
        context.progress(describe_exit(outcome), step="exit", returncode=outcome.returncode)
        return process_result(context, outcome, "the command")
