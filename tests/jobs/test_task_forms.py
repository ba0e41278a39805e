"""The task form's model: fields from each engine's schema, texts set back as typed values, engine
switches, the editor's YAML flattened for the form and written back, and the API's own problems."""

from __future__ import annotations

import pytest
import yaml

from control_room.services.job_editing import NEW_JOB_YAML, editor_spec, parse_template, with_spec_tasks
from control_room.specs.task_forms import (
    MODELS,
    engine_fields,
    new_task,
    set_field,
    spec_problems,
    switch_engine,
    task_values,
)
from control_room.specs.tasks import ENGINES


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_has_a_form_with_the_key_first_and_its_required_fields(engine: str) -> None:
    main, more = engine_fields(engine)
    assert main[0].name == "key" and main[0].required
    schema = MODELS[engine].model_json_schema()
    required = set(schema.get("required", [])) - {"engine"}
    assert required <= {f.name for f in main}
    assert {f.name for f in main} | {f.name for f in more} == set(schema["properties"]) - {"engine"}
    assert "max_attempts" in {f.name for f in more}


def test_fields_are_typed_from_the_schema() -> None:
    main, more = engine_fields("dbt")
    kinds = {f.name: f.kind for f in main + more}
    assert kinds["command"] == "enum" and kinds["threads"] == "integer" and kinds["full_refresh"] == "boolean"
    assert kinds["select"] == "json" and kinds["pool"] == "string"  # optionals read through anyOf [X, null]
    command = next(f for f in main if f.name == "command")
    assert "build" in command.options
    assert engine_fields("cobol") == ([], [])


def test_texts_become_typed_values_and_empty_texts_restore_the_default() -> None:
    main, more = engine_fields("duckdb")
    by_name = {f.name: f for f in main + more}
    task = {"key": "q", "engine": "duckdb", "sql": "select 1"}
    task = set_field(task, by_name["max_scan_bytes"], "1000")
    task = set_field(task, by_name["labels"], '["gpu"]')
    assert task["max_scan_bytes"] == 1000 and task["labels"] == ["gpu"]
    with pytest.raises(ValueError, match="whole number"):
        set_field(task, by_name["max_scan_bytes"], "1e3x")
    assert "max_scan_bytes" not in set_field(task, by_name["max_scan_bytes"], " ")
    assert task_values(task, main)["max_scan_bytes"] == "1000" and task_values(task, main)["output"] == ""


def test_switching_engine_keeps_identity_and_routing_and_starts_valid() -> None:
    task = {"key": "a", "engine": "shell", "command": "x", "depends_on": ["z"], "pool": "gpu", "env": {"A": "1"}}
    switched = switch_engine(task, "dbt")
    assert switched["key"] == "a" and switched["depends_on"] == ["z"] and switched["pool"] == "gpu"
    assert "env" not in switched and switched["engine"] == "dbt"
    for engine in ENGINES:
        spec = {"tasks": [{"key": "z", "engine": "shell", "command": "true"}, switch_engine(task, engine)]}
        assert spec_problems(spec) == {}, engine
    with pytest.raises(ValueError, match="unknown engine"):
        switch_engine(task, "cobol")


def test_new_tasks_get_fresh_keys_and_depend_on_the_last() -> None:
    tasks = [{"key": "task2"}, {"key": "b"}]
    added = new_task(tasks)
    assert added["key"] == "task3" and added["depends_on"] == ["b"]
    assert new_task([])["key"] == "task1" and "depends_on" not in new_task([])


def test_problems_are_the_apis_by_pointer() -> None:
    problems = spec_problems(
        {"tasks": [{"key": "a", "engine": "shell"}, {"key": "b", "engine": "cobol"}, {"key": "c", "engine": "dbt",
                                                                                      "threads": "4"}]}
    )  # fmt: skip
    assert problems["/tasks/0"].startswith("give exactly one of command, argv")
    assert "unknown engine 'cobol'" in problems["/tasks/1/engine"]
    assert "/tasks/2/threads" in problems and "/tasks/2/project" in problems


def test_the_editor_yaml_round_trips_through_the_form() -> None:
    spec = editor_spec(NEW_JOB_YAML)
    assert [t["key"] for t in spec["tasks"]] == ["extract", "load"]
    assert spec["tasks"][0]["command"].startswith("echo")  # config flattened, as a run carries it
    spec["tasks"].append(switch_engine(new_task(spec["tasks"]), "duckdb"))
    text = with_spec_tasks(NEW_JOB_YAML, spec)
    written = yaml.safe_load(text)["tasks"][-1]
    assert written["engine"] == "duckdb" and written["depends_on"] == ["load"] and "sql" in written["config"]
    template, problems = parse_template(text, project="demo")
    assert problems == [] and template is not None and len(template.tasks) == 3
    with pytest.raises(ValueError, match="cannot be read"):
        editor_spec("tasks: [unclosed")
