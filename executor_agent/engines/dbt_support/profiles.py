"""profiles.yml from the task spec; secrets stay in the child's environment, never in a file.

A value ``{"env": "PG_PASSWORD"}`` becomes ``{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}`` in the
file and the variable is set for the dbt child only. dbt scrubs the values of ``DBT_ENV_SECRET_*``
variables from its logs, and the engine scrubs them again from every line and artifact it keeps.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from executor_agent.engines.base import EngineError
from executor_agent.engines.duckdb import DuckdbSettings, duckdb_namespace, resolve_database

PROFILE_NAME = "lakehouse"
SECRET_PREFIX = "DBT_ENV_SECRET_"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


@dataclass
class GeneratedProfile:
    """The profile written for one attempt, and what the child process needs besides the file."""

    path: Path
    target: str
    output: dict[str, Any]  # the chosen output with secrets replaced by env_var() references
    secret_env: dict[str, str] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        """Secret values to scrub from anything kept (longest first, so overlaps scrub fully)."""
        return sorted({v for v in self.secret_env.values() if v}, key=len, reverse=True)

    @property
    def adapter_type(self) -> str:
        return str(self.output.get("type", ""))


def _outputs(profile: Mapping[str, Any], target: str | None) -> tuple[dict[str, Any], str]:
    if "outputs" not in profile:
        if "type" not in profile:
            raise EngineError('spec.profile.type: name the dbt adapter, e.g. "duckdb" or "postgres"')
        name = target or "default"
        return {name: dict(profile)}, name
    outputs = profile["outputs"]
    unknown = set(profile) - {"outputs", "target"}
    if unknown:
        raise EngineError(f"spec.profile.{sorted(unknown)[0]}: a profile with outputs has only outputs and target")
    if not isinstance(outputs, Mapping) or not outputs:
        raise EngineError("spec.profile.outputs: must map output names to outputs")
    chosen = target or profile.get("target") or (next(iter(outputs)) if len(outputs) == 1 else None)
    if chosen is None:
        raise EngineError("spec.target: the profile has several outputs; say which one to use")
    if chosen not in outputs:
        raise EngineError(f"spec.target: {chosen!r} is not an output of the profile ({', '.join(map(str, outputs))})")
    for name, output in outputs.items():
        if not isinstance(output, Mapping) or "type" not in output:
            raise EngineError(f"spec.profile.outputs.{name}.type: name the dbt adapter")
    return {str(k): dict(v) for k, v in outputs.items()}, str(chosen)


def _with_secrets(value: Any, where: str, env: Mapping[str, str], secrets: dict[str, str]) -> Any:
    if isinstance(value, Mapping):
        if set(value) == {"env"}:
            name = value["env"]
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise EngineError(f"spec.{where}.env: must be an environment variable name")
            if name not in env:
                raise EngineError(f"spec.{where}: environment variable {name} is not set on this agent")
            child_name = name if name.startswith(SECRET_PREFIX) else SECRET_PREFIX + name
            secrets[child_name] = env[name]
            return '{{ env_var("' + child_name + '") }}'
        return {k: _with_secrets(v, f"{where}.{k}", env, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_secrets(v, f"{where}[{i}]", env, secrets) for i, v in enumerate(value)]
    return value


def write_profile(
    profile: Mapping[str, Any],
    *,
    target: str | None,
    env: Mapping[str, str],
    directory: Path,
    warehouse: DuckdbSettings,
) -> GeneratedProfile:
    """Write ``directory/profiles.yml`` (mode 0600) for the spec's profile. A DuckDB output without a
    path writes to the agent's persistent warehouse (``warehouse.database``, the file the DuckDB engine
    uses), a relative path lies in its data dir: never in the attempt's work folder, which is deleted,
    so a dataset keeps one identity across runs."""
    outputs, chosen = _outputs(profile, target)
    secrets: dict[str, str] = {}
    rendered: dict[str, Any] = {}
    for name, output in outputs.items():
        where = "profile" if "outputs" not in profile else f"profile.outputs.{name}"
        output = _with_secrets(output, where, env, secrets)
        if output.get("type") == "duckdb":
            database = output.get("path")
            text = str(database or "")
            if database is None or (
                text != ":memory:" and "{{" not in text and not text.startswith(("md:", "motherduck:"))
            ):
                resolved = Path(resolve_database(None if database is None else text, warehouse))
                # DuckDB creates the file but not its folder: a fresh warehouse location must just work.
                resolved.parent.mkdir(parents=True, exist_ok=True)
                output["path"] = str(resolved)
        rendered[name] = output
    directory.mkdir(parents=True, exist_ok=True)
    profiles_file = directory / "profiles.yml"
    text = yaml.safe_dump({PROFILE_NAME: {"target": chosen, "outputs": rendered}}, sort_keys=False)
    fd = os.open(profiles_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return GeneratedProfile(path=profiles_file, target=chosen, output=rendered[chosen], secret_env=secrets)


def dataset_namespace(output: Mapping[str, Any]) -> str:
    """The OpenLineage namespace of the warehouse an output points at (naming conventions of the spec:
    ``duckdb://<absolute file path>``, ``postgres://<host>:<port>``, ...)."""
    kind = str(output.get("type", "unknown"))
    if kind == "duckdb":
        return duckdb_namespace(str(output.get("path", ":memory:")))
    host = str(output.get("host", "localhost"))
    if "{{" in host:  # an env_var() reference: not a name anyone can match; keep the adapter only
        host = "env"
    port = output.get("port")
    authority = urllib.parse.quote(host, safe="") + (f":{port}" if port and "{{" not in str(port) else "")
    return f"{kind}://{authority}"
