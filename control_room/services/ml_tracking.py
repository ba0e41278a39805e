"""MLflow experiments, runs and the model registry, read and changed through the MLflow client only.

MLflow has no notion of our orgs and projects: an experiment or registered model belongs to a project
when its tag ``lakehouse.project`` holds the project's slug (the agent injects it into training tasks;
``experiment_tags`` below). Runs link back to our runs through the tags ``lakehouse.run_id``,
``lakehouse.task_id`` and ``lakehouse.task_key``. Every function first reads the project through the
caller's connection, so RLS decides who sees what; alias changes are checked and audited by
``ops.record_model_alias_change`` in the same transaction as the MLflow call.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from anyio import to_thread
from psycopg import AsyncConnection

from control_room.db.rows import scalar
from control_room.services.errors import Invalid, NotFound, ServiceError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PROJECT_TAG = "lakehouse.project"
RUN_TAG = "lakehouse.run_id"
TASK_TAG = "lakehouse.task_id"
TASK_KEY_TAG = "lakehouse.task_key"
MAX_COMPARE = 10
MAX_PAGE = 200
# Counting an experiment's runs means listing them; beyond this many the page shows "1000+".
COUNT_LIMIT = 1000
HEALTH_TIMEOUT_SECONDS = 2.0

T = TypeVar("T")


class TrackingUnavailable(ServiceError, status=503, title="MLflow unavailable"):
    """No MLflow tracking server is configured or it does not answer."""


def tracking_uri() -> str | None:
    """The MLflow server the control room talks to (set by `lakehouse run`, or by the operator)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


@lru_cache(maxsize=4)
def _client_for(uri: str) -> MlflowClient:
    # Short timeouts and few retries: a page or the health check must not hang for minutes when the
    # server is down (MLflow's defaults retry seven times with backoff).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def client() -> MlflowClient:
    """The MLflow client of the configured server; TrackingUnavailable when none is configured."""
    uri = tracking_uri()
    if uri is None:
        raise TrackingUnavailable(
            "no MLflow tracking server is configured: start the control room with `lakehouse run` "
            "(it starts one) or set MLFLOW_TRACKING_URI"
        )
    return _client_for(uri)


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking MLflow client call in a worker thread, mapping its errors to ours."""
    from mlflow.exceptions import MlflowException, RestException

    def call() -> T:
        return function(*args, **kwargs)

    try:
        return await to_thread.run_sync(call)
    except RestException as exc:
        code = exc.error_code
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(exc.message) from exc
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise Invalid(exc.message) from exc
        raise TrackingUnavailable(f"MLflow answered {code}: {exc.message}") from exc
    except MlflowException as exc:
        raise TrackingUnavailable(f"MLflow failed: {exc.message}") from exc
    except OSError as exc:
        raise TrackingUnavailable(f"MLflow at {tracking_uri()} does not answer: {exc}") from exc


async def check_tracking(*, timeout_seconds: float = HEALTH_TIMEOUT_SECONDS) -> tuple[str, str | None]:
    """("ok" | "unreachable" | "not_configured", detail) from one cheap client call."""
    import asyncio

    uri = tracking_uri()
    if uri is None:
        return "not_configured", "MLFLOW_TRACKING_URI is not set"
    try:
        async with asyncio.timeout(timeout_seconds):
            await _call(client().search_experiments, max_results=1)
    except TimeoutError:
        return "unreachable", f"MLflow at {uri} did not answer within {timeout_seconds:.0f} s"
    except ServiceError as exc:
        return "unreachable", exc.message
    return "ok", None


# Projects ----------------------------------------------------------------------------------------


def _uuid(value: uuid.UUID | str, *, field: str) -> uuid.UUID:
    """``value`` as a uuid; Invalid naming ``field`` when it is not one."""
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise Invalid(f"{field} must be a uuid, got {value!r}", field=field) from exc


async def project_slug(conn: AsyncConnection, project_id: uuid.UUID | str) -> str:
    """The slug of a project the caller can see (RLS); NotFound otherwise."""
    slug = await scalar(conn, "select slug from ops.projects where id = %s", (_uuid(project_id, field="project"),))
    if slug is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member", field="project")
    return str(slug)


def experiment_tags(project: str) -> dict[str, str]:
    """Tags that make an experiment (or registered model) belong to a project."""
    return {PROJECT_TAG: project}


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _project_filter(slug: str) -> str:
    return f"tags.`{PROJECT_TAG}` = {_quoted(slug)}"


async def _named_filter(conn: AsyncConnection, project: uuid.UUID | str, text: str | None) -> str:
    """Search filter: the project's tag, and the name containing ``text`` when given."""
    filter_string = _project_filter(await project_slug(conn, project))
    if text:
        filter_string += f" AND name ILIKE {_quoted('%' + text.strip() + '%')}"
    return filter_string


def _millis(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


# Experiments and runs ----------------------------------------------------------------------------


def _experiment_ids(slug: str) -> list[str]:
    found: list[str] = []
    token: str | None = None
    while True:
        page = client().search_experiments(filter_string=_project_filter(slug), max_results=MAX_PAGE, page_token=token)
        found.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return found


def _experiment_row(experiment: Any) -> dict[str, Any]:
    runs = client().search_runs([experiment.experiment_id], max_results=COUNT_LIMIT, order_by=["start_time DESC"])
    last = runs[0] if runs else None
    return {
        "id": experiment.experiment_id,
        "name": experiment.name,
        "runs": len(runs),
        "runs_capped": len(runs) >= COUNT_LIMIT,
        "last_run_at": _millis(last.info.start_time) if last else None,
        "last_run_status": last.info.status if last else None,
        "created_at": _millis(experiment.creation_time),
        "tags": {k: v for k, v in experiment.tags.items() if not k.startswith("mlflow.")},
    }


async def list_experiments(
    conn: AsyncConnection, *, project: uuid.UUID | str, text: str | None = None, cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:  # fmt: skip
    """A page of the project's experiments (name contains ``text``), newest first; (rows, next cursor)."""
    filter_string = await _named_filter(conn, project, text)

    def page() -> tuple[list[dict[str, Any]], str | None]:
        found = client().search_experiments(
            filter_string=filter_string, max_results=max(1, min(limit, MAX_PAGE)), page_token=cursor,
            order_by=["creation_time DESC"],
        )  # fmt: skip
        return [_experiment_row(e) for e in found], found.token or None

    return await _call(page)


async def _experiment_of_project(conn: AsyncConnection, project: uuid.UUID | str, experiment_id: str) -> Any:
    slug = await project_slug(conn, project)
    experiment = await _call(client().get_experiment, experiment_id)
    if experiment.tags.get(PROJECT_TAG) != slug:
        raise NotFound(f"experiment {experiment_id} is not in project {slug}", field="experiment")
    return experiment


def run_row(run: Run) -> dict[str, Any]:
    """An MLflow run as the pages and the API show it."""
    info, data = run.info, run.data
    return {
        "run_id": info.run_id,
        "run_name": info.run_name or info.run_id[:8],
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": _millis(info.start_time),
        "end_time": _millis(info.end_time),
        "params": dict(data.params),
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.metrics.items()},
        "tags": {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
        "lakehouse_run_id": data.tags.get(RUN_TAG),
        "lakehouse_task_id": data.tags.get(TASK_TAG),
        "lakehouse_task_key": data.tags.get(TASK_KEY_TAG),
        "artifact_uri": info.artifact_uri,
    }


async def experiment_runs(
    conn: AsyncConnection, *, project: uuid.UUID | str, experiment_id: str, filter_string: str | None = None,
    order_by: str | None = None, cursor: str | None = None, limit: int = 50,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:  # fmt: skip
    """The experiment and one keyset page of its runs (MLflow search syntax filter, one order key)."""
    experiment = await _experiment_of_project(conn, project, experiment_id)
    order = [order_by] if order_by else ["start_time DESC"]
    found = await _call(
        client().search_runs, [experiment.experiment_id], filter_string=filter_string or "",
        max_results=max(1, min(limit, MAX_PAGE)), order_by=order, page_token=cursor,
    )  # fmt: skip
    header = {
        "id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
    }
    return header, [run_row(r) for r in found], found.token or None


async def get_run(conn: AsyncConnection, *, project: uuid.UUID | str, run_id: str) -> dict[str, Any]:
    """One MLflow run of the project, with its top-level artifacts."""
    run = await _call(client().get_run, run_id)
    await _experiment_of_project(conn, project, run.info.experiment_id)
    row = run_row(run)
    files = await _call(client().list_artifacts, run_id)
    row["artifacts"] = [{"path": f.path, "is_dir": f.is_dir, "size": f.file_size} for f in files]
    return row


async def metric_histories(
    conn: AsyncConnection, *, project: uuid.UUID | str, run_ids: Sequence[str], keys: Sequence[str] | None = None
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per run, per metric: (step, value) points, for the charts of selected or compared runs."""
    if len(run_ids) > MAX_COMPARE:
        raise Invalid(f"at most {MAX_COMPARE} runs at a time, got {len(run_ids)}", field="runs")
    slug = await project_slug(conn, project)

    def histories() -> dict[str, dict[str, list[tuple[int, float]]]]:
        allowed = set(_experiment_ids(slug))
        out: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for run_id in run_ids:
            run = client().get_run(run_id)
            if run.info.experiment_id not in allowed:
                raise NotFound(f"MLflow run {run_id} is not in project {slug}", field="runs")
            wanted = keys or sorted(run.data.metrics)
            out[run_id] = {
                key: [(m.step, m.value) for m in sorted(client().get_metric_history(run_id, key), key=lambda m: m.step)]
                for key in wanted
            }
        return out

    return await _call(histories)


async def compare_runs(conn: AsyncConnection, *, project: uuid.UUID | str, run_ids: Sequence[str]) -> dict[str, Any]:
    """2 to 10 runs side by side: params (with whether they differ), metric summaries and curves."""
    unique = list(dict.fromkeys(run_ids))
    if not 2 <= len(unique) <= MAX_COMPARE:
        raise Invalid(f"compare needs 2 to {MAX_COMPARE} different runs, got {len(unique)}", field="runs")
    curves = await metric_histories(conn, project=project, run_ids=unique)
    runs = [run_row(await _call(client().get_run, run_id)) for run_id in unique]
    param_names = sorted({name for run in runs for name in run["params"]})
    params = [
        {"name": name, "values": [run["params"].get(name) for run in runs],
         "differs": len({run["params"].get(name) for run in runs}) > 1}
        for name in param_names
    ]  # fmt: skip
    metric_names = sorted({name for run in runs for name in run["metrics"]})
    metrics = []
    for name in metric_names:
        summaries = []
        for run in runs:
            values = [value for _, value in curves[run["run_id"]].get(name, [])]
            summaries.append(
                {"last": run["metrics"].get(name), "min": min(values) if values else None,
                 "max": max(values) if values else None, "steps": len(values)}
            )  # fmt: skip
        metrics.append({"name": name, "runs": summaries})
    return {"runs": runs, "params": params, "metrics": metrics, "curves": curves}


async def runs_of_lakehouse_run(conn: AsyncConnection, *, run_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The MLflow runs a control-room run's tasks logged (by their ``lakehouse.run_id`` tag)."""
    wanted = _uuid(run_id, field="run")
    project_id = await scalar(conn, "select project_id from ops.runs where id = %s", (wanted,))
    if project_id is None:
        raise NotFound(f"run {run_id} does not exist or you cannot see it", field="run")
    slug = await project_slug(conn, project_id)

    def search() -> list[dict[str, Any]]:
        ids = _experiment_ids(slug)
        if not ids:
            return []
        found = client().search_runs(ids, filter_string=f"tags.`{RUN_TAG}` = {_quoted(str(wanted))}",
                                     max_results=MAX_PAGE, order_by=["start_time ASC"])  # fmt: skip
        return [run_row(r) for r in found]

    return await _call(search)


# Model registry ----------------------------------------------------------------------------------


def _version_row(version: Any) -> dict[str, Any]:
    return {
        "version": str(version.version),
        "run_id": version.run_id,
        "status": version.status,
        "source": version.source,
        "aliases": list(version.aliases or []),
        "description": version.description or "",
        "created_at": _millis(version.creation_timestamp),
        "tags": dict(version.tags or {}),
    }


def _model_row(model: Any) -> dict[str, Any]:
    latest = max((int(v.version) for v in model.latest_versions or []), default=None)
    return {
        "name": model.name,
        "description": model.description or "",
        "aliases": {alias: str(version) for alias, version in (model.aliases or {}).items()},
        "latest_version": None if latest is None else str(latest),
        "updated_at": _millis(model.last_updated_timestamp),
        "tags": {k: v for k, v in (model.tags or {}).items() if not k.startswith("mlflow.")},
    }


async def list_models(
    conn: AsyncConnection, *, project: uuid.UUID | str, text: str | None = None, cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], str | None]:  # fmt: skip
    """A page of the project's registered models; (rows, next cursor)."""
    filter_string = await _named_filter(conn, project, text)
    found = await _call(
        client().search_registered_models, filter_string=filter_string, max_results=max(1, min(limit, MAX_PAGE)),
        page_token=cursor, order_by=["name ASC"],
    )  # fmt: skip
    return [_model_row(m) for m in found], found.token or None


async def _model_of_project(conn: AsyncConnection, project: uuid.UUID | str, name: str) -> Any:
    slug = await project_slug(conn, project)
    model = await _call(client().get_registered_model, name)
    if (model.tags or {}).get(PROJECT_TAG) != slug:
        raise NotFound(f"registered model {name!r} is not in project {slug}", field="model")
    return model


async def get_model(conn: AsyncConnection, *, project: uuid.UUID | str, name: str) -> dict[str, Any]:
    """A registered model with its versions (newest first), each with its source run's metrics."""
    model = await _model_of_project(conn, project, name)

    def versions() -> list[dict[str, Any]]:
        found = client().search_model_versions(f"name = {_quoted(name)}", max_results=MAX_PAGE,
                                               order_by=["version_number DESC"])  # fmt: skip
        rows = []
        for version in found:
            row = _version_row(version)
            # Searches do not fill in versions' aliases: the registered model has them.
            row["aliases"] = sorted(a for a, v in (model.aliases or {}).items() if str(v) == row["version"])
            run = client().get_run(version.run_id) if version.run_id else None
            row["metrics"] = dict(run.data.metrics) if run else {}
            row["run_name"] = (run.info.run_name or "") if run else ""
            row["experiment_id"] = run.info.experiment_id if run else None
            row["lakehouse_run_id"] = run.data.tags.get(RUN_TAG) if run else None
            row["signature"] = _signature(name, str(version.version))
            rows.append(row)
        return rows

    row = _model_row(model)
    row["versions"] = await _call(versions)
    return row


def _signature(name: str, version: str) -> dict[str, str] | None:
    """Inputs and outputs of a version's signature, as text (None when it has none)."""
    from mlflow.models import get_model_info

    try:
        signature = get_model_info(f"models:/{name}/{version}").signature
    except Exception:
        return None
    if signature is None:
        return None
    return {"inputs": str(signature.inputs), "outputs": str(signature.outputs)}


async def set_model_alias(
    conn: AsyncConnection, *, project: uuid.UUID | str, name: str, alias: str, version: str | None,
    gate_metric: str | None = None, higher_is_better: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Point ``alias`` at ``version`` (None deletes it): role-checked and audited, then done in MLflow.

    With ``gate_metric``, moving the alias only succeeds when the version's run logged that metric and it
    is at least as good as the version currently holding the alias (the promotion check on models).
    """
    model = await _model_of_project(conn, project, name)
    previous = (model.aliases or {}).get(alias)
    previous_version = None if previous is None else str(previous)
    if version is not None:
        candidate = await _call(client().get_model_version, name, version)
        if gate_metric:
            await _check_gate(candidate, previous_version, name, gate_metric, higher_is_better)
    elif previous_version is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
    await conn.execute(
        "select ops.record_model_alias_change(%s, %s, %s, %s, %s, %s)",
        (uuid.UUID(str(project)), name, alias, "set" if version is not None else "delete", version, previous_version),
    )
    if version is not None:
        await _call(client().set_registered_model_alias, name, alias, version)
    else:
        await _call(client().delete_registered_model_alias, name, alias)
    return {"model": name, "alias": alias, "version": version, "previous_version": previous_version}


async def _check_gate(candidate: Any, current: str | None, name: str, metric: str, higher_is_better: bool) -> None:
    run = await _call(client().get_run, candidate.run_id)
    value = run.data.metrics.get(metric)
    if value is None:
        raise Invalid(f"version {candidate.version} of {name} logged no metric {metric!r}", field="gate_metric")
    if current is None:
        return
    holder = await _call(client().get_model_version, name, current)
    held = (await _call(client().get_run, holder.run_id)).data.metrics.get(metric)
    if held is None:
        return
    worse = value < held if higher_is_better else value > held
    if worse:
        raise Invalid(
            f"promotion check failed: {metric} of version {candidate.version} is {value:.4g}, "
            f"{'below' if higher_is_better else 'above'} {held:.4g} of version {current} that holds the alias",
            field="gate_metric",
        )
