"""The capability matrix: every claimed capability is backed by evidence that exists, and the report links it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control_room.bundle.source import InvalidInput
from control_room.cli import app
from control_room.config import PROJECT_ROOT
from control_room.reports.capabilities import evidence_problems, load_matrix, render_matrix


def test_every_evidence_in_the_matrix_exists() -> None:
    matrix, document = load_matrix()

    assert evidence_problems(matrix, document) == []
    assert {row.coverage for row in matrix.capabilities} == {"full", "partial", "planned", "none"}


def test_the_report_links_each_row_to_its_evidence() -> None:
    matrix, _ = load_matrix()

    text = render_matrix(matrix, link_base="https://example.invalid/blob/main/")

    row = next(line for line in text.splitlines() if "| Immutable versions of job definitions |" in line)
    link = re.search(r"\[`test_template_versions_are_immutable`\]\(([^)]+)\)", row)
    assert link, row
    target = link.group(1)
    assert target.startswith("https://example.invalid/blob/main/tests/bundle/test_deploy.py#L")
    line_number = int(target.rsplit("#L", 1)[1])
    source = (PROJECT_ROOT / "tests/bundle/test_deploy.py").read_text(encoding="utf-8").splitlines()
    assert source[line_number - 1].startswith("def test_template_versions_are_immutable(")


def test_missing_evidence_and_unbacked_claims_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "capabilities.yaml"
    path.write_text(
        "capabilities:\n"
        "  - id: one\n"
        "    area: Orchestration\n"
        "    capability: Something covered\n"
        "    databricks: Jobs\n"
        "    coverage: full\n"
        "    evidence:\n"
        "      - tests/bundle/test_deploy.py::test_that_was_renamed\n"
        "      - tests/no_such_file.py\n"
        "  - id: two\n"
        "    area: Orchestration\n"
        "    capability: Something claimed\n"
        "    databricks: Jobs\n"
        "    coverage: partial\n",
        encoding="utf-8",
    )

    with pytest.raises(InvalidInput) as caught:
        load_matrix(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:10: capabilities[1].evidence: coverage partial needs evidence (a test id)"
    ]

    path.write_text(
        path.read_text(encoding="utf-8").replace("coverage: partial", "coverage: planned"), encoding="utf-8"
    )
    matrix, document = load_matrix(path)
    assert [str(p) for p in evidence_problems(matrix, document)] == [
        f'{path}:8: capabilities[0].evidence[0]: "tests/bundle/test_deploy.py::test_that_was_renamed" does not exist '
        "in the repository",
        f'{path}:9: capabilities[0].evidence[1]: "tests/no_such_file.py" does not exist in the repository',
    ]
    checked = CliRunner().invoke(app, ["capabilities", "report", "--file", str(path), "--check"])
    assert checked.exit_code == 1
    assert "test_that_was_renamed" in checked.stderr


def test_cli_renders_the_matrix() -> None:
    result = CliRunner().invoke(app, ["capabilities", "report", "--check"])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# Capability coverage versus Databricks")
    assert "| CI/CD | Pull-request gate with contract, migration and configuration checks |" in result.stdout
