"""Lineage from dbt's artifacts: datasets and edges of the project graph, in the contract's report shape.

Datasets are the relations of sources, seeds, models and snapshots (named database.schema.identifier
in the warehouse's OpenLineage namespace) and the project's exposures (namespace ``dbt://<project>``).
Edges follow ``depends_on.nodes`` between them; tests, analyses and hooks are not datasets. Columns
come from the catalog when one was generated (names, types, order) with the descriptions of the
project's YAML, else from the YAML alone. A dataset's metadata names the dbt tests on it (``tests``:
unique ids), so the catalog can show their latest results from the run's node events, and the joins its
``relationships`` tests vouch for (``relationships``: column, ``to`` dataset name, field). Once
``trace_columns`` has read the compiled SQL, edges carry their column-level lineage (``column_lineage``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executor_agent.engines.dbt_support.column_lineage import ColumnPairs, dialect_for, trace_columns
from executor_agent.engines.spark_support.lineage import DatasetRef

DATASET_TYPES = ("source", "seed", "model", "snapshot")
EXPOSURE = "exposure"


class ProjectGraph:
    """The datasets of a manifest (and catalog) and the edges between them."""

    def __init__(self, manifest: Mapping[str, Any], catalog: Mapping[str, Any] | None, *, namespace: str) -> None:
        self.manifest = manifest
        self.catalog = catalog or {}
        self.namespace = namespace
        self.project_name = str(manifest.get("metadata", {}).get("project_name", "dbt"))
        self.nodes: dict[str, Mapping[str, Any]] = {}
        for unique_id, node in manifest.get("nodes", {}).items():
            if node.get("resource_type") in DATASET_TYPES:
                self.nodes[unique_id] = node
        self.nodes.update(manifest.get("sources", {}))
        self.exposures: dict[str, Mapping[str, Any]] = dict(manifest.get("exposures", {}))
        # The data tests on each dataset (a test's attached node, else the datasets it depends on).
        self.tests: dict[str, list[str]] = {}
        for unique_id, node in manifest.get("nodes", {}).items():
            if node.get("resource_type") != "test":
                continue
            attached = node.get("attached_node")
            targets = [attached] if attached else node.get("depends_on", {}).get("nodes", [])
            for target in targets:
                if target in self.nodes:
                    self.tests.setdefault(target, []).append(unique_id)
        # dbt relationships tests: child node -> (column, parent node, parent column, test id), the joins the
        # project vouches for (the catalog offers them to NL→SQL).
        self.relationships: dict[str, list[tuple[str, str, str, str]]] = {}
        for unique_id, node in manifest.get("nodes", {}).items():
            found = self._relationship(node)
            if node.get("resource_type") == "test" and found is not None:
                child, column, parent, field = found
                self.relationships.setdefault(child, []).append((column, parent, field, unique_id))
        # Column lineage per (node, upstream node), filled by trace_columns from the compiled SQL.
        self.column_edges: dict[str, dict[str, ColumnPairs]] = {}

    def _relationship(self, node: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
        """(child node, column, parent node, parent column) of a ``relationships`` test, else None."""
        meta = node.get("test_metadata") or {}
        if meta.get("name") != "relationships":
            return None
        kwargs = meta.get("kwargs") or {}
        child = node.get("attached_node")
        parents = [n for n in node.get("depends_on", {}).get("nodes", []) if n != child and n in self.nodes]
        column, field = kwargs.get("column_name") or node.get("column_name"), kwargs.get("field")
        if child not in self.nodes or len(parents) != 1 or not column or not field:
            return None
        return str(child), str(column), parents[0], str(field)

    def trace_columns(self, compiled: Mapping[str, str | None], *, adapter: str) -> None:
        """Column-level lineage of each compiled model and snapshot, its SQL qualified with the columns of
        its upstream datasets (see column_lineage.py). ``compiled`` maps unique ids to compiled SQL; a node
        missing there falls back to the manifest's ``compiled_code``."""
        dialect = dialect_for(adapter)
        for unique_id, node in self.nodes.items():
            if node.get("resource_type") not in ("model", "snapshot"):
                continue
            sql = compiled.get(unique_id) or node.get("compiled_code")
            parents = self.upstream_of(unique_id)
            if not sql or not parents:
                continue
            relations = {self.relation_parts(p): p for p in parents}
            upstream = {parts: [c["name"] for c in self.columns(p)] for parts, p in relations.items()}
            traced = trace_columns(str(sql), upstream=upstream, dialect=dialect)
            edges = {relations[parts]: pairs for parts, pairs in traced.items() if pairs}
            if edges:
                self.column_edges[unique_id] = edges

    def relation_parts(self, unique_id: str) -> tuple[str, ...]:
        """A dataset node's relation as (database, schema, identifier), the parts its name joins."""
        return tuple(self.dataset_id(unique_id).name.split("."))

    def dataset_id(self, unique_id: str) -> DatasetRef:
        if unique_id in self.exposures:
            return DatasetRef(f"dbt://{self.project_name}", self.exposures[unique_id]["name"])
        node = self.nodes[unique_id]
        identifier = node.get("identifier") if node.get("resource_type") == "source" else None
        identifier = identifier or node.get("alias") or node["name"]
        parts = [part for part in (node.get("database"), node.get("schema"), identifier) if part]
        return DatasetRef(self.namespace, ".".join(parts))

    def upstream_of(self, unique_id: str) -> list[str]:
        """The datasets a node reads, in manifest order, without repeats."""
        node = self.exposures.get(unique_id) or self.nodes.get(unique_id) or {}
        seen: list[str] = []
        for parent in node.get("depends_on", {}).get("nodes", []):
            if parent in self.nodes and parent not in seen:
                seen.append(parent)
        return seen

    def columns(self, unique_id: str) -> list[dict[str, str]]:
        node = self.nodes.get(unique_id, {})
        described = {name.lower(): col for name, col in node.get("columns", {}).items()}
        section = "sources" if node.get("resource_type") == "source" else "nodes"
        cataloged = self.catalog.get(section, {}).get(unique_id, {}).get("columns", {})
        out: list[dict[str, str]] = []
        if cataloged:
            for col in sorted(cataloged.values(), key=lambda c: c.get("index") or 0):
                entry = {"name": str(col["name"]), "type": str(col.get("type") or "")}
                doc = described.get(str(col["name"]).lower(), {})
                if doc.get("description") or col.get("comment"):
                    entry["description"] = str(doc.get("description") or col.get("comment"))
                out.append({k: v for k, v in entry.items() if v})
            return out
        for col in node.get("columns", {}).values():
            entry = {
                "name": str(col["name"]),
                "type": str(col.get("data_type") or ""),
                "description": col.get("description") or "",
            }
            out.append({k: v for k, v in entry.items() if v})
        return out

    def owner(self, unique_id: str) -> str | None:
        if unique_id in self.exposures:
            owner = self.exposures[unique_id].get("owner") or {}
            return owner.get("email") or owner.get("name") or None
        node = self.nodes[unique_id]
        for meta in (node.get("config", {}).get("meta", {}), node.get("meta", {}), node.get("source_meta", {})):
            if isinstance(meta, Mapping) and meta.get("owner"):
                return str(meta["owner"])
        return None

    def dataset(self, unique_id: str) -> dict[str, Any]:
        """One dataset of the report (see control_room/api/lineage.py DatasetReport)."""
        ref = self.dataset_id(unique_id)
        is_exposure = unique_id in self.exposures
        node = self.exposures[unique_id] if is_exposure else self.nodes[unique_id]
        metadata: dict[str, Any] = {"unique_id": unique_id, "package_name": node.get("package_name")}
        if is_exposure:
            metadata.update(type=node.get("type"), url=node.get("url"), maturity=node.get("maturity"))
        else:
            metadata.update(
                materialized=node.get("config", {}).get("materialized"),
                relation_name=node.get("relation_name"),
                path=node.get("original_file_path"),
            )
        if node.get("tags"):
            metadata["tags"] = list(node["tags"])
        if self.tests.get(unique_id):
            metadata["tests"] = sorted(self.tests[unique_id])
        if self.relationships.get(unique_id):
            metadata["relationships"] = [
                {"column": column, "to": self.dataset_id(parent).name, "field": field, "test": test}
                for column, parent, field, test in sorted(self.relationships[unique_id])
            ]
        out: dict[str, Any] = {
            **ref.as_payload(),
            "kind": EXPOSURE if is_exposure else node["resource_type"],
            "description": node.get("description") or "",
            "metadata": {k: v for k, v in metadata.items() if v is not None},
        }
        if not is_exposure:
            out["columns"] = self.columns(unique_id)
        owner = self.owner(unique_id)
        if owner:
            out["owner"] = owner
        return out

    def report(self) -> dict[str, list[dict[str, Any]]]:
        """Datasets and edges of the whole project graph. Two nodes on one relation (a source declared
        over a seed's table) are one dataset: the first in (nodes, sources, exposures) order."""
        datasets: dict[DatasetRef, dict[str, Any]] = {}
        for unique_id in sorted(self.nodes, key=lambda u: (self.nodes[u]["resource_type"] == "source", u)):
            datasets.setdefault(self.dataset_id(unique_id), self.dataset(unique_id))
        for unique_id in sorted(self.exposures):
            datasets.setdefault(self.dataset_id(unique_id), self.dataset(unique_id))
        edges: dict[tuple[DatasetRef, DatasetRef], dict[str, Any]] = {}
        for child in sorted(self.nodes) + sorted(self.exposures):
            downstream = self.dataset_id(child)
            for parent in self.upstream_of(child):
                upstream = self.dataset_id(parent)
                if upstream != downstream:
                    edge = edges.setdefault(
                        (upstream, downstream),
                        {"upstream": upstream.as_payload(), "downstream": downstream.as_payload(), "job_name": child},
                    )
                    pairs = self.column_edges.get(child, {}).get(parent)
                    if pairs and "column_lineage" not in edge:
                        edge["column_lineage"] = [{"upstream_column": u, "downstream_column": d} for u, d in pairs]
        return {"datasets": list(datasets.values()), "edges": list(edges.values())}
