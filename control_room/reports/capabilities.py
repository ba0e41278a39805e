"""The capability matrix versus Databricks (spec/capabilities.yaml), each row linked to its evidence.

Evidence is a test id (``tests/path.py::test_name``) or a file path. ``evidence_problems`` checks
that each one exists (file, and the test function or class in it), so the matrix cannot claim what
the code no longer shows; ``render_matrix`` is what ``lakehouse capabilities report`` prints.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from control_room.bundle.source import (
    InvalidInput,
    Problem,
    YamlDocument,
    load_yaml,
    published_file_config,
    validate_document,
)
from control_room.config import PROJECT_ROOT

CAPABILITIES_PATH = PROJECT_ROOT / "spec" / "capabilities.yaml"
CAPABILITIES_SCHEMA_PATH = PROJECT_ROOT / "spec" / "capabilities.schema.json"

Coverage = Literal["full", "partial", "planned", "none"]
_COVERAGE_LABEL = {"full": "✅ full", "partial": "🟡 partial", "planned": "🗓️ planned", "none": "❌ none"}


class Capability(BaseModel):
    """One row: a capability, what Databricks offers for it, and how far we cover it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    area: str = Field(min_length=2, max_length=60)
    capability: str = Field(min_length=3, max_length=200)
    databricks: str = Field(min_length=2, max_length=200, description="The Databricks feature compared with.")
    coverage: Coverage
    how: str = Field(default="", description="How we provide it (components, engines).")
    notes: str = ""
    evidence: list[str] = Field(default_factory=list, description="tests/...py::test_name or a file path.")


class CapabilityMatrix(BaseModel):
    """spec/capabilities.yaml."""

    model_config = published_file_config("Lakehouse Control Room capability matrix")

    capabilities: list[Capability] = Field(min_length=1)


def capabilities_json_schema() -> dict[str, Any]:
    """The published JSON Schema of spec/capabilities.yaml."""
    return CapabilityMatrix.model_json_schema(mode="validation")


def load_matrix(path: Path = CAPABILITIES_PATH) -> tuple[CapabilityMatrix, YamlDocument]:
    """Parse and validate the matrix (shape, unique ids, evidence required for full/partial)."""
    document = load_yaml(path)
    matrix = validate_document(document, CapabilityMatrix)
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, row in enumerate(matrix.capabilities):
        if row.id in seen:
            problems.append(document.problem(("capabilities", index, "id"), f'duplicate capability id "{row.id}"'))
        seen.add(row.id)
        if row.coverage in ("full", "partial") and not row.evidence:
            problems.append(
                document.problem(
                    ("capabilities", index, "evidence"), f"coverage {row.coverage} needs evidence (a test id)"
                )
            )
    if problems:
        raise InvalidInput(problems)
    return matrix, document


@cache
def _definitions(path: Path) -> frozenset[str]:
    """Names of the functions and classes (methods included) defined in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    )


def evidence_location(evidence: str, root: Path = PROJECT_ROOT) -> tuple[Path, int | None] | None:
    """The file and line an evidence string points at, or None when it does not exist."""
    file_part, _, test_part = evidence.partition("::")
    path = root / file_part
    if not path.is_file():
        return None
    if not test_part:
        return path, None
    names = [re.sub(r"\[.*\]$", "", part) for part in test_part.split("::")]
    if path.suffix != ".py" or any(name not in _definitions(path) for name in names):
        return None
    pattern = re.compile(rf"^\s*(async\s+def|def|class)\s+{re.escape(names[-1])}\b")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if pattern.match(line):
            return path, number
    return path, None


def evidence_problems(matrix: CapabilityMatrix, document: YamlDocument, root: Path = PROJECT_ROOT) -> list[Problem]:
    """Evidence that points at no file, or at a test that is not defined in it."""
    problems = []
    for index, row in enumerate(matrix.capabilities):
        for e, evidence in enumerate(row.evidence):
            if evidence_location(evidence, root) is None:
                problems.append(
                    document.problem(
                        ("capabilities", index, "evidence", e), f'"{evidence}" does not exist in the repository'
                    )
                )
    return problems


def _link(evidence: str, link_base: str, root: Path) -> str:
    found = evidence_location(evidence, root)
    label = evidence.split("::")[-1]
    if found is None:
        return f"`{label}` (missing)"
    path, line = found
    target = f"{link_base}{path.relative_to(root).as_posix()}" + (f"#L{line}" if line else "")
    return f"[`{label}`]({target})"


def render_matrix(matrix: CapabilityMatrix, *, link_base: str = "", root: Path = PROJECT_ROOT) -> str:
    """Markdown: coverage counts, then the matrix grouped by area with linked evidence."""
    counts: Counter[str] = Counter(row.coverage for row in matrix.capabilities)
    total = len(matrix.capabilities)
    lines = [
        "# Capability coverage versus Databricks",
        "",
        " · ".join(f"{_COVERAGE_LABEL[c]}: {counts[c]}" for c in ("full", "partial", "planned", "none"))
        + f" (of {total})",
        "",
        "| Area | Capability | Databricks | Coverage | How | Evidence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(matrix.capabilities, key=lambda r: r.area):
        evidence = "<br>".join(_link(e, link_base, root) for e in row.evidence) or "—"
        how = row.how + (f" ({row.notes})" if row.notes else "")
        lines.append(
            f"| {row.area} | {row.capability} | {row.databricks} | {_COVERAGE_LABEL[row.coverage]} "
            f"| {how.replace('|', '/')} | {evidence} |"
        )
    return "\n".join(lines) + "\n"
