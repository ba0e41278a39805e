"""Project settings in the GitOps bundle (issue 25): event retention and require_available_engine per project.

They plan as updates only (every project has settings; one the bundle does not list has the defaults), deploy
in the bundle's transaction with an audit entry per project, export and plan nothing after; an unknown
project or an out-of-range retention names file and line; a retention set through the API shows as drift on
the governance view until the bundle is deployed again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest

from control_room.bundle import deploy as deploy_module
from control_room.bundle.deploy import deploy_bundle, plan_bundle
from control_room.bundle.export import export_bundle, live_bundle
from control_room.bundle.loader import load_bundle
from control_room.bundle.models import ProjectSettings, sorted_bundle
from control_room.bundle.plan import Change, FieldChange
from control_room.bundle.source import InvalidInput
from control_room.services import governance
from tests.bundle.conftest import CliResult, DemoLikeOrg, copy_bundle, edit, line_of, make_demo_like_org
from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

ML_ITEM = "  - project: ml\n"


def settings_of(db: psycopg.Connection, org: DemoLikeOrg) -> dict[str, tuple[int, bool]]:
    rows = db.execute(
        "select slug, event_retention_days, require_available_engine from ops.projects where org_id = %s",
        (org.org_id,),
    ).fetchall()
    return {slug: (days, required) for slug, days, required in rows}


def test_settings_plan_deploy_audit_and_export_round_trip(
    db: psycopg.Connection,
    org: DemoLikeOrg,
    bundle_dir: Path,
    tmp_path: Path,
    lakehouse: Callable[..., CliResult],
) -> None:
    # The demo bundle keeps lakehouse at the default 30 days and ml at 90: one update, no create.
    plan = plan_bundle(db, load_bundle(bundle_dir))
    assert [c for c in plan.changes if c.section == "settings"] == [
        Change("settings", "ml", "update", (FieldChange("event_retention_days", 30, 90),))
    ]

    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")

    assert settings_of(db, org) == {"lakehouse": (30, False), "ml": (90, False)}
    assert plan_bundle(db, load_bundle(bundle_dir)).is_empty, "a second plan shows no diff"
    ml_id = db.execute("select id from ops.projects where org_id = %s and slug = 'ml'", (org.org_id,)).fetchone()
    assert ml_id
    audited = db.execute(
        "select actor, action, project_id, detail from ops.audit_log where entity = 'settings' and entity_id = %s",
        (ml_id[0],),
    ).fetchall()
    assert audited == [("tests", "update", ml_id[0], {
        "source": "bundle", "key": "ml", "changes": [{"field": "event_retention_days", "old": 30, "new": 90}],
    })]  # fmt: skip

    # Two settings of one project change; the CLI's plan shows them field by field.
    settings = bundle_dir / "settings.yaml"
    edit(settings, "    event_retention_days: 30\n",
         "    event_retention_days: 7\n    require_available_engine: true\n")  # fmt: skip
    shown = lakehouse("bundle", "plan", str(bundle_dir))
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "settings:",
        "  ~ lakehouse",
        "      event_retention_days: 30 -> 7",
        "      require_available_engine: false -> true",
        "Plan: 0 to create, 1 to update, 0 to delete.",
    ]
    deployed = lakehouse("bundle", "deploy", str(bundle_dir))
    assert deployed.exit_code == 0, deployed.stderr
    assert settings_of(db, org) == {"lakehouse": (7, True), "ml": (90, False)}

    # Export writes settings.yaml; it reads back as the same bundle and plans nothing.
    export_bundle(db, org.slug, tmp_path / "export")
    exported = (tmp_path / "export" / "settings.yaml").read_text(encoding="utf-8")
    assert "settings:\n  - project: lakehouse\n    event_retention_days: 7\n    require_available_engine: true\n" in (
        exported
    )
    assert sorted_bundle(load_bundle(tmp_path / "export").bundle) == sorted_bundle(load_bundle(bundle_dir).bundle)
    assert plan_bundle(db, load_bundle(tmp_path / "export")).is_empty

    # A project the bundle stops listing goes back to the defaults (projects themselves are not the bundle's).
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text[: text.index(ML_ITEM)], encoding="utf-8")
    [change] = plan_bundle(db, load_bundle(bundle_dir)).changes
    assert change == Change(
        "settings", "ml", "update", (FieldChange("event_retention_days", 90, 30),), "back to the defaults"
    )
    deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
    assert settings_of(db, org) == {"lakehouse": (7, True), "ml": (30, False)}
    # Canonical form: a project at its defaults is not listed (listing it or not means the same).
    assert [s.project for s in sorted_bundle(live_bundle(db, org.slug)).settings] == ["lakehouse"]
    assert ProjectSettings(project="ml").is_default()


def test_settings_deploy_in_the_bundles_transaction(
    db: psycopg.Connection, org: DemoLikeOrg, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy that fails after writing the settings leaves them (and their audit entry) as they were."""

    def fail(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("the deploy fails after its writes")

    monkeypatch.setattr(deploy_module.governance, "record_deployment", fail)
    with pytest.raises(RuntimeError, match="after its writes"):
        deploy_bundle(db, load_bundle(bundle_dir), actor="tests")

    assert settings_of(db, org) == {"lakehouse": (30, False), "ml": (30, False)}
    assert db.execute(
        "select count(*) from ops.audit_log a join ops.projects p on p.id = a.entity_id "
        "where a.entity = 'settings' and p.org_id = %s",
        (org.org_id,),
    ).fetchone() == (0,)


def test_an_unknown_project_or_a_retention_out_of_range_names_file_and_line(
    db: psycopg.Connection, bundle_dir: Path
) -> None:
    settings = bundle_dir / "settings.yaml"
    edit(settings, "  - project: ml\n", "  - project: warehouse\n")
    with pytest.raises(InvalidInput) as caught:
        plan_bundle(db, load_bundle(bundle_dir))
    [problem] = caught.value.problems
    assert str(problem).startswith(f"{settings}:{line_of(settings, 'project: warehouse')}: settings[1].project: ")
    assert 'unknown project "warehouse"' in str(problem) and "(projects: lakehouse, ml)" in str(problem)

    edit(settings, "    event_retention_days: 90\n", "    event_retention_days: 4000\n")
    with pytest.raises(InvalidInput) as caught:
        load_bundle(bundle_dir)
    [problem] = caught.value.problems
    line = line_of(settings, "event_retention_days: 4000")
    assert str(problem).startswith(f"{settings}:{line}: settings[1].event_retention_days: ")
    assert "3650" in str(problem)


def test_a_retention_set_through_the_api_shows_as_drift_until_the_bundle_is_deployed_again(
    live_api: LiveServer, provision: Provisioner, tmp_path: Path
) -> None:
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        org = make_demo_like_org(db)
        bundle_dir = copy_bundle(tmp_path / "bundle", org.slug)
        deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
        row = db.execute("select id from ops.projects where org_id = %s and slug = 'lakehouse'", (org.org_id,))
        project = row.fetchone()
        assert project
        envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (project[0],)).fetchall())
        _, token = provision.user_token("admin", Tenant(org_id=org.org_id, project_id=project[0], environments=envs))
        assert not governance.drift(db, org=org.slug).has_drift

    answer = httpx.put(
        f"{live_api.base_url}/api/v1/projects/{project[0]}/retention",
        json={"event_retention_days": 14},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    with psycopg.connect(provision.database_url, autocommit=True) as db:
        drift = governance.drift(db, org=org.slug)
        assert drift.has_drift
        assert drift.lines() == ["~ settings lakehouse: event_retention_days 30 -> 14"]
        # Deploying the bundle again puts the retention back as the bundle says.
        plan = deploy_bundle(db, load_bundle(bundle_dir), actor="tests")
        assert [(c.section, c.key, c.action) for c in plan.changes] == [("settings", "lakehouse", "update")]
        assert not governance.drift(db, org=org.slug).has_drift
        assert db.execute("select event_retention_days from ops.projects where id = %s", (project[0],)).fetchone() == (
            30,
        )
