"""The routing matrix as the governance pages, the API and the CLI edit it: rules as drafts, live warnings,
the simulator's explanation (the same first-match rule as ops.route_task), the diff and re-routing preview
shown before an apply, and the apply itself (one SQL transaction, org admins, audited per rule).

Drafts are validated with the GitOps bundle's own ``RoutingRule`` model, so whatever the UI saves is what
``lakehouse bundle export`` writes back and ``lakehouse bundle deploy`` accepts.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from control_room.bundle.models import POOL_PATTERN, RoutingRule
from control_room.bundle.source import format_path
from control_room.db import tables
from control_room.db.rows import dict_rows, model_list, scalar
from control_room.services.errors import Invalid, NotFound

ENVIRONMENTS = ("dev", "staging", "prod")
HIDDEN = "#"  # starts the project of a rule matching a project the caller cannot see: "#<project id>"
DEFAULT_POOL = "default"  # where ops.route_on_queue sends a task no rule matches
# The fields a rule matches on, in the order the simulator explains them.
MATCH_FIELDS = ("project", "environment", "engine", "labels", "tags")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ADDRESS = re.compile(r"^(slack:#[\w.-]+|https?://\S+|pagerduty:\S+)$")


@dataclass
class RuleDraft:
    """One rule of the matrix as the editor holds it (``id`` is "" for a rule not applied yet)."""

    id: str = ""
    name: str = ""
    position: int = 0
    project: str = ""  # project slug; "" matches any
    environment: str = ""
    engine: str = ""
    labels: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pool: str = DEFAULT_POOL
    required_labels: list[str] = field(default_factory=list)
    allow_pool_override: bool = False
    owner: str = ""
    escalation: list[str] = field(default_factory=list)
    enabled: bool = True

    @property
    def is_catch_all(self) -> bool:
        """Matches every task (no match field set)."""
        return not (self.project or self.environment or self.engine or self.labels or self.tags)

    def as_bundle_rule(self) -> RoutingRule:
        """The bundle item of this rule; raises ``ValidationError`` as the bundle would."""
        match = {
            "project": self.project or None,
            "environment": self.environment or None,
            "engine": self.engine or None,
            "labels": self.labels,
            "tags": self.tags,
        }
        return RoutingRule.model_validate(
            {
                "name": self.name,
                "position": self.position,
                "match": {k: v for k, v in match.items() if v is not None},
                "pool": self.pool,
                "required_labels": self.required_labels,
                "allow_pool_override": self.allow_pool_override,
                "owner": self.owner or None,
                "escalation": self.escalation,
                "enabled": self.enabled,
            }
        )

    def content(self) -> dict[str, Any]:
        """Everything but the id: what a diff compares."""
        data = asdict(self)
        data.pop("id")
        return data


@dataclass(frozen=True)
class Executor:
    """An executor of the org as routing sees it."""

    name: str
    pool: str
    engines: tuple[str, ...]
    labels: tuple[str, ...]
    status: str
    revoked: bool


@dataclass
class Matrix:
    """An org's live routing matrix and what its warnings and explanations need to know."""

    org_id: uuid.UUID
    org: str
    rules: list[RuleDraft]
    fingerprint: str
    projects: dict[str, uuid.UUID]
    executors: list[Executor]
    people: set[str]  # users' e-mail addresses and alert channel names

    def project_slug(self, project_id: uuid.UUID | None) -> str:
        """The slug of one of the org's projects ("" for none); a project the caller cannot see is named by a
        marker that no task's project equals, so the rule still matches only that project's tasks."""
        if project_id is None:
            return ""
        return next((slug for slug, pid in self.projects.items() if pid == project_id), f"{HIDDEN}{project_id}")


@dataclass(frozen=True)
class Warning:
    """Something about a rule (or the whole matrix, rule -1) that an admin should fix."""

    rule: int
    name: str
    kind: str  # shadowed | no_executor | owner | no_catch_all | invalid
    message: str
    field: str = ""


# Reading ----------------------------------------------------------------------------------------------


async def load_matrix(conn: AsyncConnection, *, org_id: uuid.UUID) -> Matrix:
    """The org's rules in priority order, its fingerprint (for a safe apply), projects, executors and people."""
    org = await dict_rows(
        conn, "select ops.governance_org_slug(%s) as slug, ops.routing_fingerprint(%s) as fingerprint", (org_id, org_id)
    )
    if not org or org[0]["slug"] is None:
        raise NotFound(f"org {org_id} does not exist or is not yours", field="org")
    projects = {
        r["slug"]: r["id"]
        for r in await dict_rows(conn, "select slug, id from ops.projects where org_id = %s", (org_id,))
    }
    matrix = Matrix(
        org_id=org_id,
        org=org[0]["slug"],
        rules=[],
        fingerprint=org[0]["fingerprint"] or "",
        projects=projects,
        executors=[
            Executor(r["name"], r["pool"], tuple(r["engines"]), tuple(r["labels"]), r["status"], r["revoked"])
            for r in await dict_rows(
                conn,
                "select name, pool, engines, labels, status, token_revoked_at is not null as revoked "
                "from ops.executors where org_id = %s order by name",
                (org_id,),
            )
        ],
        people=await _people(conn, org_id),
    )
    matrix.rules = [_draft(rule, matrix) for rule in await _rules(conn, org_id)]
    return matrix


async def _rules(conn: AsyncConnection, org_id: uuid.UUID) -> list[tables.RoutingRule]:
    """The org's routing rules in priority order."""
    return await model_list(
        conn, tables.RoutingRule, "select * from ops.routing_rules where org_id = %s order by position", (org_id,)
    )


def _draft(rule: tables.RoutingRule, matrix: Matrix) -> RuleDraft:
    """A live rule as the editor holds it (its project by slug)."""
    return RuleDraft(
        id=str(rule.id),
        name=rule.name,
        position=rule.position,
        project=matrix.project_slug(rule.match_project_id),
        environment=rule.match_environment or "",
        engine=rule.match_engine or "",
        labels=list(rule.match_labels),
        tags=list(rule.match_tags),
        pool=rule.pool,
        required_labels=list(rule.required_labels),
        allow_pool_override=rule.allow_pool_override,
        owner=rule.owner or "",
        escalation=[str(x) for x in rule.escalation],
        enabled=rule.enabled,
    )


async def _people(conn: AsyncConnection, org_id: uuid.UUID) -> set[str]:
    """Who may own a rule: members' e-mail addresses (lower case) and the org's alert channels."""
    return {str(r["who"]) for r in await dict_rows(conn, "select x as who from ops.governance_people(%s) x", (org_id,))}


async def org_of_project(conn: AsyncConnection, *, project_id: uuid.UUID) -> uuid.UUID:
    """The org a project (that the caller can see) belongs to."""
    rows = await dict_rows(conn, "select org_id from ops.projects where id = %s", (project_id,))
    if not rows:
        raise NotFound(f"project {project_id} does not exist or is not yours", field="project")
    return uuid.UUID(str(rows[0]["org_id"]))


# Warnings ---------------------------------------------------------------------------------------------


def _covers(earlier: RuleDraft, later: RuleDraft) -> bool:
    """Every task ``later`` matches is matched by ``earlier`` too."""
    return (
        all(
            not getattr(earlier, f) or getattr(earlier, f) == getattr(later, f)
            for f in ("project", "environment", "engine")
        )
        and set(earlier.labels) <= set(later.labels)
        and set(earlier.tags) <= set(later.tags)
    )


def owner_is_reachable(owner: str, people: set[str]) -> bool:
    """An owner is a member's address, any e-mail address, an alert channel, slack:#channel or a URL."""
    return owner.lower() in people or bool(_EMAIL.match(owner) or _ADDRESS.match(owner))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def validation_problems(rules: Sequence[RuleDraft], projects: Iterable[str]) -> list[Warning]:
    """What the bundle (and the SQL apply) would refuse, per rule and field."""
    known = set(projects)
    problems: list[Warning] = []
    names = Counter(rule.name for rule in rules)
    for index, rule in enumerate(rules):
        hidden = rule.project.startswith(HIDDEN)
        try:
            (replace(rule, project="") if hidden else rule).as_bundle_rule()
        except ValidationError as exc:
            error = exc.errors()[0]
            path = format_path([p for p in error["loc"] if isinstance(p, str | int)])
            problems.append(Warning(index, rule.name, "invalid", f"{path}: {error['msg']}", path))
            continue
        if names[rule.name] > 1:
            problems.append(Warning(index, rule.name, "invalid", f'another rule is named "{rule.name}"', "name"))
        if not re.match(POOL_PATTERN, rule.pool):
            problems.append(Warning(index, rule.name, "invalid", "pool: lower-case letters, digits, - and _", "pool"))
        if hidden and not _is_uuid(rule.project.removeprefix(HIDDEN)):
            problems.append(
                Warning(index, rule.name, "invalid", "project: a slug, or # and the id of a project", "project")
            )
        if rule.project and not hidden and rule.project not in known:
            problems.append(
                Warning(index, rule.name, "invalid", f'project "{rule.project}" is not in this org', "project")
            )
    return problems


def warnings(matrix: Matrix, rules: Sequence[RuleDraft] | None = None) -> list[Warning]:
    """Live warnings of a matrix (the live one, or a draft of it): invalid fields, shadowed rules, pools with
    no executor for the engines their rules send, owners nobody can reach, and no catch-all."""
    rules = matrix.rules if rules is None else rules
    found = validation_problems(rules, matrix.projects)
    enabled = [(i, r) for i, r in enumerate(rules) if r.enabled]
    for position, (index, rule) in enumerate(enabled):
        earlier = next((e for _, e in enabled[:position] if _covers(e, rule)), None)
        if earlier is not None:
            found.append(
                Warning(
                    index,
                    rule.name,
                    "shadowed",
                    f'never matches: rule "{earlier.name}" above it matches every task it would',
                )
            )
        problem = pool_problem(matrix.executors, rule.pool, rule.engine, rule.required_labels)
        if problem:
            found.append(Warning(index, rule.name, "no_executor", problem, "pool"))
        if rule.owner and not owner_is_reachable(rule.owner, matrix.people):
            found.append(
                Warning(
                    index,
                    rule.name,
                    "owner",
                    f'owner "{rule.owner}" is not a member, an e-mail address or an alert channel',
                    "owner",
                )
            )
    if not any(r.is_catch_all for _, r in enabled):
        found.append(
            Warning(-1, "", "no_catch_all", f'no catch-all rule: tasks no rule matches go to pool "{DEFAULT_POOL}"')
        )
    return sorted(found, key=lambda w: (w.rule if w.rule >= 0 else 10**9, w.kind))


def pool_problem(executors: Sequence[Executor], pool: str, engine: str, labels: Sequence[str]) -> str:
    """Why no executor of the org in ``pool`` could take the rule's tasks ("" when one can)."""
    live = [e for e in executors if e.pool == pool and not e.revoked]
    if not live:
        return f"pool {pool} has no executor"
    if engine and not any(engine in e.engines and set(labels) <= set(e.labels) for e in live):
        with_labels = f" with labels {', '.join(labels)}" if labels else ""
        return f"no executor in pool {pool} offers engine {engine}{with_labels}"
    if not engine and labels and not any(set(labels) <= set(e.labels) for e in live):
        return f"no executor in pool {pool} has labels {', '.join(labels)}"
    return ""


# Simulator --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskProbe:
    """What routing looks at in a task: its project, environment, engine, labels, run tags and spec pool."""

    project: str
    environment: str
    engine: str
    labels: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    pool: str = ""
    required_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleVerdict:
    """One rule's verdict on a task: matched, or why not."""

    index: int
    name: str
    matched: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """Where routing sends a task and why."""

    rule: str  # "" when no rule matched (pool "default")
    rule_index: int
    pool: str
    required_labels: tuple[str, ...]
    verdicts: tuple[RuleVerdict, ...]
    pool_from_spec: bool = False


def mismatches(rule: RuleDraft, probe: TaskProbe) -> list[str]:
    """Why ``rule`` does not match the task (empty when it does), one reason per match field."""
    reasons = []
    for name in ("project", "environment", "engine"):
        wanted, got = getattr(rule, name), getattr(probe, name)
        if wanted and wanted != got:
            reasons.append(f"{name} is {got or 'not set'}, the rule wants {wanted}")
    for name, noun in (("labels", "labels"), ("tags", "run tags")):
        missing = sorted(set(getattr(rule, name)) - set(getattr(probe, name)))
        if missing:
            reasons.append(f"{noun} lack {', '.join(missing)}")
    return reasons


def explain(rules: Sequence[RuleDraft], probe: TaskProbe) -> Route:
    """The first enabled rule (in order) that matches, as ops.route_on_queue picks it, with every earlier
    rule's reason for not matching."""
    verdicts: list[RuleVerdict] = []
    for index, rule in enumerate(rules):
        if not rule.enabled:
            verdicts.append(RuleVerdict(index, rule.name, False, ("disabled",)))
            continue
        reasons = mismatches(rule, probe)
        verdicts.append(RuleVerdict(index, rule.name, not reasons, tuple(reasons)))
        if not reasons:
            spec_pool = bool(rule.allow_pool_override and probe.pool)
            labels = set(probe.required_labels) | (set() if spec_pool else set(rule.required_labels))
            return Route(
                rule.name,
                index,
                probe.pool if spec_pool else rule.pool,
                tuple(sorted(labels)),
                tuple(verdicts),
                spec_pool,
            )
    return Route("", -1, DEFAULT_POOL, tuple(sorted(set(probe.required_labels))), tuple(verdicts))


def claimers(executors: Sequence[Executor], route: Route, engine: str) -> list[Executor]:
    """The executors that could claim the routed task now (online, in the pool, engine and labels)."""
    return [
        e
        for e in executors
        if e.pool == route.pool and not e.revoked and e.status == "online" and engine in e.engines
        and set(route.required_labels) <= set(e.labels)
    ]  # fmt: skip


# Diff, preview, apply ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleChange:
    """One rule created, updated (with the fields that differ), moved or deleted by an apply."""

    action: str  # create | update | delete
    name: str
    fields: tuple[tuple[str, Any, Any], ...] = ()

    def describe(self) -> str:
        """``~ dbt-models: position 20 -> 35, pool default -> etl``."""
        symbol = {"create": "+", "update": "~", "delete": "-"}[self.action]
        details = ", ".join(f"{f} {_show(old)} -> {_show(new)}" for f, old, new in self.fields)
        return f"{symbol} {self.name}" + (f": {details}" if details else "")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value) if value not in ("", None) else "(none)"


def diff(live: Sequence[RuleDraft], draft: Sequence[RuleDraft]) -> list[RuleChange]:
    """What applying ``draft`` changes in ``live`` (rules are matched by id)."""
    by_id = {rule.id: rule for rule in live}
    kept = {rule.id for rule in draft if rule.id}
    changes = [RuleChange("delete", rule.name) for rule in live if rule.id not in kept]
    for rule in draft:
        old = by_id.get(rule.id) if rule.id else None
        if old is None:
            changes.append(RuleChange("create", rule.name))
            continue
        before, after = old.content(), rule.content()
        fields = tuple((name, before[name], after[name]) for name in after if before[name] != after[name])
        if fields:
            changes.append(RuleChange("update", rule.name, fields))
    return changes


def _kept(rules: Sequence[RuleDraft]) -> set[int]:
    """Indices of the longest run of live rules whose positions already increase in list order (the earliest
    such run): they keep their positions, so a reorder changes as few rules as possible."""
    live = [i for i, r in enumerate(rules) if r.id]
    best: dict[int, int] = {}
    previous: dict[int, int | None] = {}
    for i in live:
        best[i], previous[i] = 1, None
        for j in live:
            if j >= i:
                break
            if rules[j].position < rules[i].position and best[j] + 1 > best[i]:
                best[i], previous[i] = best[j] + 1, j
    if not best:
        return set()
    end: int | None = max(live, key=lambda i: (best[i], -i))
    kept = set()
    while end is not None:
        kept.add(end)
        end = previous[end]
    return kept


def renumber(rules: Sequence[RuleDraft]) -> list[RuleDraft]:
    """The rules with strictly increasing positions in list order. The longest run of live rules already in
    order keeps its positions (a bundle's numbering survives a reorder); a moved or new rule goes midway
    between its neighbours, or 10 after the previous rule when there is no room."""
    kept = _kept(rules)
    out: list[RuleDraft] = []
    previous: int | None = None
    for index, rule in enumerate(rules):
        if index in kept and (previous is None or rule.position > previous):
            position = rule.position
        else:
            upper = next(
                (
                    rules[j].position
                    for j in range(index + 1, len(rules))
                    if j in kept and (previous is None or rules[j].position > previous)
                ),
                None,
            )
            # Before the first kept rule: from 0, or below it when it sits at 1 or lower.
            first_lower = 0 if upper is None or upper > 1 else upper - 20
            lower = first_lower if previous is None else previous
            position = lower + (upper - lower) // 2 if upper is not None and upper - lower >= 2 else lower + 10
        out.append(replace(rule, position=position))
        previous = position
    return out


@dataclass(frozen=True)
class QueuedTask:
    """A queued task of the org as the re-routing preview sees it."""

    probe: TaskProbe
    pool: str


async def queued_tasks(conn: AsyncConnection, *, org_id: uuid.UUID, projects: dict[str, uuid.UUID]) -> list[QueuedTask]:
    """The org's queued tasks with what routing looks at."""
    slugs = {pid: slug for slug, pid in projects.items()}
    rows = await dict_rows(
        conn,
        "select t.project_id, e.name as environment, t.engine, t.labels, r.tags, t.requested_pool, t.pool, "
        "       ops.json_text_array(t.spec -> 'required_labels') as spec_labels "
        "from ops.tasks t join ops.runs r on r.id = t.run_id join ops.environments e on e.id = t.environment_id "
        "where t.org_id = %s and t.status = 'queued'",
        (org_id,),
    )
    return [
        QueuedTask(
            TaskProbe(
                slugs.get(r["project_id"], ""),
                r["environment"],
                r["engine"],
                tuple(r["labels"]),
                tuple(r["tags"]),
                r["requested_pool"] or "",
                tuple(r["spec_labels"]),
            ),
            r["pool"],
        )
        for r in rows
    ]


def reroute_preview(tasks: Sequence[QueuedTask], draft: Sequence[RuleDraft]) -> dict[tuple[str, str], int]:
    """How many queued tasks the draft would move, by (from pool, to pool)."""
    moves: Counter[tuple[str, str]] = Counter()
    for task in tasks:
        target = explain(draft, task.probe).pool
        if target != task.pool:
            moves[(task.pool, target)] += 1
    return dict(moves)


def _project_id(project: str, projects: dict[str, uuid.UUID]) -> str | None:
    if not project:
        return None
    return project.removeprefix(HIDDEN) if project.startswith(HIDDEN) else str(projects[project])


def rule_payload(rule: RuleDraft, projects: dict[str, uuid.UUID]) -> dict[str, Any]:
    """The JSON element ops.apply_routing_rules takes for one rule."""
    return {
        "id": rule.id or None,
        "name": rule.name,
        "position": rule.position,
        "match_project_id": _project_id(rule.project, projects),
        "match_environment": rule.environment or None,
        "match_engine": rule.engine or None,
        "match_labels": rule.labels,
        "match_tags": rule.tags,
        "pool": rule.pool,
        "required_labels": rule.required_labels,
        "allow_pool_override": rule.allow_pool_override,
        "owner": rule.owner or None,
        "escalation": rule.escalation,
        "enabled": rule.enabled,
    }


async def apply(
    conn: AsyncConnection, *, matrix: Matrix, draft: Sequence[RuleDraft], fingerprint: str | None, by: str | None
) -> dict[str, Any]:
    """Make the live matrix equal to ``draft`` in one transaction (org admins, checked in SQL; audited).

    Raises Invalid naming the first rule and field at fault before touching the database."""
    rules = renumber(draft)
    problems = validation_problems(rules, matrix.projects)
    if problems:
        first = problems[0]
        raise Invalid(f'rule "{first.name}": {first.message}', field=f"rules[{first.rule}].{first.field or 'name'}")
    payload = [rule_payload(rule, matrix.projects) for rule in rules]
    result: dict[str, Any] = await scalar(
        conn, "select ops.apply_routing_rules(%s, %s, %s, %s)", (matrix.org_id, Jsonb(payload), fingerprint, by)
    )
    return result


def parse_list(text: str) -> list[str]:
    """``a, b c`` -> ``["a", "b", "c"]`` (the editor's label, tag and escalation cells)."""
    return [part for part in re.split(r"[,\s]+", text.strip()) if part]


@dataclass(frozen=True)
class Simulation:
    """The simulator's answer for one task: its route, the executors that could claim it now, and the caps
    that would apply (the tightest of each kind marked, and the concurrency caps full right now)."""

    probe: TaskProbe
    route: Route
    executors: list[Executor]
    caps: list[tuple[Any, bool]]  # (caps.CapView, tightest of its kind)
    waits: list[str]  # why the task would wait now (a full concurrency cap, no executor)


async def simulate(
    conn: AsyncConnection, *, matrix: Matrix, probe: TaskProbe, rules: Sequence[RuleDraft] | None = None
) -> Simulation:
    """Explain where ``probe`` goes under ``rules`` (the live matrix by default) and what would hold it up."""
    from control_room.services import caps  # the caps service reads usage; routing itself does not need it

    route = explain(matrix.rules if rules is None else rules, probe)
    able = claimers(matrix.executors, route, probe.engine)
    scope = caps.TaskScope(probe.project, probe.environment, route.pool, probe.engine)
    applying = caps.effective(await caps.list_caps(conn, org_id=matrix.org_id, with_refusals=False), scope)
    waits = [
        f'{caps.waiting_reason(cap.scope)} ("{cap.name}": {cap.used_label} of {cap.limit})'
        for cap, _ in applying
        if cap.kind == "concurrent_tasks" and cap.used is not None and cap.used >= cap.limit
    ]
    if not able:
        waits.append(pool_problem(matrix.executors, route.pool, probe.engine, route.required_labels) or
                     f"no executor of pool {route.pool} is online now")  # fmt: skip
    return Simulation(probe, route, able, applying, waits)
