"""OpenLineage RunEvents (spec 2-0-2) for a dbt invocation, and their delivery to an OpenLineage endpoint.

Each executed model, seed and snapshot is an OpenLineage run: START at the node's start and COMPLETE
or FAIL at its end (ABORT when dbt skipped it because an upstream node or test failed), with its
upstream datasets as inputs and its relation as output (with the ``columnLineage`` facet when the
compiled SQL was traced, see column_lineage.py). The dbt task
itself is the parent run of them all (START when dbt started, COMPLETE or FAIL when it ended). Run
ids are derived from (task, attempt, node), so a re-sent report carries the same ids and the
control plane stores each event once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from executor_agent.engines.dbt_support.lineage import ProjectGraph

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_SCHEMA = f"{SPEC}#/$defs/RunEvent"
PRODUCER = "urn:lakehouse-control-room:executor-agent:dbt"
FACETS = "https://openlineage.io/spec/facets"
FACET_SCHEMAS = {
    "parent": f"{FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "processing_engine": f"{FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
    "errorMessage": f"{FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "jobType": f"{FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "sql": f"{FACETS}/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
    "job_documentation": f"{FACETS}/1-1-0/DocumentationJobFacet.json#/$defs/DocumentationJobFacet",
    "schema": f"{FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "dataSource": f"{FACETS}/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet",
    "documentation": f"{FACETS}/1-1-0/DocumentationDatasetFacet.json#/$defs/DocumentationDatasetFacet",
    "ownership": f"{FACETS}/1-0-1/OwnershipDatasetFacet.json#/$defs/OwnershipDatasetFacet",
    "columnLineage": f"{FACETS}/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
    "outputStatistics": f"{FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json"
    "#/$defs/OutputStatisticsOutputDatasetFacet",
}
RUN_NAMESPACE = uuid.UUID("6f1c3a52-6a43-4c1e-9a57-2d0f3c4b8e11")  # fixed: run ids are uuid5 under it
FAILED_STATUSES = ("error", "fail", "runtime error")


def _facet(kind: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMAS[kind], **fields}


def run_id_for(*parts: object) -> str:
    """A stable OpenLineage run id for the given identity (task, attempt, node)."""
    return str(uuid.uuid5(RUN_NAMESPACE, "/".join(str(p) for p in parts)))


@dataclass(frozen=True)
class ParentRun:
    """The dbt task as an OpenLineage run: its job names the task within the control-room project."""

    namespace: str
    job_name: str
    run_id: str

    def facet(self) -> dict[str, Any]:
        return _facet("parent", run={"runId": self.run_id}, job={"namespace": self.namespace, "name": self.job_name})


class RunEventBuilder:
    """Builds the RunEvents of one dbt invocation from its node records and the project graph."""

    def __init__(self, graph: ProjectGraph, parent: ParentRun, *, dbt_version: str, adapter: str) -> None:
        self.graph = graph
        self.parent = parent
        self.dbt_version = dbt_version
        self.adapter = adapter

    def _engine(self) -> dict[str, Any]:
        return _facet("processing_engine", version=self.dbt_version, name="dbt", openlineageAdapterVersion="2-0-2")

    def _dataset(self, unique_id: str, *, with_schema: bool) -> dict[str, Any]:
        ref = self.graph.dataset_id(unique_id)
        facets: dict[str, Any] = {"dataSource": _facet("dataSource", name=ref.namespace, uri=ref.namespace)}
        node = self.graph.nodes[unique_id]
        if with_schema:
            columns = self.graph.columns(unique_id)
            if columns:
                facets["schema"] = _facet(
                    "schema",
                    fields=[{k: v for k, v in c.items() if k in ("name", "type", "description")} for c in columns],
                )
            if node.get("description"):
                facets["documentation"] = _facet("documentation", description=node["description"])
            owner = self.graph.owner(unique_id)
            if owner:
                facets["ownership"] = _facet("ownership", owners=[{"name": owner}])
            fields = self._column_lineage(unique_id)
            if fields:
                facets["columnLineage"] = _facet("columnLineage", fields=fields)
        return {"namespace": ref.namespace, "name": ref.name, "facets": facets}

    def _column_lineage(self, unique_id: str) -> dict[str, Any]:
        """The columnLineage facet's fields: each output column and the upstream columns it comes from."""
        fields: dict[str, Any] = {}
        for parent, pairs in self.graph.column_edges.get(unique_id, {}).items():
            ref = self.graph.dataset_id(parent)
            for upstream_column, column in pairs:
                inputs = fields.setdefault(column, {"inputFields": []})["inputFields"]
                inputs.append({"namespace": ref.namespace, "name": ref.name, "field": upstream_column})
        return fields

    def _event(
        self,
        event_type: str,
        event_time: str,
        *,
        run_id: str,
        job_name: str,
        run_facets: dict[str, Any],
        job_facets: dict[str, Any],
        inputs: list[dict[str, Any]] | None = None,
        outputs: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return {
            "eventType": event_type,
            "eventTime": event_time,
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": {"runId": run_id, "facets": run_facets},
            "job": {"namespace": self.parent.namespace, "name": job_name, "facets": job_facets},
            "inputs": inputs or [],
            "outputs": outputs or [],
        }

    def task_events(
        self, *, started_at: str, finished_at: str | None, failed: bool | None, error: str | None
    ) -> list[dict[str, Any]]:
        """START (and, once finished, COMPLETE or FAIL) of the dbt task itself."""
        job_facets = {"jobType": _facet("jobType", processingType="BATCH", integration="DBT", jobType="JOB")}
        events = [
            self._event(
                "START",
                started_at,
                run_id=self.parent.run_id,
                job_name=self.parent.job_name,
                run_facets={"processing_engine": self._engine()},
                job_facets=job_facets,
            )
        ]
        if finished_at is not None:
            run_facets: dict[str, Any] = {"processing_engine": self._engine()}
            if failed and error:
                run_facets["errorMessage"] = _facet("errorMessage", message=error, programmingLanguage="SQL")
            events.append(
                self._event(
                    "FAIL" if failed else "COMPLETE",
                    finished_at,
                    run_id=self.parent.run_id,
                    job_name=self.parent.job_name,
                    run_facets=run_facets,
                    job_facets=job_facets,
                )
            )
        return events

    def node_events(self, node: Mapping[str, Any], *, compiled_code: str | None) -> list[dict[str, Any]]:
        """START and COMPLETE/FAIL/ABORT of one dataset node (model, seed or snapshot) dbt started."""
        unique_id = node["unique_id"]
        if unique_id not in self.graph.nodes or not node.get("started_at"):
            return []
        manifest_node = self.graph.nodes[unique_id]
        job_facets: dict[str, Any] = {
            "jobType": _facet(
                "jobType", processingType="BATCH", integration="DBT", jobType=str(node["resource_type"]).upper()
            )
        }
        if compiled_code:
            job_facets["sql"] = _facet("sql", query=compiled_code, dialect=self.adapter)
        if manifest_node.get("description"):
            job_facets["documentation"] = _facet("job_documentation", description=manifest_node["description"])
        run_id = run_id_for(self.parent.run_id, unique_id)
        inputs = [self._dataset(parent, with_schema=False) for parent in self.graph.upstream_of(unique_id)]
        output = self._dataset(unique_id, with_schema=True)
        common = {"run_id": run_id, "job_name": unique_id, "job_facets": job_facets, "inputs": inputs}
        parent = {"parent": self.parent.facet(), "processing_engine": self._engine()}
        events = [self._event("START", node["started_at"], run_facets=parent, outputs=[output], **common)]
        status = node.get("status")
        if status is None:
            return events  # still running when the report was made (a stopped invocation)
        run_facets = dict(parent)
        failed = status in FAILED_STATUSES
        if status == "skipped":
            # Every started run ends: a node skipped for an upstream failure is an aborted run.
            run_facets["errorMessage"] = _facet(
                "errorMessage",
                message=node.get("message") or "skipped: an upstream node failed",
                programmingLanguage="SQL",
            )
            events.append(
                self._event("ABORT", node.get("finished_at") or node["started_at"], run_facets=run_facets, **common)
            )
            return events
        if failed:
            run_facets["errorMessage"] = _facet(
                "errorMessage", message=node.get("message") or status, programmingLanguage="SQL"
            )
        finished = dict(output)
        if not failed and isinstance(node.get("rows_affected"), int) and node["rows_affected"] >= 0:
            finished["outputFacets"] = {"outputStatistics": _facet("outputStatistics", rowCount=node["rows_affected"])}
        events.append(
            self._event(
                "FAIL" if failed else "COMPLETE",
                node.get("finished_at") or node["started_at"],
                run_facets=run_facets,
                outputs=[finished],
                **common,
            )
        )
        return events


@dataclass(frozen=True)
class OpenLineageEndpoint:
    """An OpenLineage HTTP endpoint (``OPENLINEAGE_URL``, as the OpenLineage clients read it)."""

    url: str
    endpoint: str = "api/v1/lineage"
    api_key: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> OpenLineageEndpoint | None:
        url = env.get("OPENLINEAGE_URL", "").strip()
        if not url:
            return None
        return cls(
            url=url.rstrip("/"),
            endpoint=env.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage").strip("/"),
            api_key=env.get("OPENLINEAGE_API_KEY") or None,
        )

    def send(self, events: Sequence[Mapping[str, Any]], *, timeout_s: float = 10.0) -> list[str]:
        """POST each event in order; returns the problems (one per event not accepted), never raises."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        problems: list[str] = []
        target = f"{self.url}/{self.endpoint}"
        network_errors_in_a_row = 0
        with httpx.Client(timeout=timeout_s, headers=headers) as client:
            for index, event in enumerate(events):
                try:
                    response = client.post(target, json=event)
                except httpx.HTTPError as exc:
                    problems.append(f"{target}: {type(exc).__name__}: {exc}")
                    network_errors_in_a_row += 1
                    if network_errors_in_a_row == 3:
                        problems.append(
                            f"{target}: 3 network errors in a row; {len(events) - index - 1} events not sent"
                        )
                        break
                    continue
                network_errors_in_a_row = 0
                if response.status_code >= 300:
                    problems.append(f"HTTP {response.status_code} from {target}: {response.text[:200]}")
        return problems
