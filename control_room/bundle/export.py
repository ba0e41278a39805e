"""Export: the live configuration of an org written back as a bundle directory in canonical form.

Canonical form: ``bundle.yaml`` (the org), one file per section (``routing.yaml``, ``caps.yaml``,
``schedules.yaml``, ``alerts.yaml``, ``promotion_gates.yaml``, ``settings.yaml``, ...), one file per job template
(``job_templates/<project>/<name>.yaml``) and one per dashboard (``dashboards/<project>/<name>.yaml``);
items in canonical order; fields at their default left out. Exporting, deploying the export and exporting
again gives byte-identical files.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from pydantic import BaseModel

from control_room.bundle import store
from control_room.bundle.loader import YAML_SUFFIXES
from control_room.bundle.models import Bundle, sorted_bundle

if TYPE_CHECKING:  # ruamel is imported by the calls that write YAML, not on a replica's start-up path
    from ruamel.yaml import YAML

HEADER = (
    "# Exported by `lakehouse bundle export` from the live control plane; validate with `lakehouse bundle validate`.\n"
)

# Section -> file (job templates get one file each).
SECTION_FILES: dict[str, str] = {
    "routing_rules": "routing.yaml",
    "caps": "caps.yaml",
    "schedules": "schedules.yaml",
    "alert_rules": "alerts.yaml",
    "promotion_gates": "promotion_gates.yaml",
    "alert_channels": "alert_channels.yaml",
    "service_principals": "access.yaml",
    "groups": "access.yaml",
    "access_policies": "access.yaml",
    "serving_endpoints": "serving.yaml",
    "settings": "settings.yaml",
}


class ExportTargetNotEmpty(RuntimeError):
    """The export directory already holds YAML files and --force was not given."""


def _yaml() -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold long strings: diffs stay one line per value
    return yaml


def _literal_multiline(value: Any) -> Any:
    """Multi-line strings (SQL, scripts) as ``|`` blocks, which read and diff like the source."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        return {k: _literal_multiline(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal_multiline(v) for v in value]
    if isinstance(value, str) and "\n" in value and not value.endswith((" ", "\t")):
        return LiteralScalarString(value)
    if isinstance(value, str) and "*" in value and "\n" not in value:
        # Cron expressions and globs read better quoted (and a leading * would be a YAML alias).
        return DoubleQuotedScalarString(value)
    return value


def item_document(item: BaseModel) -> dict[str, Any]:
    """An item as written to a file: JSON types, default-valued fields left out."""
    return dict(item.model_dump(mode="json", exclude_defaults=True))


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of one bundle file (block style, key order kept)."""
    buffer = io.StringIO()
    _yaml().dump(_literal_multiline(data), buffer)
    return buffer.getvalue()


def render_bundle(bundle: Bundle) -> dict[str, str]:
    """The files of the canonical bundle: relative path -> text."""
    ordered = sorted_bundle(bundle)
    files: dict[str, str] = {"bundle.yaml": HEADER + dump_yaml({"org": ordered.org})}
    documents: dict[str, dict[str, Any]] = {}  # several sections may share a file (access.yaml)
    for section, filename in SECTION_FILES.items():
        items = getattr(ordered, section)
        if items:
            documents.setdefault(filename, {})[section] = [item_document(item) for item in items]
    for filename, document in documents.items():
        files[filename] = HEADER + dump_yaml(document)
    for template in ordered.job_templates:
        path = f"job_templates/{template.project}/{template.name}.yaml"
        files[path] = HEADER + dump_yaml({"job_templates": [item_document(template)]})
    for dashboard in ordered.dashboards:
        path = f"dashboards/{dashboard.project}/{dashboard.name}.yaml"
        files[path] = HEADER + dump_yaml({"dashboards": [item_document(dashboard)]})
    return files


def write_bundle(files: dict[str, str], directory: Path, *, force: bool = False) -> list[Path]:
    """Write rendered files under ``directory``; with ``force``, YAML files already there are replaced."""
    directory = Path(directory)
    existing = (
        [p for p in directory.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES] if directory.exists() else []
    )
    if existing and not force:
        raise ExportTargetNotEmpty(
            f"{directory} already holds {len(existing)} YAML file(s) (e.g. {existing[0]}): export into an empty "
            "directory, or pass --force to replace its YAML files"
        )
    for path in existing:
        path.unlink()
    for folder in sorted({p.parent for p in existing}, key=lambda p: len(p.parts), reverse=True):
        if folder != directory and folder.exists() and not any(folder.iterdir()):
            shutil.rmtree(folder)
    written: list[Path] = []
    for relative, text in sorted(files.items()):
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def live_bundle(conn: psycopg.Connection[Any], org_slug: str) -> Bundle:
    """The org's live configuration as a bundle (``UnknownOrg`` when there is no such org)."""
    return store.read_live(conn, store.org_directory(conn, org_slug)).bundle


def export_bundle(conn: psycopg.Connection[Any], org_slug: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Write the org's live configuration as a canonical bundle under ``directory``."""
    return write_bundle(render_bundle(live_bundle(conn, org_slug)), directory, force=force)
