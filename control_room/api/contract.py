"""The wire contract file: export it from the served API, and diff the two (the drift check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI

from control_room.config import PROJECT_ROOT

# libyaml's loader (PyYAML's wheels carry it) reads the 580 kB contract 3x faster than the pure-Python one,
# to the same data; the file is still written by the pure-Python dumper, whose output the drift test pins.
FAST_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONTRACT_PATH = PROJECT_ROOT / "contracts" / "lakehouse-executor.openapi.yaml"
HEADER = (
    "# Lakehouse Control Room executor and client contract (OpenAPI 3.1), the wire source of truth.\n"
    "# Regenerate with `lakehouse contract export` after changing control_room/api; never edit by hand:\n"
    "# tests/contract/test_contract_drift.py fails when this file and the served API differ.\n"
)


def served_contract(app: FastAPI | None = None) -> dict[str, Any]:
    """The OpenAPI document the API serves."""
    if app is None:
        from control_room.api import api

        return api.openapi()
    return app.openapi()


def render(document: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


def export_contract(path: Path = CONTRACT_PATH, app: FastAPI | None = None) -> Path:
    """Write the served contract to the YAML file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(served_contract(app)), encoding="utf-8")
    return path


def load_contract(path: Path = CONTRACT_PATH) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_SAFE_LOADER)  # noqa: S506 (a safe loader)
    assert isinstance(loaded, dict)
    return loaded


def contract_diff(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences in paths, methods, parameters, request bodies, responses and schemas."""
    out: list[str] = []
    _diff(expected.get("paths", {}), actual.get("paths", {}), "paths", out)
    _diff(
        expected.get("components", {}).get("schemas", {}),
        actual.get("components", {}).get("schemas", {}),
        "components.schemas",
        out,
    )
    if expected.get("openapi") != actual.get("openapi"):
        out.append(f"openapi: {expected.get('openapi')!r} != {actual.get('openapi')!r}")
    return out


def _diff(expected: Any, actual: Any, where: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual), key=str):
            if key not in actual:
                out.append(f"{where}.{key}: in the contract file but not served")
            elif key not in expected:
                out.append(f"{where}.{key}: served but not in the contract file")
            else:
                _diff(expected[key], actual[key], f"{where}.{key}", out)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _diff(e, a, f"{where}[{i}]", out)
    elif expected != actual:
        out.append(f"{where}: {expected!r} in the file, {actual!r} served")
