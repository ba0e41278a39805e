"""The canonical backlog: schema-valid, evidence that exists, and a report by epic and lane."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from control_room.bundle.source import InvalidInput
from control_room.cli import app
from control_room.reports.backlog import BACKLOG_PATH, BACKLOG_SCHEMA_PATH, load_backlog, render_report


def test_the_backlog_validates_against_its_published_schema() -> None:
    schema = json.loads(BACKLOG_SCHEMA_PATH.read_text(encoding="utf-8"))
    data = YAML(typ="safe").load(BACKLOG_PATH.read_text(encoding="utf-8"))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data)) == []

    backlog = load_backlog()

    assert len(backlog.epics) >= 5
    assert all(item.acceptance for epic in backlog.epics for item in epic.items)


def test_report_shows_progress_by_epic_and_lane(tmp_path: Path) -> None:
    path = tmp_path / "backlog.yaml"
    path.write_text(
        "epics:\n"
        "  - id: E1\n"
        "    title: Gate\n"
        "    items:\n"
        "      - {id: GIT-1, title: Validate bundles, lane: gitops, priority: P0, status: done,\n"
        "         acceptance: [typos are located],\n"
        "         evidence: [tests/bundle/test_loader.py::test_a_typo_names_file_line_and_field]}\n"
        "      - {id: GIT-2, title: Comment on PRs, lane: gitops, priority: P1, status: in_progress,\n"
        "         acceptance: ['one comment, updated'], issue: 9}\n"
        "  - id: E2\n"
        "    title: Screens\n"
        "    items:\n"
        "      - {id: UI-1, title: Runs page, lane: ui, priority: P0, status: todo, acceptance: [live events]}\n"
        "      - {id: UI-2, title: Caps page, lane: governance, priority: P2, status: blocked,\n"
        "         acceptance: [edits audited]}\n",
        encoding="utf-8",
    )

    report = render_report(load_backlog(path))

    assert "1 of 4 items done (██░░░░░░░░ 25%)." in report
    assert "| E1 Gate | 1 | 1 | 0 | 0 | 2 | █████░░░░░ 50% |" in report
    assert "| E2 Screens | 0 | 0 | 1 | 1 | 2 | ░░░░░░░░░░ 0% |" in report
    assert "| gitops | 1 | 1 | 0 | 0 | 2 | █████░░░░░ 50% |" in report
    assert "| ui | 0 | 0 | 0 | 1 | 1 | ░░░░░░░░░░ 0% |" in report
    assert "| GIT-2 Comment on PRs (#9) | P1 | gitops | in progress | one comment, updated |" in report
    assert "GIT-1 Validate" not in report.split("## Open items")[1], "done items are not listed as open"


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "backlog.yaml"
    path.write_text(
        "epics:\n"
        "  - id: E1\n"
        "    title: Gate\n"
        "    items:\n"
        "      - id: GIT-1\n"
        "        title: Validate bundles\n"
        "        lane: gitopz\n"
        "        priority: P0\n"
        "        status: todo\n"
        "        acceptance: [typos are located]\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as caught:
        load_backlog(path)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{path}:7: epics[0].items[0].lane: Input should be 'control-plane'")

    path.write_text(
        path.read_text(encoding="utf-8").replace("gitopz", "gitops").replace("status: todo", "status: done")
    )
    with pytest.raises(InvalidInput) as caught:
        load_backlog(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:5: epics[0].items[0].evidence: a done item needs evidence (a test id or file)"
    ]


def test_cli_validate_and_report(tmp_path: Path) -> None:
    runner = CliRunner()

    validated = runner.invoke(app, ["backlog", "validate", "--json-out", str(tmp_path / "backlog.json")])
    report = runner.invoke(app, ["backlog", "report"])

    assert validated.exit_code == 0, validated.stderr
    assert json.loads((tmp_path / "backlog.json").read_text())["status"] == "passed"
    assert report.exit_code == 0, report.stderr
    assert report.stdout.startswith("# Backlog progress")
    assert "## By lane" in report.stdout
