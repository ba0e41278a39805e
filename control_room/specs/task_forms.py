"""The task form of the Submit dialog and the job editor, generated from each engine's task-spec schema.

Pure functions over a run spec (``{"name": ..., "tasks": [...]}``): the fields of an engine (its own
first, the common ones under "more"), the texts of a task, a text set back as a typed value, an engine
switched while the task keeps its identity and routing, and the problems of the whole spec keyed by
JSON pointer: the same validation the API runs at submit, so the form says before submit what the
server would refuse.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import ValidationError

from control_room.specs.forms import ParamField, form_fields, typed_value
from control_room.specs.tasks import ENGINES, TASK_SPEC_MODELS, ProcessFields, RunSpec, TaskBase, spec_errors

MODELS: dict[str, type[TaskBase]] = dict(zip(ENGINES, TASK_SPEC_MODELS, strict=True))
# Identity, dependencies, retries, routing, process limits and environment: under "more" in every form.
LONG_TEXT = frozenset({"sql", "command", "script", "description"})
COMMON = (frozenset(TaskBase.model_fields) | frozenset(ProcessFields.model_fields)) - {"key", "depends_on"}


@functools.cache
def _fields(engine: str) -> tuple[tuple[ParamField, ...], tuple[ParamField, ...]]:
    model = MODELS[engine]
    fields = form_fields(model.model_json_schema(), skip=frozenset({"engine"}))
    for f in fields:
        if f.kind == "string" and f.name in LONG_TEXT:
            f.kind = "text"  # a text area, in the editor's monospace
    # The key, then what the engine requires, then its other fields, each in the schema's order.
    main = tuple(sorted((f for f in fields if f.name not in COMMON), key=lambda f: (f.name != "key", not f.required)))
    more = tuple(f for f in fields if f.name in COMMON)
    return main, more


def engine_fields(engine: str) -> tuple[list[ParamField], list[ParamField]]:
    """(the key and the engine's own fields, the fields every task has) of an engine's form."""
    if engine not in MODELS:
        return [], []
    main, more = _fields(engine)
    return [ParamField(**vars(f)) for f in main], [ParamField(**vars(f)) for f in more]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def task_values(task: dict[str, Any], fields: list[ParamField]) -> dict[str, str]:
    """Each field's text for this task: what the task says, else "" (the schema's default applies)."""
    return {f.name: _text(task[f.name]) if f.name in task else "" for f in fields}


def set_field(task: dict[str, Any], field: ParamField, text: str) -> dict[str, Any]:
    """The task with ``field`` set from its text (an empty text removes it: the default applies).
    Raises ValueError saying what the text must be."""
    changed = dict(task)
    if text.strip() == "":
        changed.pop(field.name, None)
    else:
        changed[field.name] = typed_value(field, text)
    return changed


def example_task(engine: str) -> dict[str, Any]:
    """The engine's first published example (a valid starting point), or just the engine."""
    extra = MODELS[engine].model_config.get("json_schema_extra")
    samples = extra.get("examples") if isinstance(extra, dict) else None
    first = samples[0] if isinstance(samples, list) and samples else {}
    return {**first, "engine": engine} if isinstance(first, dict) else {"engine": engine}


def switch_engine(task: dict[str, Any], engine: str) -> dict[str, Any]:
    """The task on another engine: its key, dependencies and routing kept, the engine's example fields
    filled in, fields the new engine does not have dropped."""
    if engine not in MODELS:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    kept = {k: v for k, v in task.items() if k in TaskBase.model_fields}
    starter = {k: v for k, v in example_task(engine).items() if k not in TaskBase.model_fields}
    return {"key": task.get("key", engine), **kept, **starter, "engine": engine}


def new_task(tasks: list[Any], engine: str = "shell") -> dict[str, Any]:
    """A new task with a key no other task has, depending on the last one."""
    keys = {t.get("key") for t in tasks if isinstance(t, dict)}
    n = len(tasks) + 1
    while f"task{n}" in keys:
        n += 1
    last = tasks[-1].get("key") if tasks and isinstance(tasks[-1], dict) else None
    return switch_engine({"key": f"task{n}", **({"depends_on": [last]} if last else {})}, engine)


def spec_problems(spec: Any) -> dict[str, str]:
    """What the API would refuse in this run spec, by JSON pointer (``/tasks/0/command``); {} when valid."""
    try:
        RunSpec.model_validate(spec)
    except ValidationError as exc:
        return {item["pointer"]: item["message"] for item in spec_errors(exc)}
    return {}
