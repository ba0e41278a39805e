"""The plan: what deploying a bundle would change on the control plane, row by row and field by field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel

from control_room.bundle.models import SECTIONS, Bundle, JobTemplate, ProjectSettings, section_key

Action = Literal["create", "update", "delete"]
_SYMBOL: dict[str, str] = {"create": "+", "update": "~", "delete": "-"}
_VALUE_WIDTH = 100


class FieldChange(NamedTuple):
    """One field whose value differs: ``field`` is a path such as ``tasks[1].timeout_s``."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """One row to create, update or delete, named by its slug key (``project/name`` or ``name``)."""

    section: str
    key: str
    action: Action
    fields: tuple[FieldChange, ...] = ()
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """The change as a JSON object."""
        out: dict[str, Any] = {"section": self.section, "key": self.key, "action": self.action}
        if self.fields:
            out["fields"] = [{"field": f.field, "old": f.old, "new": f.new} for f in self.fields]
        if self.note:
            out["note"] = self.note
        return out


TargetOutcome = Literal["current", "not gated", "pending", "request", "requested", "promoted", "refused"]
_TARGET_SYMBOL: dict[str, str] = {
    "current": "=", "not gated": "=", "pending": "?", "request": "?", "requested": "?", "promoted": "+",
    "refused": "!",
}  # fmt: skip


@dataclass(frozen=True)
class TargetStep:
    """What deploying into a target environment does about one job template's version there.

    A gated environment never takes a version from a bundle directly: a version of the bundle that is
    not the one deployed there opens a promotion request instead (``request`` in a plan, ``requested``
    or ``promoted`` once deployed, ``refused`` with the reason when no request could be opened)."""

    job: str
    environment: str
    version: int
    deployed: int | None
    outcome: TargetOutcome
    gate: str | None = None
    request_id: str | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """The step as a JSON object."""
        out: dict[str, Any] = {
            "job": self.job, "environment": self.environment, "version": self.version, "deployed": self.deployed,
            "outcome": self.outcome, "gate": self.gate, "request_id": self.request_id,
        }  # fmt: skip
        if self.detail:
            out["detail"] = self.detail
        return out

    def render(self) -> str:
        deployed = f"v{self.deployed}" if self.deployed is not None else "nothing"
        what = {
            "current": f"v{self.version} is deployed already",
            "not gated": f"not gated: runs the latest version (v{self.version})",
            "pending": f"v{self.version} awaits promotion request {self.request_id} (deployed: {deployed})",
            "request": f"would open a promotion request for v{self.version} (gate {self.gate}; deployed: {deployed})",
            "requested": f"promotion request {self.request_id} opened for v{self.version} instead of deploying it "
            f"(gate {self.gate}; {deployed} runs until it is promoted)",
            "promoted": f"v{self.version} promoted through gate {self.gate} "
            f"(request {self.request_id}; was {deployed})",
            "refused": f"v{self.version} not requested: {self.detail} ({deployed} keeps running)",
        }[self.outcome]
        return f"  {_TARGET_SYMBOL[self.outcome]} {self.job}: {what}"


@dataclass(frozen=True)
class Plan:
    """Every change that makes the live configuration of ``org`` equal to the bundle; with a target
    environment, also what happens to each job's version there (``targets``)."""

    org: str
    changes: tuple[Change, ...] = field(default_factory=tuple)
    target: str | None = None
    targets: tuple[TargetStep, ...] = field(default_factory=tuple)

    @property
    def is_empty(self) -> bool:
        """True when the control plane already matches the bundle."""
        return not self.changes

    def counts(self) -> dict[str, int]:
        """Number of creates, updates and deletes."""
        return {action: sum(1 for c in self.changes if c.action == action) for action in ("create", "update", "delete")}

    def as_json(self) -> dict[str, Any]:
        """The plan as a JSON object (``lakehouse bundle plan --format json``)."""
        out: dict[str, Any] = {"org": self.org, "changes": [c.as_json() for c in self.changes], "counts": self.counts()}
        if self.target is not None:
            out["target"] = self.target
            out["targets"] = [step.as_json() for step in self.targets]
        return out

    def summary(self) -> str:
        """One line: ``Plan: 1 to create, 2 to update, 0 to delete.`` or the no-change sentence."""
        if self.is_empty:
            return f"No changes: the control plane of org {self.org} matches the bundle."
        counts = self.counts()
        return f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."

    def render(self) -> str:
        """Human-readable plan, grouped by section (what ``lakehouse bundle plan`` prints)."""
        lines: list[str] = []
        for section in SECTIONS:
            changes = [c for c in self.changes if c.section == section]
            if not changes:
                continue
            lines.append(f"{section}:")
            for change in changes:
                note = f"  ({change.note})" if change.note else ""
                lines.append(f"  {_SYMBOL[change.action]} {change.key}{note}")
                for item in change.fields:
                    if change.action == "update":
                        lines.append(f"      {item.field}: {_show(item.old)} -> {_show(item.new)}")
        lines.append(self.summary())
        if self.target is not None:
            lines.append(f"Target {self.target}:")
            lines += [step.render() for step in self.targets] or ["  (no job templates)"]
        return "\n".join(lines)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 3] + "..."


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Leaf-level differences between two JSON values; lists of different length change as a whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            child = f"{path}.{key}" if path else str(key)
            out.extend(field_changes(old.get(key), new.get(key), child))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(field_changes(a, b, f"{path}[{index}]"))
        return out
    if _same(old, new):
        return []
    return [FieldChange(path or "(value)", old, new)]


def _same(a: Any, b: Any) -> bool:
    # bool is an int in Python: True == 1 must still count as a change.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else bool(a == b)


def _dump(item: BaseModel) -> dict[str, Any]:
    return item.model_dump(mode="json")


def diff_bundles(
    desired: Bundle,
    live: Bundle,
    template_versions: Mapping[str, int] | None = None,
    dashboard_versions: Mapping[str, int] | None = None,
) -> Plan:
    """The changes from ``live`` to ``desired``.

    ``template_versions`` (``dashboard_versions``) maps each template (dashboard) key of the control plane,
    archived ones included, to its latest version number (for the notes on their changes).
    """
    versions = template_versions or {}
    dashboards = dashboard_versions or {}
    changes: list[Change] = []
    for section in SECTIONS:
        wanted = {section_key(section, item): item for item in getattr(desired, section)}
        current = {section_key(section, item): item for item in getattr(live, section)}
        if section == "settings":
            changes += _settings_changes(wanted, current)
            continue
        for key, item in wanted.items():
            if key not in current:
                note = ""
                if section == "job_templates":
                    # An archived template of the same name comes back; its version history goes on.
                    note = "restored from the archive" if key in versions else "version 1"
                elif section == "dashboards":
                    note = "restored from the archive" if key in dashboards else "version 1"
                changes.append(Change(section, key, "create", note=note))
                continue
            diffs = tuple(field_changes(_dump(current[key]), _dump(item)))
            if diffs:
                note = ""
                if section == "job_templates" and _new_version(current[key], item):
                    note = f"new version {versions.get(key, 0) + 1}"
                elif section == "serving_endpoints":
                    note = _endpoint_note(diffs)
                elif section == "dashboards":  # the definition is all a dashboard item holds besides its key
                    note = f"new version {dashboards.get(key, 0) + 1}"
                changes.append(Change(section, key, "update", diffs, note))
        for key in current:
            if key not in wanted:
                note = {
                    "job_templates": "archived: its versions are kept",
                    "caps": "its usage history (ops.cap_usage) is deleted with it",
                    "serving_endpoints": "its replicas stop; its revisions, tokens and request stats are deleted",
                    "dashboards": "archived: its versions are kept",
                }.get(section, "")
                changes.append(Change(section, key, "delete", note=note))
    return Plan(desired.org, tuple(changes))


def _settings_changes(wanted: Mapping[str, BaseModel], current: Mapping[str, BaseModel]) -> list[Change]:
    """Settings are never created or deleted (every project has them): a project missing on either side has
    the defaults there, so only updates come out, ``back to the defaults`` when the bundle no longer lists it."""
    changes: list[Change] = []
    for key in sorted({*wanted, *current}):
        old = current.get(key) or ProjectSettings(project=key)
        new = wanted.get(key) or ProjectSettings(project=key)
        diffs = tuple(field_changes(_dump(old), _dump(new)))
        if diffs:
            changes.append(Change("settings", key, "update", diffs, "" if key in wanted else "back to the defaults"))
    return changes


def _new_version(live: BaseModel, desired: BaseModel) -> bool:
    assert isinstance(live, JobTemplate)
    assert isinstance(desired, JobTemplate)
    return live.definition() != desired.definition()


# Fields of an endpoint its replicas' service tasks carry: changing one restarts them.
_REPLICA_FIELDS = ("pool", "max_memory_mb", "environment")


def _endpoint_note(diffs: tuple[FieldChange, ...]) -> str:
    changed = {f.field.split("[", 1)[0].split(".", 1)[0] for f in diffs}
    notes = []
    if "versions" in changed or "model" in changed:
        notes.append("new traffic split revision")
    if changed & set(_REPLICA_FIELDS):
        notes.append("its replicas restart")
    return "; ".join(notes)
