"""`lakehouse ci summary`: the PR comment table, built from check results that real checks wrote."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from control_room.api.contract import CONTRACT_PATH
from control_room.bundle import DEMO_BUNDLE_DIR
from control_room.cli import app
from control_room.reports.ci_summary import MARKER, junit_result
from tests.validators.conftest import GitRepo

SAMPLE_TESTS = """
def test_adds():
    assert 1 + 1 == 2

def test_breaks():
    assert {"status": "queued"} == {"status": "running"}, "status drifted"
"""


def run_real_checks(tmp_path: Path) -> Path:
    """Each PR-gate job's checks, run for real, writing where download-artifact would put them."""
    results = tmp_path / "results"
    runner = CliRunner()
    bundle = runner.invoke(
        app, ["bundle", "validate", str(DEMO_BUNDLE_DIR), "--json-out", str(results / "check-bundle" / "bundle.json")]
    )
    assert bundle.exit_code == 0, bundle.stderr
    schemas = runner.invoke(app, ["validate", "schemas", "--json-out", str(results / "check-bundle" / "schemas.json")])
    assert schemas.exit_code == 0, schemas.stderr

    repo = GitRepo(tmp_path / "repo")
    document = yaml.safe_load(CONTRACT_PATH.read_text(encoding="utf-8"))
    repo.write("api.yaml", yaml.safe_dump(document, sort_keys=False))
    repo.commit("base")
    changed = copy.deepcopy(document)
    del changed["paths"]["/api/v1/runs/{run_id}/cancel"]["post"]
    repo.write("api.yaml", yaml.safe_dump(changed, sort_keys=False))
    repo.commit("pull request")
    contract = runner.invoke(
        app,
        [
            "validate",
            "contract",
            "--file",
            str(repo.root / "api.yaml"),
            "--base",
            "HEAD~1",
            "--json-out",
            str(results / "check-contract" / "contract.json"),
        ],
    )
    assert contract.exit_code == 1

    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "test_sample.py").write_text(SAMPLE_TESTS, encoding="utf-8")
    (tmp_path / "sample" / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    junit = results / "check-tests" / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_sample.py"],
        cwd=tmp_path / "sample",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    return results


def test_summary_table_from_real_check_results(tmp_path: Path) -> None:
    results = run_real_checks(tmp_path)
    jobs = [
        "--job",
        "contract=failure",
        "--job",
        "migrations=cancelled",
        "--job",
        "bundle=success",
        "--job",
        "tests=failure",
    ]

    written = CliRunner().invoke(
        app,
        [
            "ci",
            "summary",
            str(results),
            *jobs,
            "--run-url",
            "https://ci.invalid/run/1",
            "--out",
            str(tmp_path / "summary.md"),
        ],
    )
    assert written.exit_code == 0, written.stderr
    lines = (tmp_path / "summary.md").read_text(encoding="utf-8").splitlines()

    assert lines[:5] == [
        MARKER,
        "## PR gate: ❌ 3 of 5 checks failed",
        "",
        "| Check | Status | Details |",
        "| --- | --- | --- |",
    ]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[5:] if line.startswith("| ")}
    assert list(rows) == ["bundle", "schemas", "contract", "tests", "migrations"]
    assert rows["bundle"].startswith(f"| bundle | ✅ passed | {DEMO_BUNDLE_DIR} is valid (org demo: 5 routing_rules,")
    assert rows["contract"] == (
        "| contract | ❌ failed | **api.yaml: 1 breaking change(s) against HEAD~1**<br>"
        "• `POST /api/v1/runs/{run_id}/cancel (cancelRun): operation removed` |"
    )
    assert rows["tests"].startswith("| tests | ❌ failed | **2 tests: 1 passed, 1 failed, 0 errors, 0 skipped in ")
    assert "• `test_sample::test_breaks: AssertionError: status drifted" in rows["tests"]
    assert rows["migrations"] == "| migrations | ❌ failed | **job cancelled**<br>• `no result file: see the job log` |"
    assert lines[-1] == "[Workflow run](https://ci.invalid/run/1)"

    checked = CliRunner().invoke(app, ["ci", "summary", str(results), *jobs, "--check"])
    assert checked.exit_code == 1
    assert "failed: contract, tests, migrations" in checked.stderr


def test_all_passing_and_a_silent_job(tmp_path: Path) -> None:
    results = tmp_path / "results"
    bundle = CliRunner().invoke(
        app, ["bundle", "validate", str(DEMO_BUNDLE_DIR), "--json-out", str(results / "check-bundle" / "bundle.json")]
    )
    assert bundle.exit_code == 0

    passing = CliRunner().invoke(app, ["ci", "summary", str(results), "--job", "bundle=success", "--check"])
    assert passing.exit_code == 0, passing.stderr
    assert "## PR gate: ✅ all 1 checks passed" in passing.stdout

    silent = CliRunner().invoke(app, ["ci", "summary", str(results), "--job", "tests=success", "--check"])
    assert silent.exit_code == 0
    assert "| tests | ✅ passed | job success<br>• `the job succeeded but wrote no result file` |" in silent.stdout

    nothing = CliRunner().invoke(app, ["ci", "summary", str(tmp_path / "empty"), "--check"])
    assert nothing.exit_code == 1
    assert "⚠️ no check results were found" in nothing.stdout

    bad_job = CliRunner().invoke(app, ["ci", "summary", str(results), "--job", "tests"])
    assert bad_job.exit_code == 1 and "expected NAME=RESULT" in bad_job.stderr


def test_junit_errors_and_garbage_are_reported(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2" failures="0" errors="1" skipped="0" '
        'time="1.5"><testcase classname="tests.a" name="test_x" time="1"/><testcase classname="tests.a" '
        'name="test_y" time="0.5"><error message="fixture boom">trace</error></testcase></testsuite></testsuites>',
        encoding="utf-8",
    )
    result = junit_result(report)
    assert (result.status, result.summary) == ("failed", "2 tests: 1 passed, 0 failed, 1 errors, 0 skipped in 2 s")
    assert result.details == ["tests.a::test_y: fixture boom"]

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "oops.json").write_text('{"name": "x"}', encoding="utf-8")
    broken = CliRunner().invoke(app, ["ci", "summary", str(tmp_path / "results")])
    assert broken.exit_code == 1 and "oops.json: not a check result" in broken.stderr
