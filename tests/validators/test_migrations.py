"""`lakehouse validate migrations` on a throwaway repository: forward-only against the base, lint, apply."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from control_room.cli import app
from control_room.config import MIGRATIONS_DIR, PROJECT_ROOT
from control_room.validators.migrations import check_migrations, find_squawk
from tests.conftest import PostgresServer
from tests.validators.conftest import GitRepo

MIGRATIONS = "supabase/migrations"
GOOD_MIGRATION = """-- A table for the test.
set local lock_timeout = '10s';
set local statement_timeout = '60s';

create table ops.validator_probe (
    id uuid primary key default gen_random_uuid(),
    note text not null default ''
);
"""


@pytest.fixture
def merged(repo: GitRepo) -> GitRepo:
    """Commit 1: the project's real migrations and squawk settings, as merged on the base branch."""
    shutil.copytree(MIGRATIONS_DIR, repo.root / MIGRATIONS)
    shutil.copy(PROJECT_ROOT / ".squawk.toml", repo.root / ".squawk.toml")
    repo.commit("merged migrations")
    return repo


def test_editing_a_merged_migration_fails(merged: GitRepo, pg_server: PostgresServer) -> None:
    first = sorted((merged.root / MIGRATIONS).glob("*.sql"))[1]
    first.write_text(first.read_text(encoding="utf-8") + "\ncomment on schema ops is 'edited';\n", encoding="utf-8")
    merged.commit("edit a merged migration")

    result = check_migrations(merged.root / MIGRATIONS, base_ref="HEAD~1", database_url=pg_server.admin_url)

    assert result.status == "failed"
    assert result.details == [
        f"{first.name}: edited, but it is merged in HEAD~1 (and may be applied; the runner refuses edited files): "
        "restore it and put the change in a new migration"
    ]


def test_deleting_or_inserting_before_merged_migrations_fails(merged: GitRepo) -> None:
    files = sorted((merged.root / MIGRATIONS).glob("*.sql"))
    files[-1].unlink()
    (merged.root / MIGRATIONS / "20200101000000_too_early.sql").write_text(GOOD_MIGRATION, encoding="utf-8")
    (merged.root / MIGRATIONS / "2026_bad-name.sql").write_text("select 1;\n", encoding="utf-8")
    merged.commit("delete, insert early, misname")

    result = check_migrations(merged.root / MIGRATIONS, base_ref="HEAD~1", lint=False, apply=False)

    assert result.status == "failed"
    assert result.details[0] == "2026_bad-name.sql: migration files must be named <14-digit timestamp>_<snake_name>.sql"
    assert result.details[1].startswith(f"{files[-1].name}: deleted, but it is merged in HEAD~1")
    assert result.details[2].startswith(
        f"20200101000000_too_early.sql: new, but sorts before {files[-1].name} of HEAD~1"
    )


def test_a_new_migration_is_linted_and_applied_from_scratch(merged: GitRepo, pg_server: PostgresServer) -> None:
    assert find_squawk() is not None, "squawk-cli is in the dev extra"
    (merged.root / MIGRATIONS / "29990101000000_validator_probe.sql").write_text(GOOD_MIGRATION, encoding="utf-8")
    merged.commit("add a migration")

    result = check_migrations(merged.root / MIGRATIONS, base_ref="HEAD~1", database_url=pg_server.admin_url)

    assert result.status == "passed", result.details
    assert "merged, 1 new" in result.summary
    assert "squawk on 1 file(s) (new since the base)" in result.summary
    assert "from scratch on PostgreSQL" in result.summary


def test_squawk_findings_fail_naming_file_line_and_rule(merged: GitRepo) -> None:
    (merged.root / MIGRATIONS / "29990101000000_risky.sql").write_text(
        "set local lock_timeout = '10s';\nset local statement_timeout = '60s';\n"
        "alter table ops.runs add column risky text not null default 'x';\n"
        "alter table ops.runs alter column name type varchar(100);\n",
        encoding="utf-8",
    )
    merged.commit("a risky migration")

    result = check_migrations(merged.root / MIGRATIONS, base_ref="HEAD~1", apply=False)

    assert result.status == "failed"
    assert any(line.startswith("29990101000000_risky.sql:4: changing-column-type:") for line in result.details), (
        result.details
    )
    assert all(line.startswith("29990101000000_risky.sql:") for line in result.details)


def test_a_migration_that_does_not_apply_fails_naming_it(merged: GitRepo, pg_server: PostgresServer) -> None:
    (merged.root / MIGRATIONS / "29990101000000_broken.sql").write_text(
        "set local lock_timeout = '10s';\nset local statement_timeout = '60s';\n"
        "create table ops.broken (id uuid references ops.no_such_table (id));\n",
        encoding="utf-8",
    )
    merged.commit("a broken migration")

    result = check_migrations(merged.root / MIGRATIONS, base_ref="HEAD~1", database_url=pg_server.admin_url)

    assert result.status == "failed"
    [problem] = result.details
    assert problem.startswith("apply from scratch: 29990101000000_broken.sql failed and was rolled back:")
    assert "no_such_table" in problem


def test_cli_applies_on_a_throwaway_embedded_postgres(merged: GitRepo) -> None:
    result = CliRunner().invoke(
        app, ["validate", "migrations", "--dir", str(merged.root / MIGRATIONS), "--base", "HEAD", "--no-lint"]
    )

    assert result.exit_code == 0, result.stderr
    assert "a temporary embedded PostgreSQL" in result.stdout
