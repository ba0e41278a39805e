"""Versions of the job page: any two versions' YAML side by side, changed lines marked (difflib)."""

from __future__ import annotations

import difflib

import reflex as rx

from control_room.services import job_editing, jobs
from control_room.state.events import background
from control_room.state.job.detail import JobState
from control_room.state.rows import DiffLine


def side_by_side(left: str, right: str) -> list[DiffLine]:
    """Two texts as aligned rows: equal lines once per side, changed ones paired, added/removed alone."""
    a, b = left.splitlines(), right.splitlines()
    rows: list[DiffLine] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            rows.append(
                DiffLine(
                    left_no=str(i + 1) if i < i2 else "",
                    left=a[i] if i < i2 else "",
                    right_no=str(j + 1) if j < j2 else "",
                    right=b[j] if j < j2 else "",
                    kind=tag,
                )
            )
    return rows


class VersionDiffState(JobState):
    """Which two versions are compared, and their diff."""

    left_version: rx.Field[str] = rx.field("")
    right_version: rx.Field[str] = rx.field("")
    diff: rx.Field[list[DiffLine]] = rx.field(default_factory=list)
    diff_summary: rx.Field[str] = rx.field("")
    diff_error: rx.Field[str] = rx.field("")

    @background
    async def compare(self, side: str = "", version: str = "") -> None:
        """Compare two versions (by default the latest with the one before it)."""
        async with self:
            if side == "left":
                self.left_version = version
            elif side == "right":
                self.right_version = version
            else:  # opening the page: the latest version against the one before
                self.left_version = self.right_version = ""
            left, right = self.left_version, self.right_version
        template = await self.read_job_showing(
            lambda conn, job_id: jobs.get_template(conn, template_id=job_id), error="diff_error"
        )
        if template is None:
            return
        by_number = {str(v.version): v for v in template["versions"]}
        numbers = sorted(by_number, key=int)
        if not numbers:
            return
        right = right if right in by_number else numbers[-1]
        left = left if left in by_number else numbers[max(0, len(numbers) - 2)]
        rows = side_by_side(
            job_editing.template_yaml(template, by_number[left]), job_editing.template_yaml(template, by_number[right])
        )
        changed = sum(1 for row in rows if row.kind != "equal")
        async with self:
            self.left_version, self.right_version = left, right
            self.diff = rows
            self.diff_error = ""
            self.diff_summary = f"v{left} → v{right}: " + (f"{changed} lines differ" if changed else "identical")
