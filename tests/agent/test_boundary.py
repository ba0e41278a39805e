"""The agent reaches the control plane only over HTTP: no module of executor_agent imports control_room."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import executor_agent

PACKAGE = Path(executor_agent.__file__).resolve().parent
FORBIDDEN = ("control_room",)


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            for arg in node.args[:1]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
    return names


def test_no_module_of_the_agent_imports_the_control_room() -> None:
    offenders = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        for name in imported_names(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert offenders == []


def test_every_agent_module_imports_with_the_control_room_made_unimportable() -> None:
    script = textwrap.dedent(
        """
        import importlib, importlib.abc, json, pkgutil, sys

        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "control_room":
                    raise ImportError("BLOCKED: executor_agent imported " + name)
                return None

        sys.meta_path.insert(0, Blocker())
        import executor_agent
        report = {"imported": [], "blocked": [], "other_errors": {}}
        for info in pkgutil.walk_packages(executor_agent.__path__, "executor_agent."):
            if info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
                report["imported"].append(info.name)
            except ImportError as exc:
                key = "blocked" if "BLOCKED" in str(exc) else "other_errors"
                if key == "blocked":
                    report["blocked"].append(f"{info.name}: {exc}")
                else:
                    report["other_errors"][info.name] = str(exc)
        report["control_room_loaded"] = any(m.split(".")[0] == "control_room" for m in sys.modules)
        print(json.dumps(report))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["blocked"] == []
    assert report["control_room_loaded"] is False
    for core in (
        "executor_agent.runner",
        "executor_agent.cli",
        "executor_agent.client",
        "executor_agent.context",
        "executor_agent.engines.shell",
        "executor_agent.engines.python",
    ):
        assert core in report["imported"], report
    # Optional engines may miss their libraries; that must never be because of the control room.
    assert all("control_room" not in error for error in report["other_errors"].values()), report["other_errors"]
