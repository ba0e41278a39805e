"""`lakehouse ci summary`: one Markdown table of every PR-gate check, from the result files the jobs wrote.

Inputs, found recursively under a results folder: check results (``*.json`` written by
``--json-out`` of the validators) and JUnit XML test reports (``*.xml`` from ``pytest --junitxml``).
Jobs given as ``name=result`` (GitHub's ``needs.<job>.result``) add a row when a job failed, was
cancelled or wrote nothing, so a crashed job is never missing from the table.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from control_room.validators.results import CheckResult

MARKER = "<!-- lakehouse-ci-summary -->"
MAX_DETAILS = 8
_ICONS = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped"}
_JOB_STATUS = {"success": "passed", "failure": "failed", "cancelled": "failed", "skipped": "skipped"}


class SummaryInputError(ValueError):
    """A result file or --job value is unusable; the message names it."""


@dataclass(frozen=True)
class SummaryRow:
    """One line of the table, with the folder it was read from (to match it to its job)."""

    result: CheckResult
    source: Path | None = None


def junit_result(path: Path, name: str = "tests") -> CheckResult:
    """A JUnit XML report (pytest --junitxml) as a check result: counts, time and the failed tests."""
    try:
        # Our own CI's pytest output, not untrusted input.
        root = ET.parse(path).getroot()  # noqa: S314
    except (ET.ParseError, OSError) as exc:
        raise SummaryInputError(f"{path}: not a JUnit XML file: {exc}") from exc
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    if root.tag not in ("testsuite", "testsuites"):
        raise SummaryInputError(f"{path}: not a JUnit XML report (root element <{root.tag}>)")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    failed: list[str] = []
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0") or 0)
        seconds += float(suite.get("time", "0") or 0)
        for case in suite.iter("testcase"):
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is None:
                continue
            test_id = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            failed.append(f"{test_id}: {message[0][:200]}" if message else test_id)
    broken = totals["failures"] + totals["errors"]
    passed = totals["tests"] - broken - totals["skipped"]
    summary = (
        f"{totals['tests']} tests: {passed} passed, {totals['failures']} failed, {totals['errors']} errors, "
        f"{totals['skipped']} skipped in {seconds:.0f} s"
    )
    status = "failed" if broken or totals["tests"] == 0 else "passed"
    if totals["tests"] == 0:
        summary = "no tests ran"
    return CheckResult(name=name, status=status, summary=summary, details=failed, duration_s=round(seconds, 3))


def collect_results(folder: Path) -> list[SummaryRow]:
    """Every check result and JUnit report under ``folder``, in path order."""
    if not folder.exists():
        return []
    rows: list[SummaryRow] = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            try:
                rows.append(SummaryRow(CheckResult.model_validate_json(path.read_text(encoding="utf-8")), path.parent))
            except (ValidationError, ValueError) as exc:
                raise SummaryInputError(f"{path}: not a check result: {str(exc).splitlines()[0]}") from exc
        elif path.suffix == ".xml":
            rows.append(
                SummaryRow(junit_result(path, name=path.stem if path.stem != "junit" else "tests"), path.parent)
            )
    return rows


def parse_jobs(values: list[str]) -> dict[str, str]:
    """``["tests=failure", ...]`` -> ``{"tests": "failure"}`` (GitHub job results)."""
    jobs: dict[str, str] = {}
    for value in values:
        name, sep, result = value.partition("=")
        if not sep or not name or result not in _JOB_STATUS:
            raise SummaryInputError(
                f"--job {value!r}: expected NAME=RESULT with RESULT one of {', '.join(sorted(_JOB_STATUS))}"
            )
        jobs[name] = result
    return jobs


def _belongs_to(row: SummaryRow, job: str) -> bool:
    # upload-artifact names are check-<job>; download-artifact puts each in a folder of that name.
    return row.result.name == job or (row.source is not None and f"check-{job}" in row.source.parts)


def summary_rows(folder: Path, jobs: dict[str, str]) -> list[CheckResult]:
    """The table's rows: every result file, plus a row for each job that failed without saying why."""
    rows = collect_results(folder)
    results = [row.result for row in rows]
    for job, outcome in jobs.items():
        own = [row for row in rows if _belongs_to(row, job)]
        status = _JOB_STATUS[outcome]
        if not own:
            if status == "passed":
                detail = "the job succeeded but wrote no result file"
            else:
                detail = "no result file: see the job log"
            results.append(
                CheckResult(
                    name=job, status=status, summary=f"job {outcome}", details=[detail] if status != "skipped" else []
                )
            )
        elif status == "failed" and all(row.result.status != "failed" for row in own):
            results.append(
                CheckResult(
                    name=f"{job} (job)",
                    status="failed",
                    summary=f"job {outcome} after its checks passed",
                    details=["a later step failed: see the job log"],
                )
            )
    return results


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def render_markdown(results: list[CheckResult], *, run_url: str | None = None) -> str:
    """The PR comment: a hidden marker (to find and update it), a verdict line and the table."""
    failed = [r for r in results if r.status == "failed"]
    if not results:
        verdict = "⚠️ no check results were found"
    elif failed:
        verdict = f"❌ {len(failed)} of {len(results)} checks failed"
    else:
        verdict = f"✅ all {len(results)} checks passed" + (
            f" ({sum(r.status == 'skipped' for r in results)} skipped)"
            if any(r.status == "skipped" for r in results)
            else ""
        )
    lines = [MARKER, f"## PR gate: {verdict}", "", "| Check | Status | Details |", "| --- | --- | --- |"]
    for result in results:
        details = [f"**{_cell(result.summary)}**" if result.status == "failed" else _cell(result.summary)]
        shown = result.details[:MAX_DETAILS]
        details += [f"• `{_cell(line)}`" if len(line) < 160 else f"• {_cell(line)}" for line in shown]
        if len(result.details) > MAX_DETAILS:
            details.append(f"… and {len(result.details) - MAX_DETAILS} more")
        lines.append(f"| {_cell(result.name)} | {_ICONS[result.status]} | {'<br>'.join(details)} |")
    if run_url:
        lines += ["", f"[Workflow run]({run_url})"]
    return "\n".join(lines) + "\n"


def has_failures(results: list[CheckResult]) -> bool:
    """True when any check failed, or when there is no result at all."""
    return not results or any(r.status == "failed" for r in results)


def results_as_json(results: list[CheckResult]) -> str:
    """The rows as a JSON array (``--format json``)."""
    return json.dumps([r.model_dump(mode="json") for r in results], indent=2, ensure_ascii=False)
