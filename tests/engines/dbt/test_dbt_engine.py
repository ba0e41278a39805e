"""The dbt engine on the example project, on dbt-duckdb and dbt-postgres, through the agent's task context
(tests/engines/harness.py) whose lineage reports reach a real control plane: node events, artifacts,
lineage, OpenLineage, failing tests, incremental models, slim CI, secrets and cancellation."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor_agent.engines.base import EngineError
from executor_agent.engines.dbt import DbtEngine
from tests.engines.dbt.conftest import (
    EXAMPLE_PROJECT,
    Built,
    ClaimedTask,
    DuckdbWarehouse,
    OpenLineageCollector,
    RunDbt,
    Warehouse,
    copy_project,
)
from tests.engines.dbt.openlineage_schema import validation_errors
from tests.engines.harness import ArtifactShelf, ContextFactory, HarnessContext, group_is_gone

DATASET_TYPES = ("model", "seed", "snapshot")


def manifest_of(context: HarnessContext) -> dict[str, Any]:
    artifact = context.artifact("manifest.json")
    return dict(json.loads(artifact.path.read_text(encoding="utf-8")))


def run_results_of(context: HarnessContext) -> dict[str, Any]:
    return dict(json.loads(context.artifact("run_results.json").path.read_text(encoding="utf-8")))


def relation(manifest: dict[str, Any], unique_id: str) -> str:
    """A node's warehouse name as dbt writes it, unquoted; an exposure's own name."""
    if unique_id in manifest["exposures"]:
        return str(manifest["exposures"][unique_id]["name"])
    node = manifest["nodes"].get(unique_id) or manifest["sources"][unique_id]
    return str(node["relation_name"]).replace('"', "")


def depends_on_graph(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    """(upstream, downstream) names of every depends_on link between datasets, straight from manifest.json."""
    datasets = {u for u, n in manifest["nodes"].items() if n["resource_type"] in DATASET_TYPES} | set(
        manifest["sources"]
    )
    pairs = set()
    for unique_id, node in [*manifest["nodes"].items(), *manifest["exposures"].items()]:
        if unique_id not in datasets and unique_id not in manifest["exposures"]:
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            if parent in datasets:
                pairs.add((relation(manifest, parent), relation(manifest, unique_id)))
    return pairs


def stored_edges(claimed: ClaimedTask) -> tuple[set[tuple[str, str]], list[dict[str, Any]]]:
    """The edges the control plane stored for the run's datasets, read back through the API."""
    page = claimed.viewer.get("/datasets", params={"last_run_id": claimed.run_id, "limit": 500})
    assert page.status_code == 200, page.text
    datasets = page.json()["items"]
    pairs = set()
    for dataset in datasets:
        detail = claimed.viewer.get(f"/datasets/{dataset['id']}").json()
        for edge in detail["upstream"]:
            if edge["last_run_id"] == claimed.run_id:
                pairs.add((edge["dataset"]["name"], detail["name"]))
    return pairs, datasets


def executed(context: HarnessContext) -> set[str]:
    """Unique ids of the nodes an invocation ran (hooks aside)."""
    return {r["unique_id"] for r in run_results_of(context)["results"] if not r["unique_id"].startswith("operation.")}


# The session build ------------------------------------------------------------------------------------


def test_build_succeeds_with_node_events_for_every_model_and_test(built: Built) -> None:
    context, result = built.context, built.result

    assert result.outcome == "succeeded", result.error
    manifest = manifest_of(context)
    expected = {u for u, n in manifest["nodes"].items() if n["resource_type"] in ("model", "test", "seed", "snapshot")}
    started = {e.data["unique_id"] for e in context.events_of("dbt.node_started")}
    finished = {e.data["unique_id"]: e.data for e in context.events_of("dbt.node_finished")}
    assert expected <= started
    assert expected <= set(finished)
    assert {finished[u]["status"] for u in expected} <= {"success", "pass"}
    models = [u for u in expected if u.startswith("model.")]
    assert len(models) == 7 and len([u for u in expected if u.startswith("test.")]) == 18
    order = finished["model.lakehouse_shop.stg_orders"]
    assert order["started_at"] < order["finished_at"] and order["execution_time"] > 0
    assert finished["seed.lakehouse_shop.raw_orders"]["rows_affected"] == 8
    progress = context.events_of("progress")
    assert progress and progress[-1].data["done"] == progress[-1].data["total"]
    # Every start names its place among the invocation's nodes (dbt says so only after the start).
    total = len(executed(context))
    starts = context.events_of("dbt.node_started")
    assert {e.data.get("total") for e in starts} == {total}
    numbered = [e.data["index"] for e in starts if not e.data["unique_id"].startswith("exposure.")]
    assert len(set(numbered)) == len(numbered) and all(1 <= index <= total for index in numbered), numbered
    assert result.result["statuses"].get("pass") == 18
    assert result.result["invocation_id"] == run_results_of(context)["metadata"]["invocation_id"]


def test_artifacts_are_uploaded_with_their_sha256(built: Built) -> None:
    context = built.context

    names = {a.name for a in context.artifacts}

    assert {"manifest.json", "run_results.json", "catalog.json", "compiled-sql.zip", "dbt.log"} <= names
    for artifact in context.artifacts:
        assert hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact.sha256
        assert artifact.path.stat().st_size == artifact.size_bytes
    assert manifest_of(context)["metadata"]["adapter_type"] == built.warehouse.adapter
    catalog = json.loads(context.artifact("catalog.json").path.read_text(encoding="utf-8"))
    assert "model.lakehouse_shop.dim_customers" in catalog["nodes"]
    with zipfile.ZipFile(context.artifact("compiled-sql.zip").path) as archive:
        assert "lakehouse_shop/models/marts/fct_orders.sql" in archive.namelist()
        assert "from " in archive.read("lakehouse_shop/models/marts/fct_orders.sql").decode()
    assert "Running with dbt=" in context.artifact("dbt.log").path.read_text(encoding="utf-8")


def test_stored_lineage_edges_equal_the_depends_on_graph_of_the_manifest(built: Built) -> None:
    manifest = manifest_of(built.context)

    stored, datasets = stored_edges(built.claimed)

    assert stored == depends_on_graph(manifest)
    kinds = {d["name"]: d["kind"] for d in datasets}
    database = manifest["nodes"]["model.lakehouse_shop.stg_orders"]["database"]
    schema = built.warehouse.schema
    assert kinds[f"{database}.{schema}_app.events"] == "source"
    assert kinds[f"{database}.{schema}.raw_orders"] == "seed"
    assert kinds[f"{database}.{schema}.customers_snapshot"] == "snapshot"
    assert kinds["customer_dashboard"] == "exposure"
    dim = next(d for d in datasets if d["name"] == f"{database}.{schema}.dim_customers")
    assert dim["owner"] == "analytics@shop.example"
    assert dim["namespace"].startswith(f"{built.warehouse.adapter}://")
    columns = {c["name"]: c for c in dim["columns"]}
    # Types come from the catalog (docs generate), descriptions from the project's YAML.
    assert columns["order_count"]["type"] and columns["order_count"]["description"] == "Orders placed and not returned."
    assert [c["name"] for c in dim["columns"]][:2] == ["customer_id", "full_name"]
    # The example's relationships test (stg_orders.customer_id -> stg_customers.customer_id), for NL→SQL's joins.
    orders = built.claimed.viewer.get(
        f"/datasets/{next(d['id'] for d in datasets if d['name'] == f'{database}.{schema}.stg_orders')}"
    ).json()
    [relationship] = orders["metadata"]["relationships"]
    assert {k: relationship[k] for k in ("column", "to", "field")} == {
        "column": "customer_id", "to": f"{database}.{schema}.stg_customers", "field": "customer_id",
    }  # fmt: skip


# Column lineage of the example, checked by hand against its SQL: (model, column) -> {(upstream, column)}.
# dim_customers.lifetime_amount is sum(amount) of stg_orders, itself amount_cents / 100.0 of raw_orders;
# fct_orders.country_code is stg_customers' column, itself upper(country) of raw_customers;
# customer_activity.checkout_count is sum(case when event_type = 'checkout' ...) of fct_customer_events.
EXPECTED_COLUMN_LINEAGE = {
    ("dim_customers", "lifetime_amount"): {("stg_orders", "amount")},
    ("stg_orders", "amount"): {("raw_orders", "amount_cents")},
    ("fct_orders", "country_code"): {("stg_customers", "country_code")},
    ("stg_customers", "country_code"): {("raw_customers", "country")},
    ("customer_activity", "checkout_count"): {("fct_customer_events", "event_type")},
}


def test_column_lineage_of_the_example_equals_the_hand_checked_expectation(built: Built) -> None:
    _, datasets = stored_edges(built.claimed)
    stored: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for dataset in datasets:
        detail = built.claimed.viewer.get(f"/datasets/{dataset['id']}").json()
        for edge in detail["upstream"]:
            for pair in edge["column_lineage"]:
                key = (detail["name"].rsplit(".", 1)[-1], pair["downstream_column"])
                stored.setdefault(key, set()).add((edge["dataset"]["name"].rsplit(".", 1)[-1], pair["upstream_column"]))

    assert {key: stored.get(key) for key in EXPECTED_COLUMN_LINEAGE} == EXPECTED_COLUMN_LINEAGE
    # A join key comes from the side the query selects it from; count(*) comes from no column.
    assert stored[("dim_customers", "customer_id")] == {("stg_customers", "customer_id")}
    assert ("dim_customers", "order_count") not in stored
    # The same pairs travel in the models' OpenLineage events as the columnLineage facet.
    events = built.context.report_of("lineage")["openlineage_events"]
    complete = next(
        e for e in events if e["job"]["name"] == "model.lakehouse_shop.fct_orders" and e["eventType"] == "COMPLETE"
    )
    fields = complete["outputs"][0]["facets"]["columnLineage"]["fields"]
    assert [(f["name"].rsplit(".", 1)[-1], f["field"]) for f in fields["country_code"]["inputFields"]] == [
        ("stg_customers", "country_code")
    ]


def test_openlineage_events_validate_against_the_official_schema(
    built: Built, openlineage_collector: OpenLineageCollector
) -> None:
    events = built.context.report_of("lineage")["openlineage_events"]

    for event in events:
        assert validation_errors(event) == [], json.dumps(event)[:2000]
    models = {u for u, n in manifest_of(built.context)["nodes"].items() if n["resource_type"] in DATASET_TYPES}
    by_job: dict[str, list[str]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert {job: types for job, types in by_job.items() if job in models} == {m: ["START", "COMPLETE"] for m in models}
    assert by_job[built.claimed.task_key] == ["START", "COMPLETE"]
    parent = {e["run"]["facets"]["parent"]["run"]["runId"] for e in events if e["job"]["name"] in models}
    task_run = {e["run"]["runId"] for e in events if e["job"]["name"] == built.claimed.task_key}
    assert parent == task_run
    stg_orders = next(e for e in events if e["job"]["name"] == "model.lakehouse_shop.stg_orders")
    assert [i["name"].rsplit(".", 1)[-1] for i in stg_orders["inputs"]] == ["raw_orders"]
    # The control plane stored each event once, and the OpenLineage endpoint got every one.
    stored = built.claimed.viewer.get(f"/runs/{built.claimed.run_id}/openlineage", params={"limit": 1000}).json()
    assert sorted((e["openlineage_run_id"], e["event_type"]) for e in stored["items"]) == sorted(
        (e["run"]["runId"], e["eventType"]) for e in events
    )
    received = [e for e in openlineage_collector.events if e["run"]["runId"] in {x["run"]["runId"] for x in events}]
    assert received == events
    assert set(openlineage_collector.authorizations) == {"Bearer ol-key-123"}


def test_an_invalid_event_is_caught_by_the_schema_check(built: Built) -> None:
    # The validator itself must be able to fail: break an emitted event in three ways.
    event = json.loads(json.dumps(built.context.report_of("lineage")["openlineage_events"][1]))
    event["run"]["runId"] = "not-a-uuid"
    event["eventTime"] = "yesterday"
    event["run"]["facets"]["parent"].pop("_producer")

    errors = validation_errors(event)

    assert any("runId" in e or "uuid" in e for e in errors)
    assert any("date-time" in e for e in errors)
    assert any("_producer" in e for e in errors)


@pytest.mark.parametrize("warehouse_adapter", ["postgres"], indirect=True)
def test_secrets_never_reach_events_artifacts_or_reports(built: Built) -> None:
    context = built.context
    secrets = built.warehouse.secrets()
    profiles_file = context.work_dir / "dbt" / "profiles" / "profiles.yml"
    profiles = profiles_file.read_text(encoding="utf-8")

    everything = [json.dumps([e.__dict__ for e in context.events], default=str), json.dumps(context.reports), profiles]
    everything += [a.path.read_bytes().decode("utf-8", "replace") for a in context.artifacts]

    assert secrets
    for secret in secrets:
        assert all(secret not in text for text in everything)
    output = yaml.safe_load(profiles)["lakehouse"]["outputs"]["default"]
    assert output["password"] == '{{ env_var("DBT_ENV_SECRET_LH_TEST_PG_PASSWORD") }}'
    assert profiles_file.stat().st_mode & 0o777 == 0o600


# Scenarios on the same warehouse -------------------------------------------------------------------------


def test_a_failing_test_fails_the_task_and_names_the_test(
    built: Built, bad_data_warehouse: Warehouse, run_dbt: RunDbt, tmp_path: Path
) -> None:
    # A model downstream of the failing test's model: dbt skips it, and its run must still end.
    project = copy_project(tmp_path / "project")
    (project / "models" / "marts" / "orders_report.sql").write_text(
        "select order_id, amount from {{ ref('fct_orders') }}\n", encoding="utf-8"
    )
    context, result = run_dbt(
        {"command": "build", "project": {"path": str(project)}},
        warehouse=bad_data_warehouse,
        params={"inject_bad_order": True},
        task_key="bad-build",
    )

    assert result.outcome == "failed"
    assert result.error is not None
    assert "test assert_order_amounts_positive (fail" in result.error
    assert "1 of " in result.error
    failed = [e for e in context.events_of("dbt.node_finished") if e.data["status"] == "fail"]
    assert [e.data["name"] for e in failed] == ["assert_order_amounts_positive"]
    assert failed[0].level == "error" and failed[0].data["failures"] == 1
    assert result.result["failed_nodes"] == ["test.lakehouse_shop.assert_order_amounts_positive"]
    assert result.result["retryable"] is False, "bad data fails every attempt the same way"
    assert {"manifest.json", "run_results.json", "dbt.log"} <= {a.name for a in context.artifacts}
    # The bad row really reached the warehouse (the var came through as a dbt var).
    schema = bad_data_warehouse.schema
    assert bad_data_warehouse.query(f"select count(*) from {schema}.fct_orders where amount < 0") == [(1,)]
    # The skipped model's OpenLineage run is aborted, not left open; every run that started ended once.
    finished = {e.data["unique_id"]: e.data for e in context.events_of("dbt.node_finished")}
    assert finished["model.lakehouse_shop.orders_report"]["status"] == "skipped"
    events = context.report_of("lineage")["openlineage_events"]
    by_run: dict[str, list[str]] = {}
    for event in events:
        assert validation_errors(event) == [], json.dumps(event)[:2000]
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert all(types[0] == "START" and len(types) == 2 for types in by_run.values()), by_run
    report = [e for e in events if e["job"]["name"] == "model.lakehouse_shop.orders_report"]
    assert [e["eventType"] for e in report] in ([], ["START", "ABORT"])
    assert all("errorMessage" in e["run"]["facets"] for e in report[1:])


def test_a_second_incremental_run_processes_only_the_new_rows(built: Built, run_dbt: RunDbt) -> None:
    warehouse, schema = built.warehouse, built.warehouse.schema
    table = f"{schema}.fct_customer_events"
    before = warehouse.query(f"select count(*) from {table}")[0][0]
    assert before >= 10
    first_id = warehouse.query(f"select max(event_id) from {schema}_app.events")[0][0]
    for offset in range(1, 4):
        warehouse.execute(
            f"insert into {schema}_app.events (event_id, customer_id, event_type, occurred_at) "
            f"values ({first_id + offset}, 2, 'page_view', cast('2026-04-0{offset} 10:00:00' as timestamp))"
        )

    context, result = run_dbt(
        {"command": "run", "project": {"path": str(built.project)}, "select": "fct_customer_events"},
        warehouse=warehouse,
        task_key="incremental",
    )

    assert result.outcome == "succeeded", result.error
    assert executed(context) == {"model.lakehouse_shop.fct_customer_events"}
    invocation = result.result["invocation_id"]
    assert warehouse.query(f"select count(*) from {table}") == [(before + 3,)]
    assert warehouse.query(f"select count(*) from {table} where loaded_by_invocation = '{invocation}'") == [(3,)]

    refreshed, again = run_dbt(
        {
            "command": "run",
            "project": {"path": str(built.project)},
            "select": ["fct_customer_events"],
            "full_refresh": True,
        },
        warehouse=warehouse,
        task_key="full-refresh",
    )

    assert again.outcome == "succeeded", again.error
    everyone = again.result["invocation_id"]
    assert warehouse.query(f"select count(*) from {table} where loaded_by_invocation = '{everyone}'") == [(before + 3,)]
    assert refreshed.events_of("dbt.invocation")[0].data["full_refresh"] is True


@pytest.mark.parametrize("warehouse_adapter", ["duckdb"], indirect=True)  # selection does not depend on the adapter
def test_state_modified_builds_exactly_the_changed_model_and_its_children(
    built: Built, run_dbt: RunDbt, dbt_shelf: ArtifactShelf, tmp_path: Path
) -> None:
    # A changed copy of the project, published as an artifact (a zip) of an earlier "checkout" task.
    project = copy_project(tmp_path / "changed")
    stg_orders = project / "models" / "staging" / "stg_orders.sql"
    stg_orders.write_text(
        stg_orders.read_text().replace("amount_cents / 100.0 as amount", "round(amount_cents / 100.0, 2) as amount")
    )
    bundle = tmp_path / "project.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for file in sorted(project.rglob("*")):
            if file.is_file():
                archive.write(file, Path("shop").joinpath(file.relative_to(project)).as_posix())
    checkout_run = str(uuid.uuid4())
    dbt_shelf.put(bundle, run_id=checkout_run, task_key="checkout", attempt=1, name="project.zip")
    first_manifest = built.context.artifact("manifest.json")

    context, result = run_dbt(
        {
            "command": "build",
            "project": {"artifact": {"run_id": checkout_run, "task_key": "checkout", "name": "project.zip"}},
            "select": "state:modified+",
            "state": {
                "artifact": {
                    "run_id": built.context.run_id,
                    "task_key": built.context.task_key,
                    "name": "manifest.json",
                }
            },
            "defer": True,
        },
        warehouse=built.warehouse,
        task_key="slim-ci",
    )

    assert result.outcome == "succeeded", result.error
    manifest = manifest_of(context)
    children: set[str] = set()
    frontier = ["model.lakehouse_shop.stg_orders"]
    while frontier:
        for child in manifest["child_map"][frontier.pop()]:
            if child not in children:
                children.add(child)
                frontier.append(child)
    assert executed(context) == {"model.lakehouse_shop.stg_orders"} | children
    assert "model.lakehouse_shop.stg_customers" not in executed(context)
    assert "model.lakehouse_shop.fct_orders" in children and "model.lakehouse_shop.customer_activity" in children
    assert (context.work_dir / "dbt" / "state" / "manifest.json").read_bytes() == first_manifest.path.read_bytes()


# Bad specs fail before dbt starts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"command": "deploy", "project": "x"}, "spec.command"),
        ({"command": "build"}, "spec.project"),
        ({"command": "build", "project": {"path": "x"}, "slect": "a"}, "spec.slect"),
        ({"command": "test", "project": {"path": "x"}, "full_refresh": True}, "spec.full_refresh"),
        ({"command": "run", "project": {"path": "x"}, "defer": True}, "spec.defer"),
        ({"command": "run", "project": {"path": "x"}, "select": [""]}, "spec.select"),
        ({"command": "run", "project": {"path": "no/such/folder"}}, "spec.project.path"),
        ({"command": "run", "project": {"artifact": {"run_id": "r"}}}, "spec.project.artifact.task_key"),
        (
            {"command": "run", "project": {"artifact": {"task_key": "a", "name": "p.zip", "run_id": "r"}}},
            "spec.project.artifact.run_id",
        ),
        ({"command": "run", "project": {"artifact": {"task_key": "a", "name": "p.zip"}}}, "spec.project.artifact"),
        (
            {
                "command": "run",
                "project": {"path": "EXAMPLE"},
                "profile": {"type": "postgres", "password": {"env": "NO_SUCH_VAR_X"}},
            },
            "spec.profile.password",
        ),
        (
            {
                "command": "run",
                "project": {"path": "EXAMPLE"},
                "profile": {"outputs": {"a": {"type": "duckdb"}, "b": {"type": "duckdb"}}},
            },
            "spec.target",
        ),
    ],
)
def test_a_bad_spec_fails_with_an_error_naming_the_field(
    spec: dict[str, Any], field: str, make_dbt_context: ContextFactory
) -> None:
    if spec.get("project") == {"path": "EXAMPLE"}:
        spec = {**spec, "project": {"path": str(EXAMPLE_PROJECT)}}
    context = make_dbt_context({"key": "bad", "engine": "dbt", **spec})

    with pytest.raises(EngineError) as raised:
        DbtEngine().run(context)

    assert str(raised.value).startswith(field + ":") or str(raised.value).startswith(field + "."), str(raised.value)
    assert context.process_groups == [], "dbt must not start for a bad spec"


# Cancellation ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cancelling_a_running_model_stops_the_dbt_process_group(
    tmp_path: Path, make_dbt_context: ContextFactory
) -> None:
    project = tmp_path / "slow"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: slow\nversion: '1.0.0'\nconfig-version: 2\nprofile: slow\n")
    # Summing a trillion generated rows keeps DuckDB busy far longer than the test waits.
    (project / "models" / "endless.sql").write_text(
        "{{ config(materialized='table') }}\nselect sum(i) as total from range(1000000000000) t(i)"
    )
    warehouse = DuckdbWarehouse(tmp_path / "slow.duckdb")
    context = make_dbt_context(
        {
            "key": "endless",
            "engine": "dbt",
            "command": "run",
            "project": {"path": str(project)},
            "profile": warehouse.profile(),
        },
        task_key="endless",
    )
    cancelled_at: list[float] = []

    def cancel_when_the_model_starts() -> None:
        try:
            context.wait_for_event("dbt.node_started", timeout=300)
            cancelled_at.append(time.monotonic())
        finally:
            context.cancel()  # at the latest at the deadline: the model never ends by itself

    canceller = threading.Thread(target=cancel_when_the_model_starts, daemon=True)
    canceller.start()

    result = DbtEngine().run(context)

    canceller.join(10)
    assert result.outcome == "cancelled"
    assert cancelled_at and time.monotonic() - cancelled_at[0] < 10
    assert context.process_groups and all(group_is_gone(pgid) for pgid in context.process_groups)
    assert not context.events_of("dbt.node_finished"), "the model must not have finished"


@pytest.mark.parametrize("warehouse_adapter", ["duckdb"], indirect=True)
def test_test_runs_exactly_the_selected_tests_minus_the_excluded(built: Built, run_dbt: RunDbt) -> None:
    context, result = run_dbt(
        {
            "command": "test",
            "project": {"path": str(built.project)},
            "select": ["stg_orders", "stg_customers"],
            "exclude": "test_type:singular relationships_stg_orders_customer_id__customer_id__ref_stg_customers_",
        },
        warehouse=built.warehouse,
        task_key="tests-only",
    )

    assert result.outcome == "succeeded", result.error
    manifest = manifest_of(context)
    expected = {
        u
        for u, n in manifest["nodes"].items()
        if n["resource_type"] == "test"
        and set(n["depends_on"]["nodes"]) <= {"model.lakehouse_shop.stg_orders", "model.lakehouse_shop.stg_customers"}
        and not n["name"].startswith("relationships_")
    }
    assert len(expected) == 6
    assert executed(context) == expected
    assert not context.report_of("lineage")["openlineage_events"], "tests build nothing: no OpenLineage runs"


@pytest.mark.parametrize("warehouse_adapter", ["duckdb"], indirect=True)
def test_docs_generate_uses_the_chosen_target_and_uploads_the_catalog(built: Built, run_dbt: RunDbt) -> None:
    broken = {"type": "duckdb", "path": str(built.project / "never-created" / "nowhere.duckdb")}
    context, result = run_dbt(
        {
            "command": "docs generate",
            "project": {"path": str(built.project)},
            "profile": {"target": "broken", "outputs": {"broken": broken, "shop": built.warehouse.profile()}},
            "target": "shop",
        },
        warehouse=built.warehouse,
        task_key="docs",
    )

    assert result.outcome == "succeeded", result.error
    assert context.events_of("dbt.invocation")[0].data["target"] == "shop"
    catalog = json.loads(context.artifact("catalog.json").path.read_text(encoding="utf-8"))
    columns = catalog["nodes"]["model.lakehouse_shop.fct_customer_events"]["columns"]
    assert "loaded_by_invocation" in columns
