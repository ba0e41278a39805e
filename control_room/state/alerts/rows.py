"""Display rows of the Alerts page: rules, incidents and an incident's timeline, built from service rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control_room import routes
from control_room.db.tables import AlertDelivery, AlertIncidentEvent
from control_room.state import formatting
from control_room.state.rows import AlertRuleRow, IncidentRow, TimelineRow


def condition(rule: dict[str, Any]) -> str:
    """The rule's condition in a few words."""
    kind = rule["kind"]
    parts = {
        "run_duration": " or ".join(
            p for p in (f"> {rule['threshold']} s" if rule["threshold"] else "",
                        f"> {rule['factor']} x p95 of {rule['baseline_runs']} runs" if rule["factor"] else "") if p
        ),
        "queue_wait": f"queued > {rule['threshold']} s",
        "executor_offline": f"no heartbeat for {rule['threshold'] or 90} s",
        "cap_breach": f"refusal or >= {rule['cap_percent']} %" if rule["cap_percent"] else "refusal",
        "sla": f"no success by {rule['sla_time']} {rule['sla_timezone']}",
        "dataset_freshness": f"{rule['dataset_name']} older than {rule['threshold']} s",
        "event_match": f"{rule['event_type']} at {rule['event_level'] or 'any'} level",
    }  # fmt: skip
    return parts.get(kind, "")


def rule_row(rule: dict[str, Any], project_names: dict[str, str], editable: bool) -> AlertRuleRow:
    scope = project_names.get(str(rule["project_id"]), "a project") if rule["project_id"] else "whole org"
    if rule["match_environment"]:
        scope += f" · {rule['match_environment']}"
    if rule["match_pool"]:
        scope += f" · pool {rule['match_pool']}"
    return AlertRuleRow(
        id=str(rule["id"]), name=rule["name"], kind=rule["kind"], scope=scope, condition=condition(rule),
        severity=rule["severity"], notify=", ".join(rule["notify"]) or "members' bells", enabled=rule["enabled"],
        last_fired=formatting.timestamp(rule["last_fired_at"]) or "never",
        open_incidents=int(rule["open_incidents"]), incidents=int(rule["incidents"]), editable=editable,
    )  # fmt: skip


def incident_row(row: dict[str, Any]) -> IncidentRow:
    return IncidentRow(
        id=str(row["id"]), title=row["title"], summary=row["summary"], rule=row["rule_name"],
        subject=row["subject"], severity=row["severity"], state=row["state"], count=int(row["count"]),
        first_fired=formatting.timestamp(row["first_fired_at"]), last_fired=formatting.timestamp(row["last_fired_at"]),
        acked=f"{formatting.timestamp(row['acked_at'])} by {row['acked_by']}" if row["acked_at"] else "—",
        snoozed_until=formatting.timestamp(row["snoozed_until"]) or "—",
        resolved=formatting.timestamp(row["resolved_at"]) or "—",
        run_href=routes.run_detail(str(row["run_id"])) if row["run_id"] else "",
        escalation_level=int(row["escalation_level"]),
    )  # fmt: skip


EVENT_TONES = {"fired": "red", "refired": "red", "escalated": "crimson", "acked": "blue", "snoozed": "amber",
               "resolved": "grass", "muted": "gray"}  # fmt: skip
DELIVERY_TONES = {"sent": "grass", "pending": "amber", "dead": "red"}


def timeline_rows(events: list[AlertIncidentEvent], deliveries: list[AlertDelivery]) -> list[TimelineRow]:
    """Events (fired, acked, ...) and messages (e-mail, Slack, webhook) in time order."""
    lines: list[tuple[datetime, TimelineRow]] = []
    for event in events:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(event.detail.items()))
        lines.append((event.at, TimelineRow(
            formatting.timestamp(event.at), f"{event.kind} by {event.actor}", detail,
            EVENT_TONES.get(event.kind, "gray"))))  # fmt: skip
    for d in deliveries:
        when = d.sent_at or d.created_at
        state = d.state + (f" ({d.held_reason})" if d.held_reason and d.state == "pending" else "")
        detail = f"{state}, {d.attempts} attempt(s)" + (f": {d.last_error}" if d.last_error else "")
        lines.append((when, TimelineRow(formatting.timestamp(when), f"{d.channel} to {d.target}", detail,
                                        DELIVERY_TONES.get(d.state, "gray"))))  # fmt: skip
    return [line for _, line in sorted(lines, key=lambda pair: pair[0])]
