"""MLflow through the control room: experiments, runs, compare, the model registry and its aliases.

Reads and writes go to the MLflow tracking server through its client (services/ml_tracking.py); the
control plane decides who sees a project's experiments and models, and audits alias changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field, StrictBool

from control_room.api.deps import UserConnection
from control_room.api.models import Strict
from control_room.services import ml_tracking
from control_room.services.pagination import page_reply

# Every operation here needs the tracking server; when it is not configured or down the answer is 503.
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "No MLflow tracking server is configured, or it does not answer.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
}
router = APIRouter(tags=["ml"], responses=UNAVAILABLE)
ProjectQuery = Annotated[uuid.UUID, Query(description="Project id.")]
CursorQuery = Annotated[str | None, Query(max_length=3000, description="`next_cursor` of the previous page.")]
LimitQuery = Annotated[int, Query(ge=1, le=ml_tracking.MAX_PAGE)]
ModelName = Annotated[str, Path(min_length=1, max_length=256)]
AliasName = Annotated[str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]


class ExperimentPublic(BaseModel):
    id: str
    name: str
    runs: int = Field(description="Runs in the experiment (counted up to 1000; see runs_capped).")
    runs_capped: bool
    last_run_at: datetime | None
    last_run_status: str | None
    created_at: datetime | None
    tags: dict[str, str]


class ExperimentPage(BaseModel):
    items: list[ExperimentPublic]
    next_cursor: str | None


class MlflowRunPublic(BaseModel):
    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    params: dict[str, str]
    metrics: dict[str, float | None]
    tags: dict[str, str]
    lakehouse_run_id: str | None = Field(description="The control-room run whose task logged this run.")
    lakehouse_task_id: str | None
    lakehouse_task_key: str | None
    artifact_uri: str | None


class ArtifactEntry(BaseModel):
    path: str
    is_dir: bool
    size: int | None


class MlflowRunDetail(MlflowRunPublic):
    artifacts: list[ArtifactEntry]


class ExperimentHeader(BaseModel):
    id: str
    name: str
    artifact_location: str | None


class MlflowRunPage(BaseModel):
    experiment: ExperimentHeader
    items: list[MlflowRunPublic]
    next_cursor: str | None


class CompareRequest(Strict):
    project: uuid.UUID
    runs: list[str] = Field(min_length=2, max_length=ml_tracking.MAX_COMPARE, description="2 to 10 MLflow run ids.")


class ParamRow(BaseModel):
    name: str
    values: list[str | None] = Field(description="One value per compared run, in the order asked.")
    differs: bool


class MetricSummary(BaseModel):
    last: float | None
    min: float | None
    max: float | None
    steps: int


class MetricRow(BaseModel):
    name: str
    runs: list[MetricSummary]


class CompareReply(BaseModel):
    runs: list[MlflowRunPublic]
    params: list[ParamRow]
    metrics: list[MetricRow]
    curves: dict[str, dict[str, list[tuple[int, float]]]] = Field(
        description="Per run id, per metric: [step, value] points."
    )


class ModelPublic(BaseModel):
    name: str
    description: str
    aliases: dict[str, str] = Field(description="Alias -> version.")
    latest_version: str | None
    updated_at: datetime | None
    tags: dict[str, str]


class ModelPage(BaseModel):
    items: list[ModelPublic]
    next_cursor: str | None


class ModelVersionPublic(BaseModel):
    version: str
    run_id: str | None
    run_name: str
    experiment_id: str | None = Field(description="Experiment of the source run.")
    status: str
    source: str | None
    aliases: list[str]
    description: str
    created_at: datetime | None
    tags: dict[str, str]
    metrics: dict[str, float]
    lakehouse_run_id: str | None
    signature: dict[str, str] | None


class ModelDetail(ModelPublic):
    versions: list[ModelVersionPublic]


class AliasUpdate(Strict):
    project: uuid.UUID
    version: str = Field(pattern=r"^[1-9][0-9]{0,9}$", description="The model version the alias points to.")
    gate_metric: str | None = Field(
        default=None, max_length=250,
        description="Promotion check: the version's run must have logged this metric, at least as good as the "
        "version holding the alias now.",
    )  # fmt: skip
    higher_is_better: StrictBool = True


class AliasChange(BaseModel):
    model: str
    alias: str
    version: str | None
    previous_version: str | None


@router.get("/ml/experiments", operation_id="listExperiments", response_model=ExperimentPage)
async def list_experiments(
    conn: UserConnection, project: ProjectQuery,
    q: Annotated[str | None, Query(max_length=200, description="Text in the experiment name.")] = None,
    cursor: CursorQuery = None, limit: LimitQuery = 50,
) -> dict[str, Any]:  # fmt: skip
    """The project's MLflow experiments with their run count and last run, newest first."""
    return page_reply(await ml_tracking.list_experiments(conn, project=project, text=q, cursor=cursor, limit=limit))


@router.get("/ml/experiments/{experiment_id}/runs", operation_id="listExperimentRuns", response_model=MlflowRunPage)
async def list_experiment_runs(
    experiment_id: Annotated[str, Path(max_length=64)], conn: UserConnection, project: ProjectQuery,
    filter: Annotated[str | None, Query(max_length=2000, description="MLflow search syntax, e.g. "
                                        "`metrics.auc > 0.8 and params.alpha = '0.01'`.")] = None,
    order_by: Annotated[str | None, Query(max_length=300, description="e.g. `metrics.auc DESC`.")] = None,
    cursor: CursorQuery = None, limit: LimitQuery = 50,
) -> dict[str, Any]:  # fmt: skip
    """One keyset page of an experiment's runs with their params and latest metrics."""
    header, items, next_cursor = await ml_tracking.experiment_runs(
        conn, project=project, experiment_id=experiment_id, filter_string=filter, order_by=order_by,
        cursor=cursor, limit=limit,
    )  # fmt: skip
    return {"experiment": header, "items": items, "next_cursor": next_cursor}


@router.get("/ml/runs/{mlflow_run_id}", operation_id="getMlflowRun", response_model=MlflowRunDetail)
async def get_mlflow_run(
    mlflow_run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")], conn: UserConnection, project: ProjectQuery
) -> dict[str, Any]:
    """An MLflow run with its params, metrics, tags, the control-room run it came from and its artifacts."""
    return await ml_tracking.get_run(conn, project=project, run_id=mlflow_run_id)


@router.post("/ml/compare", operation_id="compareMlflowRuns", response_model=CompareReply)
async def compare_mlflow_runs(body: CompareRequest, conn: UserConnection) -> dict[str, Any]:
    """2 to 10 runs side by side: params (and whether they differ), metric summaries and per-step curves."""
    return await ml_tracking.compare_runs(conn, project=body.project, run_ids=body.runs)


@router.get("/runs/{run_id}/mlflow-runs", operation_id="listRunMlflowRuns", response_model=list[MlflowRunPublic])
async def list_run_mlflow_runs(run_id: uuid.UUID, conn: UserConnection) -> list[dict[str, Any]]:
    """The MLflow runs the tasks of a control-room run logged (tag `lakehouse.run_id`)."""
    return await ml_tracking.runs_of_lakehouse_run(conn, run_id=run_id)


@router.get("/ml/models", operation_id="listRegisteredModels", response_model=ModelPage)
async def list_models(
    conn: UserConnection, project: ProjectQuery,
    q: Annotated[str | None, Query(max_length=200, description="Text in the model name.")] = None,
    cursor: CursorQuery = None, limit: LimitQuery = 50,
) -> dict[str, Any]:  # fmt: skip
    """The project's registered models with their aliases, by name."""
    return page_reply(await ml_tracking.list_models(conn, project=project, text=q, cursor=cursor, limit=limit))


@router.get("/ml/models/{name}", operation_id="getRegisteredModel", response_model=ModelDetail)
async def get_model(name: ModelName, conn: UserConnection, project: ProjectQuery) -> dict[str, Any]:
    """A registered model with its versions: source run, signature, metrics, aliases."""
    return await ml_tracking.get_model(conn, project=project, name=name)


@router.put("/ml/models/{name}/aliases/{alias}", operation_id="setModelAlias", response_model=AliasChange)
async def set_model_alias(name: ModelName, alias: AliasName, body: AliasUpdate, conn: UserConnection) -> dict[str, Any]:
    """Point an alias at a version (operators; `champion` needs an admin), audited; optionally gated on a metric."""
    return await ml_tracking.set_model_alias(
        conn, project=body.project, name=name, alias=alias, version=body.version,
        gate_metric=body.gate_metric, higher_is_better=body.higher_is_better,
    )  # fmt: skip


@router.delete("/ml/models/{name}/aliases/{alias}", operation_id="deleteModelAlias", response_model=AliasChange)
async def delete_model_alias(
    name: ModelName, alias: AliasName, conn: UserConnection, project: ProjectQuery
) -> dict[str, Any]:
    """Remove an alias (same roles as setting it), audited."""
    return await ml_tracking.set_model_alias(conn, project=project, name=name, alias=alias, version=None)
