"""Dashboards in the GitOps bundle: per project, versioned (a changed definition deploys as a new version), planned
field by field, exported back byte-stable, archived when removed and restored when named again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import sorted_bundle
from control_room.bundle.plan import Change
from control_room.bundle.source import InvalidInput
from control_room.services.dashboards import template_yaml
from tests.bundle.conftest import DemoLikeOrg, edit


def _write_dashboard(bundle_dir: Path, project: str = "lakehouse", name: str = "team-health") -> Path:
    """A bundle file holding the run-health template as a project's dashboard."""
    definition: dict[str, Any] = yaml.safe_load(template_yaml("run-health"))
    definition["title"] = "Team health"
    path = bundle_dir / "dashboards" / project / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"dashboards": [{"project": project, "name": name, "dashboard": definition}]}
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=4096), encoding="utf-8")
    return path


def _versions(db: psycopg.Connection, org: DemoLikeOrg, slug: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "select v.version, v.spec ->> 'title', d.latest_version, d.archived_at is not null from ops.dashboards d "
        "join ops.dashboard_versions v on v.dashboard_id = d.id where d.org_id = %s and d.slug = %s "
        "order by v.version",
        (org.org_id, slug),
    ).fetchall()


def test_deploy_versions_a_dashboard_and_plans_clean_after(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    path = _write_dashboard(bundle_dir)
    plan = plan_bundle(db, load_bundle(bundle_dir))
    assert Change("dashboards", "lakehouse/team-health", "create", note="version 1") in plan.changes
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert _versions(db, org, "team-health") == [(1, "Team health", 1, False)]
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty, "a deployed bundle plans no change"

    edit(path, "title: Runs and failures per day\n", "title: Runs a day\n")
    plan = plan_bundle(db, load_bundle(bundle_dir))
    [change] = plan.changes
    assert (change.section, change.key, change.action, change.note) == (
        "dashboards", "lakehouse/team-health", "update", "new version 2",
    )  # fmt: skip
    assert [(f.field, f.old, f.new) for f in change.fields] == [
        ("dashboard.charts[0].title", "Runs and failures per day", "Runs a day")
    ]
    assert 'dashboard.charts[0].title: "Runs and failures per day" -> "Runs a day"' in plan.render()
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert [row[0] for row in _versions(db, org, "team-health")] == [1, 2], "the old version stays"
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty
    audit = db.execute(
        "select action, detail ->> 'version' from ops.audit_log where entity = 'dashboards' and actor = 'test' "
        "and entity_id = (select id from ops.dashboards where org_id = %s and slug = 'team-health') order by id",
        (org.org_id,),
    ).fetchall()
    assert audit == [("create", "1"), ("update", "2")]


def test_export_writes_dashboards_back_and_round_trips(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, tmp_path: Path
) -> None:
    _write_dashboard(bundle_dir)
    _write_dashboard(bundle_dir, project="ml", name="ml-health")
    source = load_bundle(bundle_dir)
    deploy_bundle(db, source, actor="test")

    export_bundle(db, org.slug, tmp_path / "export")
    exported = tmp_path / "export" / "dashboards" / "lakehouse" / "team-health.yaml"
    assert exported.is_file() and (tmp_path / "export" / "dashboards" / "ml" / "ml-health.yaml").is_file()
    assert "title: Team health" in exported.read_text(encoding="utf-8")
    again = load_bundle(tmp_path / "export")
    assert sorted_bundle(again.bundle) == sorted_bundle(source.bundle)
    assert plan_bundle(db, again).is_empty
    deploy_bundle(db, again, actor="test")
    assert [row[0] for row in _versions(db, org, "team-health")] == [1], "the export deploys as the same version"
    export_bundle(db, org.slug, tmp_path / "again")
    first = {p.relative_to(tmp_path / "export"): p.read_bytes() for p in (tmp_path / "export").rglob("*.yaml")}
    second = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*.yaml")}
    assert first == second


def test_removed_dashboard_is_archived_then_restored(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    path = _write_dashboard(bundle_dir)
    deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    kept = path.read_text(encoding="utf-8")
    path.unlink()

    plan = deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert plan.changes == (
        Change("dashboards", "lakehouse/team-health", "delete", note="archived: its versions are kept"),
    )
    assert _versions(db, org, "team-health") == [(1, "Team health", 1, True)]
    listed = db.execute(
        "select count(*) from ops.dashboards where org_id = %s and archived_at is null", (org.org_id,)
    ).fetchone()
    assert listed == (0,)

    path.write_text(kept, encoding="utf-8")
    restore = deploy_bundle(db, load_bundle(bundle_dir), actor="test")
    assert restore.changes == (
        Change("dashboards", "lakehouse/team-health", "create", note="restored from the archive"),
    )
    assert _versions(db, org, "team-health") == [(1, "Team health", 1, False)], "unchanged: the same version"


def test_invalid_dashboard_and_unknown_project_are_located(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path
) -> None:
    path = _write_dashboard(bundle_dir)
    edit(path, "type: pie\n", "type: donut\n")
    with pytest.raises(InvalidInput) as invalid:
        load_bundle(bundle_dir)
    located = [p for p in invalid.value.problems if p.file.endswith("team-health.yaml")]
    assert any("dashboards[0].dashboard.charts" in p.path for p in located), str(invalid.value)
    edit(path, "type: donut\n", "type: pie\n")
    edit(path, "project: lakehouse\n", "project: marketing\n")
    with pytest.raises(InvalidInput, match='unknown project "marketing"'):
        plan_bundle(db, load_bundle(bundle_dir))
