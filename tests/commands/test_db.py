"""`lakehouse db migrate` and `lakehouse db status` against a real Postgres."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import get_settings
from control_room.db.migrate import discover

pytestmark = pytest.mark.migrations


class CliResult:
    """Exit code and the two output streams of one CLI invocation."""

    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr


@pytest.fixture
def lakehouse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, list[str]], CliResult]]:
    """``lakehouse(database_url, args)``: run the CLI in-process with that LAKEHOUSE_DATABASE_URL."""

    def invoke(database_url: str, args: list[str]) -> CliResult:
        monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, args)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    yield invoke
    get_settings.cache_clear()


def test_migrate_applies_every_file_then_is_up_to_date(
    lakehouse: Callable[[str, list[str]], CliResult], fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    first = lakehouse(url, ["db", "migrate"])
    assert first.exit_code == 0, first.stderr
    assert first.stdout.splitlines() == [f"applied {f.filename}" for f in discover()]
    again = lakehouse(url, ["db", "migrate"])
    assert again.exit_code == 0
    assert again.stdout.strip() == "up to date"


def test_status_shows_pending_then_applied_with_a_time(
    lakehouse: Callable[[str, list[str]], CliResult], fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    pending = lakehouse(url, ["db", "status"])
    assert pending.exit_code == 0, pending.stderr
    lines = pending.stdout.splitlines()
    assert lines[0].split() == ["filename", "state", "applied_at"]
    assert [line.split()[:3] for line in lines[1:]] == [[f.filename, "pending", "-"] for f in discover()]

    lakehouse(url, ["db", "migrate"])
    applied = lakehouse(url, ["db", "status"]).stdout.splitlines()[1:]
    assert all(line.split()[1] == "applied" and line.split()[2] != "-" for line in applied)


def test_edited_migration_is_an_error_on_stderr_with_exit_1(
    lakehouse: Callable[[str, list[str]], CliResult], fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    lakehouse(url, ["db", "migrate"])
    first = discover()[0].filename
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update ops.schema_migrations set sha256 = repeat('0', 64) where filename = %s", (first,))
    result = lakehouse(url, ["db", "migrate"])
    assert result.exit_code == 1
    assert first in result.stderr
    assert "edited" in result.stderr
    assert result.stdout == ""
    status = lakehouse(url, ["db", "status"])
    assert status.exit_code == 1
    assert f"{first}" in status.stdout and "edited" in status.stdout


def test_unreachable_database_is_an_error_naming_the_setting(
    lakehouse: Callable[[str, list[str]], CliResult],
) -> None:
    result = lakehouse("postgresql://lakehouse:s3cret-pw@127.0.0.1:1/lakehouse", ["db", "migrate"])
    assert result.exit_code == 1
    assert "LAKEHOUSE_DATABASE_URL" in result.stderr
    assert "s3cret-pw" not in result.stderr
