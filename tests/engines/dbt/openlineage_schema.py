"""Validation of OpenLineage events against the official JSON Schema (spec 2-0-2 and its facet schemas).

The event is validated against ``OpenLineage.json`` (which admits a RunEvent, DatasetEvent or JobEvent);
each facet is validated against the facet schema that defines its key for where it sits (run, job,
dataset, input or output facets). Formats (uuid, date-time, uri) are checked too. A facet key that no
official schema defines is reported as well: the engine emits only standard facets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_DIR = Path(__file__).resolve().parents[2] / "data" / "openlineage"
MAIN_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


def _location(file_name: str) -> str:
    stem = file_name.removesuffix(".json")
    for suffix, location in (
        ("InputDatasetFacet", "input"),
        ("OutputDatasetFacet", "output"),
        ("DatasetFacet", "dataset"),
        ("RunFacet", "run"),
        ("JobFacet", "job"),
    ):
        if stem.endswith(suffix):
            return location
    # LineageFacet (a dataset facet of static lineage) is the one file without a location suffix.
    return "dataset"


@cache
def _schemas() -> tuple[Registry, dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
    main = json.loads((SPEC_DIR / "OpenLineage.json").read_text(encoding="utf-8"))
    resources = [(MAIN_ID, Resource.from_contents(main))]
    facets: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted((SPEC_DIR / "facets").glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
        for key in schema.get("properties", {}):
            facets.setdefault(_location(path.name), {})[key] = schema
    return Registry().with_resources(resources), main, facets


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    registry, _, _ = _schemas()
    return Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _facet_groups(event: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    yield "run", "run.facets", event.get("run", {}).get("facets", {})
    yield "job", "job.facets", event.get("job", {}).get("facets", {})
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for index, dataset in enumerate(event.get(side, [])):
            yield "dataset", f"{side}[{index}].facets", dataset.get("facets", {})
            yield ("input" if side == "inputs" else "output"), f"{side}[{index}].{extra}", dataset.get(extra, {})


def validation_errors(event: Mapping[str, Any]) -> list[str]:
    """Every way the event breaks the spec or a facet schema (empty when it is valid)."""
    _, main, facets = _schemas()
    # Against RunEvent itself for errors that say where; then against the whole document (which admits
    # exactly one of RunEvent, DatasetEvent and JobEvent) to be sure it is nothing else as well.
    run_event = {"$ref": f"{MAIN_ID}#/$defs/RunEvent"}
    errors = [f"event: {e.json_path}: {e.message}" for e in _validator(run_event).iter_errors(event)]
    if not errors:
        errors = [f"event: {e.json_path}: {e.message}" for e in _validator(main).iter_errors(event)]
    for location, where, group in _facet_groups(event):
        for key, facet in group.items():
            schema = facets.get(location, {}).get(key)
            if schema is None:
                errors.append(f"{where}.{key}: no official {location} facet has this key")
                continue
            errors += [
                f"{where}.{key}: {e.json_path}: {e.message}" for e in _validator(schema).iter_errors({key: facet})
            ]
    return errors
