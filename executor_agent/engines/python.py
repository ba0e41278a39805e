"""The ``python`` engine: a ``module:function`` called with params, or a script, in a child process.

The work runs in a child (``python_child.py``) so a cancel, a timeout or a lost lease can stop it like
any other process group, and a crash or a leak in task code never touches the agent. Spec fields:

* ``function``: ``"package.module:function"``; it gets the run's params and ``spec.params`` that its
  signature accepts, and its return value (JSON) becomes the task's result (a non-object is stored as
  ``{"value": ...}``);
* or ``script``: a path (relative to the agent's working folder) run as ``__main__`` with ``args``; the
  params are in ``LAKEHOUSE_PARAMS`` (JSON) and ``LAKEHOUSE_PARAM_<NAME>``;
* ``python``: the interpreter (default: the agent's), ``python_path``: folders put first on sys.path;
* ``env``, ``cwd``, ``artifacts``, ``max_memory_mb``, ``cpu_time_s``: as for the shell engine.

Task code reports progress and artifacts with ``executor_agent.task_output`` (or by printing the
``::lakehouse::`` lines it writes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

from executor_agent.engines import python_child
from executor_agent.engines.base import Engine, EngineError, EngineResult, TaskContext, cap_limit, report_cap_exceeded
from executor_agent.engines.shell import describe_exit, process_result, string_map, working_folder

CHILD_SCRIPT = Path(python_child.__file__).resolve()
_MAX_TRACEBACK_LINES = 200


def child_request(context: TaskContext, result_path: Path) -> dict[str, Any]:
    """What the child runs, from the spec; EngineError naming the field at fault."""
    spec = context.spec
    function, script = spec.get("function"), spec.get("script")
    if bool(function) == bool(script):
        raise EngineError("a python task needs exactly one of spec.function ('module:function') or spec.script")
    if function is not None and (not isinstance(function, str) or ":" not in function):
        raise EngineError(f"spec.function must look like 'package.module:function', got {function!r}")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise EngineError("spec.params must be an object")
    args = spec.get("args") or []
    if not isinstance(args, list):
        raise EngineError("spec.args must be a list")
    python_path = spec.get("python_path") or []
    if not isinstance(python_path, list) or not all(isinstance(p, str) for p in python_path):
        raise EngineError("spec.python_path must be a list of folders")
    request: dict[str, Any] = {
        "params": {**context.params, **params},
        "args": [str(a) for a in args],
        "python_path": [str(Path(p).resolve()) for p in python_path],
        "result_path": str(result_path),
    }
    if function:
        request["function"] = function
    else:
        script_path = Path(str(script)).resolve()
        if not script_path.is_file():
            raise EngineError(f"spec.script {script!r} does not exist (looked at {script_path})")
        request["script"] = str(script_path)
    return request


class PythonEngine(Engine):
    """Runs ``spec.function`` or ``spec.script`` in a child Python process."""

    name: ClassVar[str] = "python"

    def run(self, context: TaskContext) -> EngineResult:
        result_path = context.work_dir / ".lakehouse-python-result.json"
        request = child_request(context, result_path)
        request_path = context.work_dir / ".lakehouse-python-request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        interpreter = context.spec.get("python") or sys.executable
        if not isinstance(interpreter, str):
            raise EngineError("spec.python must be the path of a Python interpreter")
        target = request.get("function") or request.get("script")
        extra = {"LAKEHOUSE_PARAMS": json.dumps(request["params"]), "PYTHONUNBUFFERED": "1"}
        env = context.environment_for_child({**extra, **string_map(context.spec, "env")})
        context.progress(f"calling {target}", step="start")
        outcome = context.run_process(
            [interpreter, str(CHILD_SCRIPT), str(request_path)], cwd=working_folder(context), env=env
        )
        if outcome.killed_for is not None:
            return process_result(context, outcome, f"python {target}")
        if not result_path.is_file():
            return process_result(context, outcome, f"python {target} (no result written; {describe_exit(outcome)})")
        reply = json.loads(result_path.read_text(encoding="utf-8"))
        if not reply.get("ok"):
            for line in str(reply.get("traceback", "")).splitlines()[-_MAX_TRACEBACK_LINES:]:
                context.log(line, level="error", stream="traceback")
            context.progress("raised an exception", step="exit", returncode=outcome.returncode)
            process_result(context, outcome, f"python {target}")  # uploads declared artifacts all the same
            error = f"{target}: {reply.get('error')}"
            # The child caught its own MemoryError: the memory cap stopped it all the same.
            if (
                outcome.cap_exceeded is None
                and str(reply.get("error", "")).startswith("MemoryError")
                and cap_limit(context.limits, context.spec, "max_memory_mb")
            ):
                error += f" ({report_cap_exceeded(context, 'max_memory_mb')})"
            return EngineResult.failed(error)
        value = reply.get("value")
        context.progress("returned", step="exit", returncode=outcome.returncode)
        finished = process_result(context, outcome, f"python {target}")
        if finished.outcome != "succeeded":
            return finished
        result = value if isinstance(value, dict) else ({} if value is None else {"value": value})
        if finished.result.get("artifacts"):
            result = {**result, "artifacts": finished.result["artifacts"]}
        return EngineResult("succeeded", result)
