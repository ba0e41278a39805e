"""The rules table of the Alerts page: the org's rules with last fired time and incident counts; enable/disable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import reflex as rx
from psycopg import AsyncConnection

from control_room.services import alerts
from control_room.state.alerts.rows import rule_row
from control_room.state.base import SessionState, SignedIn, as_user, problem_text, signed_in_event
from control_room.state.rows import AlertRuleRow


def can_edit_rule(signed: SignedIn, project_id: uuid.UUID | str | None) -> bool:
    """Org admins edit every rule of their org; project admins edit their project's (RLS decides for real)."""
    return signed.is_org_admin or (project_id is not None and signed.role_on(project_id) == "admin")


class RulesState(SessionState):
    """Rules of the selected project's org."""

    rules: rx.Field[list[AlertRuleRow]] = rx.field(default_factory=list)
    can_create: rx.Field[bool] = rx.field(False)
    error: rx.Field[str] = rx.field("")
    loaded: rx.Field[bool] = rx.field(False)

    @signed_in_event
    async def load(self, signed: SignedIn) -> None:
        async def read(conn: AsyncConnection, signed: SignedIn) -> list[dict[str, Any]]:
            assert signed.project_id is not None  # _read_as_user reads only for a user with a project
            return await alerts.list_rules(conn, org_ids=[await alerts.project_org(conn, signed.project_id)])

        reading = await self._read_as(signed, read)
        async with self:
            names = {p.id: p.name for p in self.projects}
            self.rules = [rule_row(r, names, can_edit_rule(signed, r["project_id"])) for r in reading.value or []]
            self.error, self.loaded = reading.error, True
            self.can_create = can_edit_rule(signed, signed.project_id)

    @signed_in_event
    async def set_enabled(self, signed: SignedIn, rule_id: str, enabled: bool) -> AsyncIterator[Any]:
        """Enable or disable a rule (its admins; refused in SQL for anyone else)."""
        try:
            async with as_user(signed.principal) as conn:
                changed = await alerts.update_rule(conn, rule_id=uuid.UUID(rule_id), fields={"enabled": enabled})
            error = "" if changed else "Only the rule's admins may change it."
        except Exception as exc:
            error = problem_text(exc)
        async with self:
            self.error = error
        yield RulesState.load
