"""The simulator's explanation agrees with the SQL router: for 1,000 random task specs against a random
matrix, ``routing.explain`` picks the rule and pool that ops.route_task (what ops.route_on_queue uses) picks."""

from __future__ import annotations

import random

import psycopg
import pytest

from control_room.services import routing
from tests.governance.conftest import GovWorld

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


def _random_rule(rng: random.Random, index: int) -> routing.RuleDraft:
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
