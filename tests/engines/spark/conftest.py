"""Fixtures of the Spark engine tests: harness task contexts whose lineage reports are checked against the
shape the control plane accepts, for one test or for the session's shared Spark runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from executor_agent.client import InvalidRequest
from tests.engines.harness import ContextFactory


def check_lineage_payload(payload: Mapping[str, Any]) -> None:
    """The shape POST /api/v1/tasks/{task_id}/lineage takes; ValueError naming the field otherwise."""

    def ref(value: Any, where: str) -> None:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object")
        for key in ("namespace", "name"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise ValueError(f"{where}.{key}: expected a non-empty string")

    datasets = payload.get("datasets")
    edges = payload.get("edges")
    if not isinstance(datasets, list) or not isinstance(edges, list):
        raise ValueError("datasets and edges: expected lists")
    for index, dataset in enumerate(datasets):
        ref(dataset, f"datasets[{index}]")
        if dataset.get("kind") != "table":
            raise ValueError(f"datasets[{index}].kind: expected 'table'")
        columns = dataset.get("columns")
        if not isinstance(columns, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
            for c in columns
        ):
            raise ValueError(f"datasets[{index}].columns: expected a list of {{name, type}}")
    for index, edge in enumerate(edges):
        ref(edge.get("upstream") if isinstance(edge, Mapping) else None, f"edges[{index}].upstream")
        ref(edge.get("downstream"), f"edges[{index}].downstream")


def checked_report(operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """Answers reports as the control plane would, refusing a lineage payload of the wrong shape."""
    if operation == "lineage":
        check_lineage_payload(payload)
        # And the control plane's own request model, so a drift between the two fails here.
        from control_room.api.lineage import LineageReport

        LineageReport.model_validate({"lease_token": str(uuid.uuid4()), **payload})
    return {"accepted": True}


def refused_report(operation: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """A control plane that refuses every report (422), as it would a report it cannot record."""
    raise InvalidRequest(f"the {operation} report was refused (test)", status=422)


HarnessFactory = ContextFactory


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ContextFactory]:
    """``harness(spec, limits=..., timeout_s=...)``: a fresh harness context under tmp_path."""
    with ContextFactory(tmp_path / "contexts", reporter=checked_report) as factory:
        yield factory


@pytest.fixture(scope="session")
def harness_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContextFactory]:
    """A harness context factory for session-scoped runs (one JVM start shared by several tests)."""
    with ContextFactory(tmp_path_factory.mktemp("spark-harness"), reporter=checked_report) as factory:
        yield factory
