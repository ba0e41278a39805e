"""Check results: what each validator reports, written as JSON files that `lakehouse ci summary` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CheckStatus = Literal["passed", "failed", "skipped"]


class CheckResult(BaseModel):
    """The outcome of one PR-gate check, with the details a reviewer needs to act on a failure."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Check name shown in the PR comment, e.g. 'contract'.")
    status: CheckStatus
    summary: str = Field(description="One line: what was checked and the verdict.")
    details: list[str] = Field(default_factory=list, description="One line per finding.")
    duration_s: float | None = Field(default=None, ge=0)

    @property
    def passed(self) -> bool:
        """True unless the check failed (skipped counts as not failing)."""
        return self.status != "failed"

    def write(self, path: Path) -> Path:
        """Write the result as JSON (parents created)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        return path


def read_result(path: Path) -> CheckResult:
    """A result file written by ``CheckResult.write``."""
    return CheckResult.model_validate_json(path.read_text(encoding="utf-8"))
