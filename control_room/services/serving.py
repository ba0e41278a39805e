"""Model serving endpoints: create, traffic changes (canary, promote, roll back), stop, tokens, replicas, stats.

An endpoint's replicas are service tasks (engine ``serving``) created by the SQL functions of
20261207000400_serving_endpoints.sql; this module only calls them and reads the tables. Reads go through
the caller's connection, so RLS decides who sees what. The invocations proxy (services/serving_proxy.py)
reads its routing table with :func:`routing_table` and authenticates per-endpoint tokens here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows, first_dict_row, model_rows, returned_id, scalar
from control_room.services.auth import TOKEN_TOUCH_SECONDS, hash_token, new_token
from control_room.services.errors import Invalid, NotFound, Unauthorized, found_row

if TYPE_CHECKING:  # the SQLModel mirror takes a while to import (the CLI's serving commands): loaded on use
    from control_room.db.tables import ServingEndpointRevision

SERVING_TOKEN_PREFIX = "lhe_"
BUCKET_SECONDS = 10
# The upper bounds (ms) of the latency histogram's buckets; the last bucket is everything above.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000,
)  # fmt: skip

_ENDPOINT_COLUMNS = (
    "e.id, e.project_id, p.slug as project, x.name as environment, e.name, e.status, e.replicas, e.pool, "
    "e.max_memory_mb, e.revision, e.created_by, e.created_at, e.updated_at, e.stopped_at, r.routes"
)
_ENDPOINT_FROM = (
    "from ops.serving_endpoints e join ops.projects p on p.id = e.project_id "
    "join ops.environments x on x.id = e.environment_id "
    "join ops.serving_endpoint_revisions r on r.endpoint_id = e.id and r.revision = e.revision"
)
_REPLICA_SELECT = (
    "select s.id, s.endpoint_id, s.model_name, s.model_version, s.replica_index, s.run_id, s.task_id, s.restarts, "
    "s.address, s.pid, s.reported_at, s.created_at, t.status as task_status, t.attempt, t.lease_expires_at, "
    "t.error as last_error, "
    "(t.status in ('claimed', 'running') and s.address is not null and s.address_attempt = t.attempt "
    " and t.lease_expires_at > now()) as healthy "
    "from ops.serving_replicas s join ops.tasks t on t.id = s.task_id "
)


def _routes(routes: Any) -> list[dict[str, Any]]:
    value = json.loads(routes) if isinstance(routes, str) else routes
    return [dict(route) for route in value or []]


async def create_endpoint(
    conn: AsyncConnection,
    *,
    project_id: uuid.UUID,
    environment: str,
    name: str,
    model: str,
    version: str,
    replicas: int = 1,
    pool: str | None = None,
    max_memory_mb: int | None = None,
    by: str | None = None,
) -> uuid.UUID:
    """A new endpoint serving ``model`` version ``version`` at 100 %, its replicas queued (operators)."""
    return await returned_id(
        conn,
        "select ops.create_serving_endpoint(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (project_id, environment, name, model, version, replicas, pool, max_memory_mb, by),
    )


async def resolve_endpoint(conn: AsyncConnection, *, endpoint: str, project_id: uuid.UUID | None) -> uuid.UUID:
    """An endpoint's id from its id, or from its name within ``project_id``; NotFound when not visible."""
    try:
        endpoint_id: uuid.UUID | None = uuid.UUID(endpoint)
    except ValueError:
        endpoint_id = None
    if endpoint_id is not None:
        cur = await conn.execute("select id from ops.serving_endpoints where id = %s", (endpoint_id,))
    elif project_id is not None:
        cur = await conn.execute(
            "select id from ops.serving_endpoints where project_id = %s and name = %s", (project_id, endpoint)
        )
    else:
        raise Invalid("name the endpoint by its id, or give its project", field="project")
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"endpoint {endpoint} does not exist (or you cannot see it)", field="endpoint")
    return uuid.UUID(str(row[0]))


async def list_endpoints(conn: AsyncConnection, *, project_id: uuid.UUID) -> list[dict[str, Any]]:
    """The project's endpoints with their traffic split and how many replicas are healthy."""
    endpoints = await dict_rows(
        conn, f"select {_ENDPOINT_COLUMNS} {_ENDPOINT_FROM} where e.project_id = %s order by e.name", (project_id,)
    )
    replicas = await dict_rows(
        conn, _REPLICA_SELECT + "where s.project_id = %s and s.retired_at is null", (project_id,)
    )
    return [_with_replicas(e, [r for r in replicas if r["endpoint_id"] == e["id"]]) for e in endpoints]


def _health(endpoint: dict[str, Any], replicas: list[dict[str, Any]]) -> str:
    if endpoint["status"] == "stopped":
        return "stopped"
    healthy = sum(1 for r in replicas if r["healthy"])
    if healthy == 0:
        return "starting" if any(r["task_status"] in ("queued", "claimed", "running") for r in replicas) else "down"
    return "healthy" if healthy == len(replicas) else "degraded"


def _with_replicas(endpoint: dict[str, Any], replicas: list[dict[str, Any]]) -> dict[str, Any]:
    routes = _routes(endpoint["routes"])
    return {
        **endpoint,
        "routes": routes,
        "health": _health(endpoint, replicas),
        "replicas_healthy": sum(1 for r in replicas if r["healthy"]),
        "replicas_total": len(replicas),
        "replica_list": sorted(replicas, key=lambda r: (r["model_name"], r["model_version"], r["replica_index"])),
    }


async def get_endpoint(conn: AsyncConnection, *, endpoint_id: uuid.UUID) -> dict[str, Any]:
    """One endpoint: traffic split, replicas with health, and its revisions (newest first, as table rows)."""
    endpoint = await first_dict_row(
        conn, f"select {_ENDPOINT_COLUMNS} {_ENDPOINT_FROM} where e.id = %s", (endpoint_id,)
    )
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id} does not exist (or you cannot see it)", field="endpoint")
    replicas = await dict_rows(
        conn, _REPLICA_SELECT + "where s.endpoint_id = %s and s.retired_at is null", (endpoint_id,)
    )
    return {**_with_replicas(endpoint, replicas), "revisions": await _revisions(conn, endpoint_id)}


async def _revisions(conn: AsyncConnection, endpoint_id: uuid.UUID) -> list[ServingEndpointRevision]:
    """The endpoint's last 50 traffic splits, newest first."""
    from control_room.db.tables import ServingEndpointRevision

    async with conn.cursor(row_factory=model_rows(ServingEndpointRevision)) as cur:
        await cur.execute(
            "select * from ops.serving_endpoint_revisions where endpoint_id = %s order by revision desc limit 50",
            (endpoint_id,),
        )
        return list(await cur.fetchall())


async def _apply(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    action: str,
    routes: list[dict[str, Any]] | None,
    *,
    replicas: int | None = None,
    expected_revision: int | None = None,
    by: str | None = None,
) -> int:
    revision = await scalar(
        conn,
        "select ops.update_serving_endpoint(%s, %s, %s::jsonb, %s, %s, %s)",
        (endpoint_id, action, json.dumps(routes) if routes is not None else None, replicas, expected_revision, by),
    )
    return int(revision)


async def canary(
    conn: AsyncConnection,
    *,
    endpoint_id: uuid.UUID,
    version: str,
    percent: int,
    model: str | None = None,
    expected_revision: int | None = None,
    by: str | None = None,
) -> int:
    """Send ``percent`` % of the traffic to a new version (the rest stays on the primary); returns the revision."""
    current = await get_endpoint(conn, endpoint_id=endpoint_id)
    primary = current["routes"][0]
    if not 1 <= percent <= 99:
        raise Invalid("a canary gets 1 to 99 % of the traffic; promote it to give it all", field="percent")
    canary_route = {"model": model or primary["model"], "version": str(version), "percent": percent}
    if canary_route["model"] == primary["model"] and canary_route["version"] == primary["version"]:
        raise Invalid(f"version {version} is already the endpoint's primary version", field="version")
    routes = [{**primary, "percent": 100 - percent}, canary_route]
    return await _apply(conn, endpoint_id, "canary", routes, expected_revision=expected_revision, by=by)


async def promote(
    conn: AsyncConnection, *, endpoint_id: uuid.UUID, expected_revision: int | None = None, by: str | None = None
) -> int:
    """Give the canary 100 % of the traffic (its primary's replicas are retired)."""
    current = await get_endpoint(conn, endpoint_id=endpoint_id)
    if len(current["routes"]) < 2:
        raise Invalid("the endpoint has no canary to promote; start one first", field="action")
    routes = [{**current["routes"][1], "percent": 100}]
    return await _apply(conn, endpoint_id, "promote", routes, expected_revision=expected_revision, by=by)


async def rollback(
    conn: AsyncConnection, *, endpoint_id: uuid.UUID, expected_revision: int | None = None, by: str | None = None
) -> int:
    """Go back to the last revision that served one version other than what serves now (ends a canary)."""
    current = await get_endpoint(conn, endpoint_id=endpoint_id)
    now = {(r["model"], r["version"]) for r in current["routes"]}
    single_now = len(now) == 1
    for revision in current["revisions"][1:]:
        routes = revision.routes
        if len(routes) != 1:
            continue
        served = (routes[0]["model"], routes[0]["version"])
        if single_now and served in now:
            continue
        if not single_now and served not in now:
            continue  # from a canary, go back to its primary
        return await _apply(conn, endpoint_id, "rollback", routes, expected_revision=expected_revision, by=by)
    raise Invalid("there is no earlier version to roll back to", field="action")


async def set_running(
    conn: AsyncConnection, *, endpoint_id: uuid.UUID, running: bool, replicas: int | None = None, by: str | None = None
) -> int:
    """Stop the endpoint (its replicas are cancelled) or start it again on its current traffic split."""
    return await _apply(conn, endpoint_id, "start" if running else "stop", None, replicas=replicas, by=by)


async def scale(conn: AsyncConnection, *, endpoint_id: uuid.UUID, replicas: int, by: str | None = None) -> int:
    """Replicas per served version (more are started, extra ones retired)."""
    return await _apply(conn, endpoint_id, "update", None, replicas=replicas, by=by)


async def delete_endpoint(conn: AsyncConnection, *, endpoint_id: uuid.UUID, by: str | None = None) -> None:
    """Delete the endpoint (operators): its replicas' runs are cancelled, its tokens, revisions and stats go
    with it, and the audit log keeps its name and last traffic split."""
    await conn.execute("select ops.delete_serving_endpoint(%s, %s)", (endpoint_id, by))


# Executor side -------------------------------------------------------------------------------------


async def report_replica(
    conn: AsyncConnection, *, task_id: uuid.UUID, lease_token: uuid.UUID, address: str, pid: int | None
) -> dict[str, Any]:
    """The agent says where a replica listens (lease-fenced)."""
    row = await first_dict_row(
        conn,
        "select endpoint, model_name, model_version from ops.report_serving_replica(%s, %s, %s, %s::integer)",
        (task_id, lease_token, address, pid),
    )
    assert row is not None
    return {"endpoint": row["endpoint"], "model": row["model_name"], "version": row["model_version"]}


async def restart_replicas(conn: AsyncConnection) -> int:
    """The restart policy: new runs for live replicas whose task ended for good; how many were started."""
    return int(await scalar(conn, "select ops.restart_serving_replicas()"))


# Tokens ----------------------------------------------------------------------------------------------


async def create_token(conn: AsyncConnection, *, endpoint_id: uuid.UUID, name: str, by: str | None = None) -> str:
    """A new bearer token for the endpoint's invocations; returned once, stored as its hash."""
    token = new_token(SERVING_TOKEN_PREFIX)
    await conn.execute(
        "select ops.create_serving_token(%s, %s, %s, %s, %s)",
        (endpoint_id, name, token[:12], hash_token(token), by),
    )
    return token


async def revoke_token(conn: AsyncConnection, *, endpoint_id: uuid.UUID, name: str, by: str | None = None) -> None:
    await conn.execute("select ops.revoke_serving_token(%s, %s, %s)", (endpoint_id, name, by))


async def list_tokens(conn: AsyncConnection, *, endpoint_id: uuid.UUID) -> list[dict[str, Any]]:
    return list(
        await dict_rows(
            conn,
            "select name, token_prefix, created_by, created_at, last_used_at, revoked_at from ops.serving_tokens "
            "where endpoint_id = %s order by created_at",
            (endpoint_id,),
        )
    )


@dataclass(frozen=True)
class TokenGrant:
    """What a serving token opens: one endpoint."""

    endpoint_id: uuid.UUID
    endpoint: str
    project_id: uuid.UUID


# The endpoint a live serving token opens; its last_used_at moves to now only when unset or older than the
# touch interval (auth.TOKEN_TOUCH_SECONDS, as for user tokens): a row update and a WAL flush per re-check of
# a token, by each API process, bought nothing the tokens page shows (it shows the minute).
SERVING_TOKEN_LOOKUP = """
with token as (
    select t.id, t.last_used_at, e.id as endpoint_id, e.name, e.project_id
    from ops.serving_tokens t join ops.serving_endpoints e on e.id = t.endpoint_id
    where t.token_hash = %(digest)s and t.revoked_at is null
), touched as (
    update ops.serving_tokens t set last_used_at = now() from token
    where t.id = token.id
      and (token.last_used_at is null or token.last_used_at < now() - make_interval(secs => %(touch)s))
)
select endpoint_id, name, project_id from token
"""


async def authenticate_token(conn: AsyncConnection, token: str) -> TokenGrant:
    """The endpoint a serving token belongs to (trusted connection), or Unauthorized."""
    if not token.startswith(SERVING_TOKEN_PREFIX):
        raise Unauthorized("send `Authorization: Bearer lhe_…`, a token of this endpoint (lakehouse serving token)")
    cur = await conn.execute(SERVING_TOKEN_LOOKUP, {"digest": hash_token(token), "touch": TOKEN_TOUCH_SECONDS})
    row = await cur.fetchone()
    if row is None:
        raise Unauthorized("the serving token is unknown or revoked")
    return TokenGrant(uuid.UUID(str(row[0])), str(row[1]), uuid.UUID(str(row[2])))


# Routing and stats (trusted connection: the proxy) ----------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One served version: its share of the traffic and the addresses of its healthy replicas."""

    model: str
    version: str
    percent: int
    addresses: tuple[str, ...]


async def routing_table(conn: AsyncConnection, *, endpoint_id: uuid.UUID) -> tuple[str, list[Route]]:
    """(status, routes) of an endpoint as the proxy uses them: healthy replicas only."""
    row = await found_row(
        conn,
        "select e.status, r.routes from ops.serving_endpoints e "
        "join ops.serving_endpoint_revisions r on r.endpoint_id = e.id and r.revision = e.revision "
        "where e.id = %s",
        (endpoint_id,),
        NotFound(f"endpoint {endpoint_id} does not exist", field="endpoint"),
    )
    replicas = await dict_rows(
        conn, _REPLICA_SELECT + "where s.endpoint_id = %s and s.retired_at is null", (endpoint_id,)
    )
    routes = []
    for route in _routes(row["routes"]):
        addresses = tuple(
            sorted(
                r["address"]
                for r in replicas
                if r["healthy"] and r["model_name"] == route["model"] and r["model_version"] == route["version"]
            )
        )
        routes.append(Route(route["model"], str(route["version"]), int(route["percent"]), addresses))
    return str(row["status"]), routes


async def record_requests(
    conn: AsyncConnection,
    *,
    endpoint_id: uuid.UUID,
    bucket_start: datetime,
    version: str,
    requests: int,
    errors: int,
    latency_ms_sum: float,
    histogram: list[int],
) -> None:
    await conn.execute(
        "select ops.record_serving_requests(%s, %s, %s, %s, %s, %s, %s)",
        (endpoint_id, bucket_start, version, requests, errors, latency_ms_sum, histogram),
    )


def percentile(histogram: list[int], fraction: float) -> float | None:
    """The latency (ms, a bucket's upper bound) under which ``fraction`` of the requests fell."""
    total = sum(histogram)
    if total == 0:
        return None
    wanted = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1] * 2
    return LATENCY_BOUNDS_MS[-1] * 2


async def request_stats(
    conn: AsyncConnection, *, endpoint_id: uuid.UUID, minutes: int = 30, now: datetime | None = None
) -> dict[str, Any]:
    """Per minute: requests, request rate, errors, error rate, latency p50/p95; and totals for the window."""
    until = now or datetime.now(UTC)
    since = until - timedelta(minutes=minutes)
    rows = await dict_rows(
        conn,
        "select date_trunc('minute', bucket_start) as minute, model_version, requests, errors, "
        "latency_hist as histogram from ops.serving_request_stats "
        "where endpoint_id = %s and bucket_start >= %s order by bucket_start",
        (endpoint_id, since),
    )
    by_minute: dict[datetime, dict[str, Any]] = {}
    total_hist = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    versions: dict[str, int] = {}
    for row in rows:
        entry = by_minute.setdefault(
            row["minute"], {"minute": row["minute"], "requests": 0, "errors": 0, "hist": [0] * len(total_hist)}
        )
        entry["requests"] += row["requests"]
        entry["errors"] += row["errors"]
        versions[row["model_version"]] = versions.get(row["model_version"], 0) + int(row["requests"])
        for index, count in enumerate(row["histogram"] or []):
            if index < len(total_hist):
                entry["hist"][index] += int(count)
                total_hist[index] += int(count)
    points = []
    for minute in sorted(by_minute):
        entry = by_minute[minute]
        points.append(
            {
                "minute": minute,
                "requests": entry["requests"],
                "requests_per_s": round(entry["requests"] / 60, 3),
                "errors": entry["errors"],
                "error_rate": round(entry["errors"] / entry["requests"], 4) if entry["requests"] else 0.0,
                "latency_p50_ms": percentile(entry["hist"], 0.5),
                "latency_p95_ms": percentile(entry["hist"], 0.95),
            }
        )
    requests = sum(p["requests"] for p in points)
    errors = sum(p["errors"] for p in points)
    return {
        "since": since,
        "until": until,
        "points": points,
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "latency_p50_ms": percentile(total_hist, 0.5),
        "latency_p95_ms": percentile(total_hist, 0.95),
        "requests_by_version": versions,
    }
