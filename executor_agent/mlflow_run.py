"""For task code that trains: an MLflow run linked to the control-room run and task that executes it.

The agent hands tasks ``MLFLOW_TRACKING_URI`` (when it has one) and ``MLFLOW_EXPERIMENT_NAME``
(default: the project's slug). ``start_run`` tags the experiment with the project, so the control
room lists it, and the run with our run id, task id and task key, so each links to the other::

    from executor_agent.mlflow_run import start_run

    with start_run(run_name="lr-0.1") as run:
        mlflow.log_param("lr", 0.1)

MLflow is imported only here, when task code calls it; the agent itself does not need it.
"""

from __future__ import annotations

import os
from typing import Any

PROJECT_TAG = "lakehouse.project"
RUN_TAGS = {
    "lakehouse.run_id": "LAKEHOUSE_RUN_ID",
    "lakehouse.task_id": "LAKEHOUSE_TASK_ID",
    "lakehouse.task_key": "LAKEHOUSE_TASK_KEY",
    "lakehouse.attempt": "LAKEHOUSE_ATTEMPT",
    "lakehouse.environment": "LAKEHOUSE_ENVIRONMENT",
}


def linking_tags() -> dict[str, str]:
    """The tags linking an MLflow run to the task running it (empty outside a task)."""
    tags = {tag: os.environ[variable] for tag, variable in RUN_TAGS.items() if os.environ.get(variable)}
    if os.environ.get("LAKEHOUSE_PROJECT"):
        tags[PROJECT_TAG] = os.environ["LAKEHOUSE_PROJECT"]
    return tags


def use_experiment(name: str | None = None) -> str:
    """Select (creating if needed) the experiment ``name`` or MLFLOW_EXPERIMENT_NAME, tagged with the project;
    returns its id."""
    import mlflow

    project = os.environ.get("LAKEHOUSE_PROJECT", "")
    wanted = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or project or "Default"
    experiment = mlflow.get_experiment_by_name(wanted)
    client = mlflow.MlflowClient()
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(wanted)
    if project and (experiment is None or experiment.tags.get(PROJECT_TAG) != project):
        client.set_experiment_tag(experiment_id, PROJECT_TAG, project)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def start_run(*, experiment: str | None = None, **kwargs: Any) -> Any:
    """``mlflow.start_run`` in the task's experiment, with the linking tags added to ``tags``."""
    import mlflow

    use_experiment(experiment)
    tags = {**linking_tags(), **(kwargs.pop("tags", None) or {})}
    return mlflow.start_run(tags=tags, **kwargs)


def tag_registered_model(name: str) -> None:
    """Tag a registered model with the task's project so the control room's registry page lists it."""
    import mlflow

    project = os.environ.get("LAKEHOUSE_PROJECT")
    if project:
        mlflow.MlflowClient().set_registered_model_tag(name, PROJECT_TAG, project)
