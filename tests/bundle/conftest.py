"""Bundle fixtures: an org shaped like the demo one (projects lakehouse and ml) and a copy of examples/bundle for it."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from control_room.bundle import DEMO_BUNDLE_DIR
from control_room.cli import app
from control_room.config import get_settings


@dataclass
class DemoLikeOrg:
    """An org of its own in the shared database, with the demo's projects and environments."""

    slug: str
    org_id: uuid.UUID


def make_demo_like_org(conn: psycopg.Connection) -> DemoLikeOrg:
    slug = f"b-{uuid.uuid4().hex[:10]}"
    row = conn.execute("insert into ops.orgs (slug, name) values (%s, %s) returning id", (slug, slug)).fetchone()
    assert row
    org_id = row[0]
    for project in ("lakehouse", "ml"):
        project_row = conn.execute(
            "insert into ops.projects (org_id, slug, name) values (%s, %s, %s) returning id", (org_id, project, project)
        ).fetchone()
        assert project_row
        for environment in ("dev", "staging", "prod"):
            conn.execute(
                "insert into ops.environments (project_id, name) values (%s, %s)", (project_row[0], environment)
            )
    return DemoLikeOrg(slug=slug, org_id=org_id)


@pytest.fixture
def org(db: psycopg.Connection) -> DemoLikeOrg:
    return make_demo_like_org(db)


def copy_bundle(target: Path, org_slug: str, source: Path = DEMO_BUNDLE_DIR) -> Path:
    """A copy of ``source`` whose bundle.yaml names ``org_slug``."""
    shutil.copytree(source, target)
    manifest = target / "bundle.yaml"
    manifest.write_text(
        re.sub(r"(?m)^org: .*$", f"org: {org_slug}", manifest.read_text(encoding="utf-8")), encoding="utf-8"
    )
    return target


@pytest.fixture
def bundle_dir(tmp_path: Path, org: DemoLikeOrg) -> Path:
    return copy_bundle(tmp_path / "bundle", org.slug)


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of ``old`` in a file (a test's bundle edit)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, fragment: str) -> int:
    """1-based number of the only line of ``path`` containing ``fragment``."""
    lines = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if fragment in line]
    assert len(lines) == 1, f"{fragment!r} is on lines {lines} of {path}"
    return lines[0]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def lakehouse(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Callable[..., CliResult]]:
    """``lakehouse(*args)``: the real CLI in-process against the shared test database."""

    def invoke(*args: str) -> CliResult:
        monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, list(args))
        return CliResult(result.exit_code, result.stdout, result.stderr)

    yield invoke
    get_settings.cache_clear()
