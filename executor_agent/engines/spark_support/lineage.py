"""Dataset names, columns and the ``lineage`` report payload for what Spark jobs and Delta operations write.

Datasets are named the OpenLineage way: a local path is namespace ``file`` with the absolute path
as name; ``scheme://authority/path`` is namespace ``scheme://authority`` with ``path`` as name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DatasetRef:
    """A dataset's identity in lineage."""

    namespace: str
    name: str

    def as_payload(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name}


@dataclass(frozen=True)
class Dataset:
    """A dataset with its columns (name, type) as reported to the control plane."""

    ref: DatasetRef
    columns: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def as_payload(self) -> dict[str, Any]:
        return {
            **self.ref.as_payload(),
            "kind": "table",
            "columns": [{"name": name, "type": type_} for name, type_ in self.columns],
        }


def resolve_location(location: str | Path, *, base: Path | None = None) -> str:
    """An absolute local path (relative ones against ``base`` or the working directory) or the URI unchanged."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        return text
    if text.startswith("file://"):
        text = urlsplit(text).path
    path = Path(text)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path.resolve())


def dataset_ref(location: str | Path) -> DatasetRef:
    """The lineage identity of a table or file location."""
    text = resolve_location(location)
    if "://" not in text:
        return DatasetRef("file", text)
    parts = urlsplit(text)
    return DatasetRef(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"))


def delta_type_name(type_json: Any) -> str:
    """A compact type name from a Delta schema type: ``long``, ``decimal(10,2)``, ``array<long>``, ``struct<a:int>``."""
    if isinstance(type_json, str):
        return type_json
    kind = type_json.get("type")
    if kind == "array":
        return f"array<{delta_type_name(type_json['elementType'])}>"
    if kind == "map":
        return f"map<{delta_type_name(type_json['keyType'])},{delta_type_name(type_json['valueType'])}>"
    if kind == "struct":
        inner = ",".join(f"{f['name']}:{delta_type_name(f['type'])}" for f in type_json.get("fields", []))
        return f"struct<{inner}>"
    return str(kind)


def delta_columns(schema_json: str) -> tuple[tuple[str, str], ...]:
    """Columns of a Delta schema given as its JSON (``DeltaTable.schema().to_json()``)."""
    schema = json.loads(schema_json)
    return tuple((f["name"], delta_type_name(f["type"])) for f in schema.get("fields", []))


def describe_location(location: str | Path, storage_options: Mapping[str, str] | None = None) -> Dataset:
    """The dataset at ``location`` with its columns: a Delta table's schema, a Parquet file or folder's
    schema, or no columns when nothing readable is there (yet)."""
    from deltalake import DeltaTable

    resolved = resolve_location(location)
    ref = dataset_ref(resolved)
    options = dict(storage_options) if storage_options else None
    if is_delta_table(resolved, options):
        table = DeltaTable(resolved, storage_options=options)
        return Dataset(ref, delta_columns(table.schema().to_json()))
    if "://" not in resolved and Path(resolved).exists():
        import pyarrow.dataset as ds

        try:
            schema = ds.dataset(resolved, format="parquet").schema
        except (OSError, ValueError):  # pyarrow raises ArrowInvalid (a ValueError) on non-Parquet files
            return Dataset(ref)
        return Dataset(ref, tuple((f.name, str(f.type)) for f in schema))
    return Dataset(ref)


def is_delta_table(location: str, storage_options: dict[str, str] | None = None) -> bool:
    """Whether a Delta table is at ``location`` (a file, or nothing, is not one)."""
    from deltalake import DeltaTable

    if "://" not in location:
        # delta-rs fails, rather than answering no, when the location is a file.
        return (Path(location) / "_delta_log").is_dir()
    try:
        return bool(DeltaTable.is_deltatable(location, storage_options=storage_options))
    except OSError:
        return False


def lineage_payload(
    *, outputs: Sequence[Dataset], inputs: Iterable[Dataset] = (), job_name: str | None = None
) -> dict[str, Any]:
    """The ``lineage`` report: every dataset once, and an edge from each input to each output
    (carrying ``job_name``, the Spark application or Delta operation, when given)."""
    inputs = list(inputs)
    datasets: dict[DatasetRef, Dataset] = {}
    for dataset in [*inputs, *outputs]:
        known = datasets.get(dataset.ref)
        if known is None or (not known.columns and dataset.columns):
            datasets[dataset.ref] = dataset
    edges = [
        {
            "upstream": source.ref.as_payload(),
            "downstream": target.ref.as_payload(),
            **({"job_name": job_name} if job_name else {}),
        }
        for target in outputs
        for source in inputs
        if source.ref != target.ref
    ]
    return {"datasets": [d.as_payload() for d in datasets.values()], "edges": edges}
