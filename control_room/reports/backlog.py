"""The canonical backlog (spec/backlog.yaml): epics -> items, validated by schema, reported by epic and lane.

The format is the ``Backlog`` model below, published as spec/backlog.schema.json. ``load_backlog``
gives located errors (``file:line: field.path: message``); ``render_report`` is what
``lakehouse backlog report`` prints: progress by epic, by lane, and every open item.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from control_room.bundle.source import InvalidInput, Problem, load_yaml, published_file_config, validate_document
from control_room.config import PROJECT_ROOT
from control_room.reports.capabilities import evidence_location

BACKLOG_PATH = PROJECT_ROOT / "spec" / "backlog.yaml"
BACKLOG_SCHEMA_PATH = PROJECT_ROOT / "spec" / "backlog.schema.json"

Lane = Literal[
    "control-plane", "executor", "engines", "ui", "gitops", "governance", "catalog", "ml", "analytics", "operations"
]
LANES: tuple[str, ...] = Lane.__args__  # type: ignore[attr-defined]
Priority = Literal["P0", "P1", "P2", "P3"]
ItemStatus = Literal["todo", "in_progress", "blocked", "done"]
STATUSES: tuple[str, ...] = ItemStatus.__args__  # type: ignore[attr-defined]


class BacklogModel(BaseModel):
    """Closed and strict: an unknown field is an error."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BacklogItem(BacklogModel):
    """One deliverable with its acceptance criteria."""

    id: str = Field(pattern=r"^[A-Z]{2,6}-[0-9]{1,4}$", description="Unique, e.g. GIT-3.")
    title: str = Field(min_length=3, max_length=200)
    lane: Lane
    priority: Priority
    status: ItemStatus
    acceptance: list[str] = Field(min_length=1, description="What must hold for the item to be done.")
    issue: int | None = Field(default=None, ge=1, description="The tracking issue, when there is one.")
    evidence: list[str] = Field(default_factory=list, description="Test ids or files showing it is done.")


class Epic(BacklogModel):
    """A group of items delivering one outcome."""

    id: str = Field(pattern=r"^E[0-9]{1,3}$", description="E1, E2, ...")
    title: str = Field(min_length=3, max_length=200)
    description: str = ""
    items: list[BacklogItem] = Field(min_length=1)


class Backlog(BacklogModel):
    """The canonical backlog."""

    model_config = published_file_config("Lakehouse Control Room backlog")

    epics: list[Epic] = Field(min_length=1)


def backlog_json_schema() -> dict[str, Any]:
    """The published JSON Schema of spec/backlog.yaml."""
    return Backlog.model_json_schema(mode="validation")


def load_backlog(path: Path = BACKLOG_PATH, root: Path = PROJECT_ROOT) -> Backlog:
    """Parse and validate the backlog; ``InvalidInput`` lists every problem with its line.

    Evidence (test ids or files) must exist under ``root``: a done item shows what makes it done.
    """
    document = load_yaml(path)
    backlog = validate_document(document, Backlog)
    problems: list[Problem] = []
    seen_epics: dict[str, int] = {}
    seen_items: dict[str, tuple[int, int]] = {}
    for e, epic in enumerate(backlog.epics):
        if epic.id in seen_epics:
            problems.append(document.problem(("epics", e, "id"), f'duplicate epic id "{epic.id}"'))
        seen_epics.setdefault(epic.id, e)
        for i, item in enumerate(epic.items):
            if item.id in seen_items:
                first = document.line_of(("epics", *seen_items[item.id]))
                problems.append(
                    document.problem(
                        ("epics", e, "items", i, "id"), f'duplicate item id "{item.id}" (first at line {first})'
                    )
                )
            seen_items.setdefault(item.id, (e, i))
            if item.status == "done" and not item.evidence:
                problems.append(
                    document.problem(
                        ("epics", e, "items", i, "evidence"), "a done item needs evidence (a test id or file)"
                    )
                )
            for k, evidence in enumerate(item.evidence):
                if evidence_location(evidence, root) is None:
                    problems.append(
                        document.problem(
                            ("epics", e, "items", i, "evidence", k), f'"{evidence}" does not exist in the repository'
                        )
                    )
    if problems:
        raise InvalidInput(problems)
    return backlog


def _bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled) + f" {round(100 * done / total) if total else 0}%"


def _progress_row(label: str, counts: Counter[str]) -> str:
    total = sum(counts.values())
    return (
        f"| {label} | {counts['done']} | {counts['in_progress']} | {counts['blocked']} | {counts['todo']} | {total} "
        f"| {_bar(counts['done'], total)} |"
    )


_PROGRESS_HEADER = [
    "| {} | Done | In progress | Blocked | To do | Total | Progress |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
]


def render_report(backlog: Backlog) -> str:
    """Markdown: progress by epic, progress by lane, then the open items of each epic by priority."""
    items = [item for epic in backlog.epics for item in epic.items]
    lines = ["# Backlog progress", ""]
    overall = Counter(item.status for item in items)
    lines.append(f"{overall['done']} of {len(items)} items done ({_bar(overall['done'], len(items))}).")
    lines += ["", "## By epic", "", _PROGRESS_HEADER[0].format("Epic"), _PROGRESS_HEADER[1]]
    for epic in backlog.epics:
        lines.append(_progress_row(f"{epic.id} {epic.title}", Counter(item.status for item in epic.items)))
    lines += ["", "## By lane", "", _PROGRESS_HEADER[0].format("Lane"), _PROGRESS_HEADER[1]]
    for lane in LANES:
        in_lane: Counter[str] = Counter(item.status for item in items if item.lane == lane)
        if in_lane:
            lines.append(_progress_row(lane, in_lane))
    lines += ["", "## Open items", ""]
    open_found = False
    for epic in backlog.epics:
        pending = sorted((i for i in epic.items if i.status != "done"), key=lambda i: (i.priority, i.id))
        if not pending:
            continue
        open_found = True
        lines += [
            f"### {epic.id} {epic.title}",
            "",
            "| Item | Priority | Lane | Status | Acceptance |",
            "| --- | --- | --- | --- | --- |",
        ]
        for item in pending:
            issue = f" (#{item.issue})" if item.issue else ""
            acceptance = "<br>".join(a.replace("|", "\\|") for a in item.acceptance)
            lines.append(
                f"| {item.id} {item.title.replace('|', '/')}{issue} | {item.priority} | {item.lane} "
                f"| {item.status.replace('_', ' ')} | {acceptance} |"
            )
        lines.append("")
    if not open_found:
        lines.append("Every item is done.")
    return "\n".join(lines).rstrip() + "\n"
