"""The dbt task spec, read through the contract's generated ``DbtTaskSpec`` (fields, types, defaults and
descriptions are in contracts/lakehouse-executor.openapi.yaml), plus the checks JSON Schema cannot say.

``project`` and ``state`` name a local path or an earlier task's artifact (``{"task_key": "build", "name":
"manifest.json"}``, plus ``run_id`` for another run of the same project); a relative path is looked up in
the attempt's work folder first, then in the agent's working directory. ``profile`` values may be
``{"env": "NAME"}``: read from the agent's environment and handed to dbt as a secret. The run's params
become dbt vars (a param wins over the spec's ``vars``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor_agent.engines.base import EngineError
from executor_agent.engines.specs import typed_spec
from executor_agent.generated import contract

FULL_REFRESH_COMMANDS = ("build", "run", "seed", "compile")
EXECUTING_COMMANDS = ("build", "run", "seed", "snapshot")
DEFAULT_PROFILE: dict[str, Any] = {"type": "duckdb"}  # path: the agent's warehouse (dbt_support/profiles.py)


def _invalid(field_name: str, message: str) -> EngineError:
    return EngineError(f"spec.{field_name}: {message}")


@dataclass(frozen=True)
class ArtifactReference:
    """An earlier task's artifact: task ``task_key``'s artifact ``name``, in this run or in run ``run_id``
    of the same project (what the contract's fetchArtifact serves)."""

    task_key: str
    name: str
    run_id: str | None = None

    @classmethod
    def of(cls, reference: contract.ArtifactReference) -> ArtifactReference:
        run_id = str(uuid.UUID(reference.run_id)) if reference.run_id else None
        return cls(task_key=reference.task_key, name=reference.name, run_id=run_id)


@dataclass(frozen=True)
class Source:
    """Where something comes from: a local path or an earlier task's artifact."""

    path: str | None = None
    artifact: ArtifactReference | None = None

    @classmethod
    def of(
        cls, value: str | contract.DbtProjectPath | contract.DbtStateManifest | contract.DbtProjectArtifact
    ) -> Source:
        if isinstance(value, str):
            return cls(path=value)
        if isinstance(value, contract.DbtProjectPath):
            return cls(path=value.path)
        if isinstance(value, contract.DbtStateManifest):
            return cls(path=value.manifest_path)
        return cls(artifact=ArtifactReference.of(value.artifact))

    def resolve_path(self, work_dir: Path, field_name: str) -> Path:
        """An absolute path as is; a relative one in the work folder, else in the agent's directory."""
        assert self.path is not None
        candidate = Path(self.path).expanduser()
        tried = [candidate] if candidate.is_absolute() else [work_dir / candidate, Path.cwd() / candidate]
        for path in tried:
            if path.exists():
                return path.resolve()
        raise _invalid(field_name, f"{self.path} does not exist (looked in {', '.join(str(p) for p in tried)})")


def _selectors(value: str | list[str] | None, field_name: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else (value or [])
    if not all(item.strip() for item in items):
        raise _invalid(field_name, "selectors must be non-empty strings")
    return tuple(item.strip() for item in items)


@dataclass(frozen=True)
class DbtTaskSpec:
    """A validated dbt task."""

    command: str
    project: Source
    profile: Mapping[str, Any]
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    target: str | None = None
    threads: int | None = None
    state: Source | None = None
    defer: bool = False
    docs: bool = False
    openlineage_namespace: str | None = None

    @property
    def executes_nodes(self) -> bool:
        """Whether the command builds relations (and so emits OpenLineage runs)."""
        return self.command in EXECUTING_COMMANDS

    @classmethod
    def parse(cls, spec: Mapping[str, Any], params: Mapping[str, Any]) -> DbtTaskSpec:
        """Read the spec through the contract's DbtTaskSpec (errors name the field), then the checks JSON Schema
        cannot say; the run's params become dbt vars (over the spec's ``vars``)."""
        typed = typed_spec(contract.DbtTaskSpec, spec, key=str(spec.get("key") or "dbt"), engine="dbt")
        if typed.full_refresh and typed.command not in FULL_REFRESH_COMMANDS:
            raise _invalid("full_refresh", f"applies to {', '.join(FULL_REFRESH_COMMANDS)}, not to {typed.command}")
        if typed.defer and typed.state is None:
            raise _invalid("defer", "needs state: the manifest of the run to defer to")
        return cls(
            command=typed.command,
            project=Source.of(typed.project),
            profile=typed.profile if typed.profile is not None else DEFAULT_PROFILE,
            select=_selectors(typed.select, "select"),
            exclude=_selectors(typed.exclude, "exclude"),
            vars={**(typed.vars or {}), **params},
            full_refresh=bool(typed.full_refresh),
            target=typed.target,
            threads=typed.threads,
            state=Source.of(typed.state) if typed.state is not None else None,
            defer=bool(typed.defer),
            docs=bool(typed.docs),
            openlineage_namespace=typed.openlineage_namespace,
        )
