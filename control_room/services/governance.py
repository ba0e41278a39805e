"""GitOps drift of an org's governance: what each bundle deploy made live is recorded (ops.bundle_deployments),
and the live configuration is compared with it, so edits made in the pages, API or CLI since show as drift
with an "Export as bundle" to bring the repository up to date. Also the org's bundle-only lock.

The bundle code (control_room/bundle/) works on synchronous connections; async callers run these in a thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from control_room.bundle.export import render_bundle
from control_room.bundle.models import Bundle, sorted_bundle
from control_room.bundle.plan import Plan, diff_bundles
from control_room.bundle.store import org_directory, read_live
from control_room.db.rows import scalar
from control_room.services.errors import NotFound


def bundle_content(bundle: Bundle) -> tuple[dict[str, Any], str]:
    """A bundle's canonical JSON and its SHA-256."""
    content = sorted_bundle(bundle).model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return content, digest


def record_deployment(conn: psycopg.Connection[Any], *, org_id: uuid.UUID, bundle: Bundle, actor: str) -> bool:
    """Remember what a deploy made live; a new row only when it differs from the last one (True when added)."""
    content, digest = bundle_content(bundle)
    last = conn.execute(
        "select content_sha256 from ops.bundle_deployments where org_id = %s order by deployed_at desc, id limit 1",
        (org_id,),
    ).fetchone()
    if last is not None and last[0] == digest:
        return False
    conn.execute(
        "insert into ops.bundle_deployments (org_id, content, content_sha256, deployed_by) values (%s, %s, %s, %s)",
        (org_id, Jsonb(content), digest, actor),
    )
    return True


@dataclass(frozen=True)
class Drift:
    """The live configuration of an org against its last deployed bundle."""

    org: str
    deployed_at: datetime | None
    deployed_by: str
    plan: Plan  # changes from the deployed bundle to the live configuration
    bundle_only: bool
    bundle_location: str

    @property
    def has_drift(self) -> bool:
        """True when something was changed outside the bundle since it was deployed."""
        return self.deployed_at is not None and not self.plan.is_empty

    def lines(self) -> list[str]:
        """One line per changed row: ``~ routing_rules dbt-models: position 20 -> 35``."""
        symbol = {"create": "+", "update": "~", "delete": "-"}
        out = []
        for change in self.plan.changes:
            fields = ", ".join(f"{f.field} {_short(f.old)} -> {_short(f.new)}" for f in change.fields)
            out.append(f"{symbol[change.action]} {change.section} {change.key}" + (f": {fields}" if fields else ""))
        return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _deployed_bundle(content: dict[str, Any]) -> Bundle:
    try:
        return Bundle.model_validate(content)
    except ValidationError:
        # Recorded by an older deploy whose models have since changed: compare what still reads.
        return Bundle.model_construct(None, **content)


def drift(conn: psycopg.Connection[Any], *, org: str) -> Drift:
    """The org's drift: live configuration versus the last recorded deploy (empty plan when none)."""
    directory = org_directory(conn, org)
    live = read_live(conn, directory).bundle
    row = conn.execute(
        "select content, deployed_at, deployed_by from ops.bundle_deployments where org_id = %s "
        "order by deployed_at desc, id limit 1",
        (directory.org_id,),
    ).fetchone()
    lock = conn.execute(
        "select bundle_only, bundle_location from ops.governance_settings where org_id = %s", (directory.org_id,)
    ).fetchone()
    plan = diff_bundles(live, _deployed_bundle(row[0])) if row else Plan(org)
    return Drift(
        org=org,
        deployed_at=row[1] if row else None,
        deployed_by=row[2] if row else "",
        plan=plan,
        bundle_only=bool(lock and lock[0]),
        bundle_location=lock[1] if lock else "",
    )


def export_zip(conn: psycopg.Connection[Any], *, org: str) -> bytes:
    """The org's live configuration as a canonical bundle folder in a zip (``<org>-bundle/...``)."""
    files = render_bundle(read_live(conn, org_directory(conn, org)).bundle)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in sorted(files.items()):
            archive.writestr(f"{org}-bundle/{path}", text)
    return buffer.getvalue()


async def set_lock(
    conn: psycopg.AsyncConnection[Any], *, org_id: uuid.UUID, bundle_only: bool, location: str, by: str | None
) -> None:
    """Lock (or unlock) the org's routing and caps to its bundle (org admins; audited in SQL)."""
    await conn.execute("select ops.set_governance_lock(%s, %s, %s, %s)", (org_id, bundle_only, location, by))


async def org_slug(conn: psycopg.AsyncConnection[Any], *, org_id: uuid.UUID) -> str:
    """The slug of an org the caller can see (NotFound otherwise)."""
    slug = await scalar(conn, "select slug from ops.orgs where id = %s", (org_id,))
    if slug is None:
        raise NotFound(f"org {org_id} does not exist or is not yours", field="org")
    return str(slug)


async def lock_state(conn: psycopg.AsyncConnection[Any], *, org_id: uuid.UUID) -> tuple[bool, str]:
    """Whether the org's routing and caps are locked to its bundle, and where that bundle lives."""
    cur = await conn.execute(
        "select bundle_only, bundle_location from ops.governance_settings where org_id = %s", (org_id,)
    )
    row = await cur.fetchone()
    return (bool(row[0]), str(row[1])) if row else (False, "")


async def is_org_admin(conn: psycopg.AsyncConnection[Any], *, org_id: uuid.UUID) -> bool:
    """Whether the caller may edit the org's routing and caps (the SQL functions check it again)."""
    return bool(
        await scalar(conn, "select coalesce(ops.org_role(%s), '') = 'admin' or not ops.caller_is_end_user()", (org_id,))
    )


async def resolve_org(conn: psycopg.AsyncConnection[Any], org: str | None) -> uuid.UUID:
    """The org named by slug or id whose governance the caller reads (its members, project members included);
    with none given, the caller's only such org."""
    found = await scalar(conn, "select ops.governance_org_id(%s)", (org,))
    if found is None:
        what = f'no org "{org}" that you belong to' if org else "you belong to several orgs (or none)"
        raise NotFound(f"{what}: name one with org=<slug>", field="org")
    return uuid.UUID(str(found))
