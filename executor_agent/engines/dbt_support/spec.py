"""The dbt task spec: what a ``dbt`` task may say, checked up front with errors naming the field.

A task of engine ``dbt`` carries, beside the common task fields::

    command        build | run | test | seed | snapshot | compile | "docs generate"   (required)
    project        {"path": "examples/dbt"}  or  {"artifact": {<artifact reference>}}     (required;
                   a plain string is a path). A relative path is looked up in the attempt's work
                   folder first, then in the agent's working directory.
    select, exclude  a selector string or a list of them
    vars           mapping of dbt vars; the run's params are added on top (a param wins)
    full_refresh   bool (build, run, seed, compile)
    target         the output of ``profile`` to use (default: the profile's ``target``, else the only output)
    threads        int
    profile        one output ({"type": "duckdb", "path": "shop.duckdb"}) or {"target": ..., "outputs": {...}};
                   any value may be {"env": "NAME"}: read from the agent's environment at run time and
                   handed to dbt as a secret (never written to profiles.yml, events or artifacts).
                   Default: dbt-duckdb on the agent's persistent warehouse, the DuckDB engine's file
                   (LAKEHOUSE_EXECUTOR_DUCKDB_DATABASE); a relative DuckDB path lies in its data dir.
    state          {"manifest_path": "..."} or {"artifact": {<artifact reference>}}: the manifest of an
                   earlier run, for ``state:modified+`` selection
    defer          bool: resolve unselected refs against ``state`` (needs state)
    docs           bool: also generate the catalog (``docs generate``) after the command, for column types
    openlineage_namespace  job namespace of emitted OpenLineage events (default lakehouse/<project>)

An artifact reference names an earlier task's artifact: {"task_key": "build", "name": "manifest.json"}
for a task of the same run, plus "run_id" for a task of another run of the same project.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from executor_agent.engines.base import EngineError

COMMANDS = ("build", "run", "test", "seed", "snapshot", "compile", "docs generate")
FULL_REFRESH_COMMANDS = ("build", "run", "seed", "compile")
EXECUTING_COMMANDS = ("build", "run", "seed", "snapshot")
KNOWN_FIELDS = {
    # common task fields (api TaskSpec, and the runner's resource caps), not the engine's business
    "key", "engine", "depends_on", "timeout_s", "max_attempts", "retry_backoff_s", "pool", "labels",
    "required_labels", "description", "max_memory_mb", "cpu_time_s",
    # dbt fields
    "command", "project", "select", "exclude", "vars", "full_refresh", "target", "threads", "profile", "state",
    "defer", "docs", "openlineage_namespace",
}  # fmt: skip
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
    def parse(cls, value: Any, field_name: str) -> ArtifactReference:
        if not isinstance(value, Mapping):
            raise _invalid(field_name, 'must be {"task_key": ..., "name": ...} (and "run_id" for another run)')
        unknown = set(value) - {"task_key", "name", "run_id"}
        if unknown:
            raise _invalid(f"{field_name}.{sorted(unknown)[0]}", "unknown field of an artifact reference")
        for required in ("task_key", "name"):
            if not isinstance(value.get(required), str) or not value[required]:
                raise _invalid(f"{field_name}.{required}", "is required: a non-empty string")
        run_id = value.get("run_id")
        if run_id is not None:
            try:
                run_id = str(uuid.UUID(str(run_id)))
            except ValueError as exc:
                raise _invalid(f"{field_name}.run_id", "must be a run id (a UUID)") from exc
        return cls(task_key=value["task_key"], name=value["name"], run_id=run_id)


@dataclass(frozen=True)
class Source:
    """Where something comes from: a local path or an earlier task's artifact."""

    path: str | None = None
    artifact: ArtifactReference | None = None

    @classmethod
    def parse(cls, value: Any, field_name: str, path_key: str) -> Source:
        if isinstance(value, str) and path_key == "path":
            value = {"path": value}
        if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in (path_key, "artifact"):
            raise _invalid(field_name, f'must be {{"{path_key}": "..."}} or {{"artifact": {{...}}}}')
        if path_key in value:
            path = value[path_key]
            if not isinstance(path, str) or not path.strip():
                raise _invalid(f"{field_name}.{path_key}", "must be a non-empty path")
            return cls(path=path)
        return cls(artifact=ArtifactReference.parse(value["artifact"], f"{field_name}.artifact"))

    def resolve_path(self, work_dir: Path, field_name: str) -> Path:
        """An absolute path as is; a relative one in the work folder, else in the agent's directory."""
        assert self.path is not None
        candidate = Path(self.path).expanduser()
        tried = [candidate] if candidate.is_absolute() else [work_dir / candidate, Path.cwd() / candidate]
        for path in tried:
            if path.exists():
                return path.resolve()
        raise _invalid(field_name, f"{self.path} does not exist (looked in {', '.join(str(p) for p in tried)})")


def _selectors(value: Any, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise _invalid(field_name, "must be a selector string or a list of non-empty strings")
    return tuple(i.strip() for i in items)


def _bool(spec: Mapping[str, Any], name: str) -> bool:
    value = spec.get(name, False)
    if not isinstance(value, bool):
        raise _invalid(name, "must be true or false")
    return value


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
        """Check the task's spec; the run's params become dbt vars (over the spec's ``vars``)."""
        unknown = sorted(set(spec) - KNOWN_FIELDS)
        if unknown:
            raise _invalid(unknown[0], f"unknown field of a dbt task (known: {', '.join(sorted(KNOWN_FIELDS))})")
        command = spec.get("command")
        if command not in COMMANDS:
            raise _invalid("command", f"must be one of {', '.join(COMMANDS)}; got {command!r}")
        if "project" not in spec:
            raise _invalid("project", 'is required: {"path": "<dbt project folder>"} or {"artifact": {...}}')
        dbt_vars = spec.get("vars", {})
        if not isinstance(dbt_vars, Mapping):
            raise _invalid("vars", "must be an object of dbt vars")
        full_refresh = _bool(spec, "full_refresh")
        if full_refresh and command not in FULL_REFRESH_COMMANDS:
            raise _invalid("full_refresh", f"applies to {', '.join(FULL_REFRESH_COMMANDS)}, not to {command}")
        target = spec.get("target")
        if target is not None and (not isinstance(target, str) or not target):
            raise _invalid("target", "must be the name of an output of the profile")
        threads = spec.get("threads")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64
        ):
            raise _invalid("threads", "must be an integer from 1 to 64")
        profile = spec.get("profile", DEFAULT_PROFILE)
        if not isinstance(profile, Mapping):
            raise _invalid("profile", 'must be an output such as {"type": "duckdb", "path": "..."} or {"outputs": ...}')
        state = Source.parse(spec["state"], "state", "manifest_path") if spec.get("state") is not None else None
        defer = _bool(spec, "defer")
        if defer and state is None:
            raise _invalid("defer", "needs state: the manifest of the run to defer to")
        namespace = spec.get("openlineage_namespace")
        if namespace is not None and (not isinstance(namespace, str) or not namespace.strip()):
            raise _invalid("openlineage_namespace", "must be a non-empty string")
        return cls(
            command=command,
            project=Source.parse(spec["project"], "project", "path"),
            profile=profile,
            select=_selectors(spec.get("select"), "select"),
            exclude=_selectors(spec.get("exclude"), "exclude"),
            vars={**dbt_vars, **params},
            full_refresh=full_refresh,
            target=target,
            threads=threads,
            state=state,
            defer=defer,
            docs=_bool(spec, "docs"),
            openlineage_namespace=namespace,
        )
