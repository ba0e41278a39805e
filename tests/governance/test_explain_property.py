"""The simulator's explanation agrees with the SQL router: for 1,000 random task specs against a random
matrix, ``routing.explain`` picks the rule and pool that ops.route_task (what ops.route_on_queue uses) picks;
and so does `GET /api/v1/routing/explain` on a live server for 300 more, asked by a member of one project only
(rules on projects the caller cannot see must still match only those projects' tasks). The endpoint runs the
same ``routing.explain``: its 300 check what the HTTP path adds (permissions, the spec's pool), in a third of
the time 1,000 calls took in CI."""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from control_room.bundle.deploy import deploy_bundle
from control_room.bundle.loader import load_bundle
from control_room.services import routing
from tests.bundle.conftest import copy_bundle, make_demo_like_org
from tests.governance.conftest import GovWorld
from tests.integration.factories import Tenant
from tests.live import LiveServer, Provisioner

pytestmark = pytest.mark.migrations

ENGINES = ["shell", "python", "dbt", "duckdb", "spark"]
LABELS = ["gpu", "ssd", "eu", "big"]
TAGS = ["training", "nightly", "adhoc"]
ROUTE_SQL = (
    "select r.name, x.pool from ops.route_task(%s, (select id from ops.projects where org_id = %s and slug = %s), "
    "%s, %s, %s, %s) x join ops.routing_rules r on r.id = x.rule_id"
)


def _subset(rng: random.Random, values: list[str], most: int) -> list[str]:
    return sorted(rng.sample(values, rng.randint(0, most)))


def _random_rule(rng: random.Random, index: int, *, overrides: bool = False) -> routing.RuleDraft:
    return routing.RuleDraft(
        name=f"rule-{index}",
        position=(index + 1) * 10,
        project=rng.choice(["", "", "lakehouse", "ml"]),
        environment=rng.choice(["", "", "dev", "staging", "prod"]),
        engine=rng.choice(["", "", *ENGINES]),
        labels=_subset(rng, LABELS, 2),
        tags=_subset(rng, TAGS, 1),
        pool=rng.choice(["default", "etl", "gpu", "warehouse"]),
        required_labels=_subset(rng, LABELS, 1),
        allow_pool_override=overrides and rng.random() < 0.3,
        enabled=rng.random() > 0.15,
    )


def test_explain_matches_sql_routing_for_1000_random_specs(gov: GovWorld, db: psycopg.Connection) -> None:
    rng = random.Random(19)
    draft = [_random_rule(rng, i) for i in range(14)]
    matrix = gov.call("service", lambda c: routing.load_matrix(c, org_id=gov.org.org_id))
    gov.call("service", lambda c: routing.apply(c, matrix=matrix, draft=draft, fingerprint=None, by="tests"))
    rules = gov.call("service", lambda c: routing.load_matrix(c, org_id=gov.org.org_id)).rules
    assert [r.name for r in rules] == [r.name for r in draft]
    matched = 0
    for _ in range(1000):
        probe = routing.TaskProbe(
            project=rng.choice(["lakehouse", "ml"]),
            environment=rng.choice(["dev", "staging", "prod"]),
            engine=rng.choice(ENGINES),
            labels=tuple(_subset(rng, LABELS, 3)),
            tags=tuple(_subset(rng, TAGS, 2)),
        )
        row = db.execute(
            ROUTE_SQL,
            (gov.org.org_id, gov.org.org_id, probe.project, probe.environment, probe.engine, list(probe.labels),
             list(probe.tags)),
        ).fetchone()  # fmt: skip
        route = routing.explain(rules, probe)
        expected = (row[0], row[1]) if row else ("", routing.DEFAULT_POOL)
        assert (route.rule, route.pool) == expected, f"{probe}: explain says {route.rule}, SQL says {expected[0]}"
        if route.rule:
            matched += 1
            earlier = route.verdicts[: route.rule_index]
            assert all(not v.matched and v.reasons for v in earlier), "every earlier rule says why it did not match"
    assert 100 < matched < 1000, f"the random matrix should both match and miss ({matched} matched)"


ENDPOINT_SPECS = 300
ROUTE_FULL_SQL = (
    "select r.name, x.pool, x.required_labels, x.allow_pool_override from ops.route_task(%s, %s, %s, %s, %s, %s) x "
    "join ops.routing_rules r on r.id = x.rule_id"
)


def test_the_explain_endpoint_matches_sql_routing_for_300_random_specs(
    live_api: LiveServer, provision: Provisioner, tmp_path: Path
) -> None:
    rng = random.Random(1919)
    with psycopg.connect(provision.database_url, autocommit=True) as db:
        org = make_demo_like_org(db)
        deploy_bundle(db, load_bundle(copy_bundle(tmp_path / "bundle", org.slug)), actor="tests")
        projects = dict(db.execute("select slug, id from ops.projects where org_id = %s", (org.org_id,)).fetchall())
        envs = dict(db.execute("select name, id from ops.environments where project_id = %s", (projects["lakehouse"],)))
        # A viewer of lakehouse only: rules on ml are on a project they cannot see.
        _, token = provision.user_token("viewer", Tenant(org.org_id, projects["lakehouse"], envs))
        world = GovWorld(provision.database_url, org, tmp_path / "bundle", {})
        draft = [_random_rule(rng, i, overrides=True) for i in range(14)]
        matrix = world.call("service", lambda c: routing.load_matrix(c, org_id=org.org_id))
        world.call("service", lambda c: routing.apply(c, matrix=matrix, draft=draft, fingerprint=None, by="tests"))
        client = httpx.Client(
            base_url=f"{live_api.base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        matched = overridden = 0
        started = time.monotonic()
        for _ in range(ENDPOINT_SPECS):
            environment, engine = rng.choice(["dev", "staging", "prod"]), rng.choice(ENGINES)
            labels, tags = _subset(rng, LABELS, 3), _subset(rng, TAGS, 2)
            pool = rng.choice(["", "", "vip", "etl"])
            got = client.get(
                "/routing/explain",
                params={"org": org.slug, "project": "lakehouse", "environment": environment, "engine": engine,
                        "labels": labels, "tags": tags, "pool": pool},
            )  # fmt: skip
            assert got.status_code == 200, got.text
            answer = got.json()
            row = db.execute(
                ROUTE_FULL_SQL, (org.org_id, projects["lakehouse"], environment, engine, labels, tags)
            ).fetchone()
            if row is None:
                expected = ("", routing.DEFAULT_POOL, [])
            else:
                name, rule_pool, required, allows = row
                from_spec = bool(allows and pool)
                expected = (name, pool if from_spec else rule_pool, [] if from_spec else sorted(required))
                matched += 1
                overridden += from_spec
            probe = f"{environment} {engine} labels={labels} tags={tags} pool={pool!r}"
            assert (answer["rule"], answer["pool"], answer["required_labels"]) == expected, probe
            # Every rule before the match says why it did not match.
            assert all(not v["matched"] and v["reasons"] for v in answer["verdicts"][:-1] if answer["rule"]), probe
        elapsed = time.monotonic() - started
    hidden = [r for r in draft if r.project == "ml" and r.enabled]
    assert hidden, "the random matrix has enabled rules on the project the viewer cannot see"
    assert ENDPOINT_SPECS // 10 < matched < ENDPOINT_SPECS and overridden > 0, (matched, overridden)
    print(f"{ENDPOINT_SPECS} explain calls in {elapsed:.1f} s ({matched} matched, {overridden} took the spec's pool)")
