"""Loads a bundle directory: every YAML file validated, merged, and cross-checked, with located errors.

``load_bundle(path)`` returns a ``LoadedBundle`` (the merged ``Bundle`` plus where each item came
from) or raises ``InvalidInput`` listing every problem as ``file:line: field.path: message``. The
checks here need no database; references to projects and environments are resolved by the plan.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from croniter import croniter
from pydantic import ValidationError

from control_room.bundle.models import (
    ALERT_KINDS_NEEDING_THRESHOLD,
    CAP_SCOPE_FIELDS,
    ENVIRONMENT_ORDER,
    SECTIONS,
    Bundle,
    BundleFile,
    JobTemplate,
    PromotionGate,
    Schedule,
    ServingEndpoint,
    TaskTemplate,
    section_key,
)
from control_room.bundle.source import (
    FieldPath,
    InvalidInput,
    Problem,
    YamlDocument,
    load_yaml,
    validate_document,
)
from control_room.specs.tasks import TaskSpec, spec_errors

MANIFEST = "bundle.yaml"
YAML_SUFFIXES = (".yaml", ".yml")
CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


@dataclass(frozen=True)
class Origin:
    """Where one bundle item is defined: its document and its path in that document."""

    document: YamlDocument
    path: FieldPath

    def problem(self, field_path: FieldPath, message: str) -> Problem:
        """A problem at ``field_path`` inside this item."""
        return self.document.problem((*self.path, *field_path), message)

    def describe(self) -> str:
        """``file:line`` of the item."""
        return f"{self.document.file}:{self.document.line_of(self.path)}"


@dataclass
class LoadedBundle:
    """A valid bundle and the origin of each item, keyed by (section, index in the merged section)."""

    root: Path
    bundle: Bundle
    manifest: YamlDocument
    origins: dict[tuple[str, int], Origin] = field(default_factory=dict)

    def origin(self, section: str, index: int) -> Origin:
        """Where item ``index`` of ``section`` was defined."""
        return self.origins[(section, index)]

    def items(self, section: str) -> Iterator[tuple[int, Any, Origin]]:
        """(index, item, origin) of every item of a section."""
        for index, item in enumerate(getattr(self.bundle, section)):
            yield index, item, self.origins[(section, index)]


def bundle_files(root: Path) -> list[Path]:
    """The bundle's YAML files under ``root``, sorted, hidden files and folders skipped."""
    found = [
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix in YAML_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it (clickable in editors), else as given:
    how problems and the supervisor's messages name files."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_bundle(root: Path) -> LoadedBundle:
    """Parse, validate, merge and cross-check the bundle at ``root`` (a directory, or one file)."""
    root = Path(root)
    if root.is_file():
        files, manifest_dir = [root], root.parent
    elif root.is_dir():
        files, manifest_dir = bundle_files(root), root
    else:
        raise InvalidInput([Problem(display_path(root), 1, "(document)", "no such bundle directory or file")])
    problems: list[Problem] = []
    parsed: list[tuple[YamlDocument, BundleFile]] = []
    for path in files:
        try:
            document = load_yaml(path, display_path(path))
            parsed.append((document, validate_document(document, BundleFile)))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    if problems:
        raise InvalidInput(problems)

    org: str | None = None
    org_origin: YamlDocument | None = None
    merged: dict[str, list[Any]] = {section: [] for section in SECTIONS}
    origins: dict[tuple[str, int], Origin] = {}
    for document, content in parsed:
        if content.org is not None:
            is_manifest = root.is_file() or (
                Path(document.file).name == MANIFEST and Path(document.file).resolve().parent == manifest_dir.resolve()
            )
            if not is_manifest:
                problems.append(document.problem(("org",), f"org belongs in {MANIFEST} at the top of the bundle"))
            elif org is None:
                org, org_origin = content.org, document
        for section in SECTIONS:
            for index, item in enumerate(getattr(content, section)):
                origins[(section, len(merged[section]))] = Origin(document, (section, index))
                merged[section].append(item)
    if org is None:
        where = display_path(manifest_dir / MANIFEST)
        problems.append(Problem(where, 1, "org", f"required: {MANIFEST} must name the org (org: <slug>)"))
        raise InvalidInput(problems)
    assert org_origin is not None
    loaded = LoadedBundle(root=manifest_dir, bundle=Bundle(org=org, **merged), manifest=org_origin, origins=origins)
    problems.extend(check_bundle(loaded))
    if problems:
        raise InvalidInput(problems)
    return loaded


# Cross-checks --------------------------------------------------------------------------------------


def check_bundle(loaded: LoadedBundle) -> list[Problem]:
    """Every problem that needs more than one item to see: duplicates, references, schedules, DAGs."""
    problems: list[Problem] = []
    problems += _duplicates(loaded)
    templates = {section_key("job_templates", t): t for t in loaded.bundle.job_templates}
    for _, template, origin in loaded.items("job_templates"):
        problems += _check_template(template, origin)
    for _, schedule, origin in loaded.items("schedules"):
        problems += _check_schedule(schedule, origin, templates)
    for _, cap, origin in loaded.items("caps"):
        for name in ("project", "environment", "pool", "engine"):
            needed = name in CAP_SCOPE_FIELDS[cap.scope]
            given = getattr(cap, name) is not None
            if needed and not given:
                problems.append(origin.problem((name,), f'required when scope is "{cap.scope}"'))
            elif given and not needed:
                problems.append(origin.problem((name,), f'not allowed when scope is "{cap.scope}"'))
    for _, rule, origin in loaded.items("alert_rules"):
        if rule.kind in ALERT_KINDS_NEEDING_THRESHOLD and rule.threshold is None:
            problems.append(origin.problem(("threshold",), f'required for kind "{rule.kind}" (seconds)'))
        if rule.match.template is not None:
            if rule.match.project is None:
                problems.append(origin.problem(("match", "project"), "required when match.template is given"))
            elif f"{rule.match.project}/{rule.match.template}" not in templates:
                problems.append(
                    origin.problem(
                        ("match", "template"), _unknown_template(rule.match.project, rule.match.template, templates)
                    )
                )
    for _, gate, origin in loaded.items("promotion_gates"):
        if ENVIRONMENT_ORDER.index(gate.from_environment) >= ENVIRONMENT_ORDER.index(gate.to_environment):
            problems.append(
                origin.problem(
                    ("to_environment",),
                    f'must come after from_environment "{gate.from_environment}" (dev -> staging -> prod)',
                )
            )
        if gate.template is not None and f"{gate.project}/{gate.template}" not in templates:
            problems.append(origin.problem(("template",), _unknown_template(gate.project, gate.template, templates)))
        problems += _check_gate_tasks(gate, origin)
    for _, endpoint, origin in loaded.items("serving_endpoints"):
        problems += _check_endpoint(endpoint, origin)
    return problems


def _check_endpoint(endpoint: ServingEndpoint, origin: Origin) -> list[Problem]:
    """A traffic split the control plane accepts: percents adding up to 100, two distinct versions."""
    problems: list[Problem] = []
    total = sum(v.percent for v in endpoint.versions)
    if total != 100:
        shares = " + ".join(str(v.percent) for v in endpoint.versions)
        problems.append(origin.problem(("versions",), f"traffic percents must add up to 100, got {shares} = {total}"))
    served = [(v.model or endpoint.model, v.version) for v in endpoint.versions]
    if len(set(served)) != len(served):
        model, version = served[0]
        message = f"{model} version {version} is served twice; a canary is another version (or another model)"
        problems.append(origin.problem(("versions", 1, "version"), message))
    return problems


def _check_gate_tasks(gate: PromotionGate, origin: Origin) -> list[Problem]:
    """A gate's check tasks are a run spec's tasks: each valid for its engine, keys unique, dependencies known."""
    problems: list[Problem] = []
    keys = [task.key for task in gate.check_tasks]
    for index, task in enumerate(gate.check_tasks):
        problems += _check_task_spec(task, index, origin, field="check_tasks")
        if task.key in keys[:index]:
            problems.append(origin.problem(("check_tasks", index, "key"), f'duplicate task key "{task.key}"'))
        for dep_index, dep in enumerate(task.depends_on):
            if dep not in keys or dep == task.key:
                problems.append(
                    origin.problem(("check_tasks", index, "depends_on", dep_index), f'unknown task key "{dep}"')
                )
    return problems


def _duplicates(loaded: LoadedBundle) -> list[Problem]:
    problems: list[Problem] = []
    for section in SECTIONS:
        seen: dict[str, Origin] = {}
        positions: dict[int, Origin] = {}
        for _, item, origin in loaded.items(section):
            key = section_key(section, item)
            if key in seen:
                problems.append(
                    origin.problem(("name",), f'duplicate: "{key}" is also defined at {seen[key].describe()}')
                )
            else:
                seen[key] = origin
            if section == "routing_rules":
                if item.position in positions:
                    first = positions[item.position]
                    problems.append(
                        origin.problem(
                            ("position",), f"duplicate position {item.position}: also used at {first.describe()}"
                        )
                    )
                else:
                    positions[item.position] = origin
    return problems


def _unknown_template(project: str, name: str, templates: dict[str, JobTemplate]) -> str:
    known = sorted(t.name for t in templates.values() if t.project == project)
    listed = ", ".join(known) if known else "none"
    return f'unknown job template "{name}" in project "{project}" (templates of the bundle there: {listed})'


def template_problems(template: JobTemplate, document: YamlDocument) -> list[Problem]:
    """The bundle's checks of one template defined at the top of ``document`` (the UI's job editor)."""
    return _check_template(template, Origin(document, ()))


def _check_template(template: JobTemplate, origin: Origin) -> list[Problem]:
    import jsonschema  # seconds of format-checker imports: paid by the paths that validate, not at start-up

    problems: list[Problem] = []
    try:
        validator_class = jsonschema.validators.validator_for(template.params_schema, jsonschema.Draft202012Validator)
        validator_class.check_schema(template.params_schema)
    except jsonschema.SchemaError as exc:
        path = ("params_schema", *exc.path)
        problems.append(origin.problem(path, f"not a valid JSON Schema: {exc.message}"))
    for index, task in enumerate(template.tasks):
        problems += _check_task_spec(task, index, origin)
    keys: dict[str, int] = {}
    for index, task in enumerate(template.tasks):
        if task.key in keys:
            problems.append(origin.problem(("tasks", index, "key"), f'duplicate task key "{task.key}"'))
        keys.setdefault(task.key, index)
    for index, task in enumerate(template.tasks):
        for dep_index, dep in enumerate(task.depends_on):
            if dep not in keys:
                problems.append(origin.problem(("tasks", index, "depends_on", dep_index), f'unknown task key "{dep}"'))
            elif dep == task.key:
                problems.append(
                    origin.problem(("tasks", index, "depends_on", dep_index), "a task cannot depend on itself")
                )
    cycle = _cycle(template)
    if cycle:
        problems.append(origin.problem(("tasks",), f"dependency cycle: {' -> '.join(cycle)}"))
    return problems


def _check_task_spec(task: TaskTemplate, index: int, origin: Origin, *, field: str = "tasks") -> list[Problem]:
    """The task as a run will carry it (config flattened into the task) against its engine's model."""
    common = task.model_dump(mode="json", exclude_none=True, exclude={"config"})
    try:
        TaskSpec.model_validate({**task.config, **common})
    except ValidationError as exc:
        problems = []
        for item in spec_errors(exc):
            path: list[str | int] = [int(p) if p.isdigit() else p for p in item["pointer"].split("/")[1:]]
            if not path or path[0] not in common:
                path = ["config", *path]
            problems.append(origin.problem((field, index, *path), item["message"]))
        return problems
    return []


def _cycle(template: JobTemplate) -> list[str]:
    """One dependency cycle among the template's tasks (as keys, first repeated at the end), or []."""
    graph = {task.key: [d for d in task.depends_on if d != task.key] for task in template.tasks}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(key: str) -> list[str]:
        state[key] = 1
        path.append(key)
        for dep in graph.get(key, []):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[key] = 2
        return []

    for key in graph:
        if state.get(key) is None:
            found = visit(key)
            if found:
                return found
    return []


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is not usable, or None when it is (five fields, or a macro)."""
    text = expression.strip()
    if text in CRON_MACROS:
        return None
    if len(text.split()) != 5:
        return 'must have five fields "minute hour day-of-month month day-of-week" (or be a macro such as "@daily")'
    if not croniter.is_valid(text):
        return f'"{expression}" is not a valid cron expression'
    return None


def timezone_problem(name: str) -> str | None:
    """Why a timezone name is unknown, or None."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f'"{name}" is not an IANA time zone name such as "UTC" or "Europe/Paris"'
    return None


def _check_schedule(schedule: Schedule, origin: Origin, templates: dict[str, JobTemplate]) -> list[Problem]:
    problems: list[Problem] = []
    reason = cron_problem(schedule.cron)
    if reason:
        problems.append(origin.problem(("cron",), reason))
    reason = timezone_problem(schedule.timezone)
    if reason:
        problems.append(origin.problem(("timezone",), reason))
    template = templates.get(f"{schedule.project}/{schedule.template}")
    if template is None:
        problems.append(
            origin.problem(("template",), _unknown_template(schedule.project, schedule.template, templates))
        )
        return problems
    import jsonschema  # see _check_template

    try:
        validator_class = jsonschema.validators.validator_for(template.params_schema, jsonschema.Draft202012Validator)
        validator = validator_class(template.params_schema)
        for error in sorted(validator.iter_errors(schedule.params), key=lambda e: list(e.absolute_path)):
            path = ("params", *error.absolute_path)
            problems.append(
                origin.problem(path, f'does not match job template "{template.name}" params_schema: {error.message}')
            )
    except jsonschema.SchemaError:
        pass  # reported on the template itself
    return problems
