"""Runs one Python task inside the child process the ``python`` engine starts (standard library only).

Usage: ``python python_child.py request.json``. The request names either ``function`` ("module:func",
called with the params its signature accepts) or ``script`` (run as ``__main__`` with ``args``), and
``result_path``, where the outcome is written as JSON: ``{"ok": true, "value": ...}`` or
``{"ok": false, "error": "...", "traceback": "..."}``. It imports nothing from ``executor_agent`` so it
also runs under another interpreter (a task's own virtualenv).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is sys.path[0], and it holds modules named like libraries a task
# may import (duckdb.py, trino.py, spark.py): take it out before anything else is imported.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import runpy  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _write(result_path: Path, outcome: dict[str, Any]) -> None:
    temp = result_path.with_suffix(".partial")
    temp.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(temp, result_path)


def _resolve(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"function must look like 'package.module:function', got {target!r}")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    if not callable(value):
        raise TypeError(f"{target} is not callable")
    return value


def _accepted(function: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The params the function's signature takes (all of them when it has ``**kwargs``)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return params
    parameters = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return params
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in params.items() if k in names}


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Call the function or run the script; the outcome as written to the result file."""
    sys.path[:0] = [str(p) for p in request.get("python_path", [])]
    params = dict(request.get("params") or {})
    if request.get("function"):
        function = _resolve(str(request["function"]))
        value = function(**_accepted(function, params))
    else:
        script = str(request["script"])
        sys.argv = [script, *[str(a) for a in request.get("args", [])]]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                raise
        value = None
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the return value is not JSON-serializable ({exc}): {type(value).__name__}") from exc
    return {"ok": True, "value": value}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    result_path = Path(request["result_path"])
    try:
        outcome = run(request)
    except SystemExit as exit_:
        outcome = {"ok": False, "error": f"the script exited with status {exit_.code}", "traceback": ""}
    except BaseException as exc:
        outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    sys.stdout.flush()
    sys.stderr.flush()
    _write(result_path, outcome)
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
