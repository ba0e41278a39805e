"""Route constants and builders of the web app, in one place so pages and links agree."""

from __future__ import annotations

from urllib.parse import quote, urlencode

HOME = "/"
LOGIN = "/login"
RUNS = "/runs"
RUN_DETAIL = "/runs/[run_id]"
ARTIFACTS = "/artifacts"
EXECUTORS = "/executors"
CATALOG = "/catalog"
LINEAGE = "/lineage"
ALERTS = "/alerts"
PREFERENCES = "/preferences"
JOBS = "/jobs"
JOB_DETAIL = "/jobs/[job_id]"
PROMOTIONS = "/promotions"
PROMOTION_DETAIL = "/promotions/[request_id]"
NOT_FOUND = "404"  # Reflex's route for unknown addresses
GOVERNANCE = "/governance"  # routing matrix, simulator, caps, ownership, drift (issue 19)
POLICIES = "/policies"  # access policies: grants, row filters, masks, simulator (issue 22)
DASHBOARDS = "/dashboards"  # dashboard templates and the project's saved dashboards (issue 24)
SUPERSET_EMBED = "/dashboards/superset"  # a saved dashboard pushed to Superset, embedded (issue 24)
ASK = "/ask"  # NL→SQL: a question, its SQL for review, the result and a chart (issue 24)
# Pages that later issues add: the navigation shows them as not yet available.
COMING_LATER = "/later/[feature]"

LATER_FEATURES: dict[str, str] = {}


def run_detail(
    run_id: str,
    *,
    tab: str | None = None,
    level: str | None = None,
    q: str | None = None,
    log_task: str | None = None,
    task: str | None = None,
    attempt: int | None = None,
) -> str:
    """The page of one run: optionally opened on a tab (overview, timeline, artifacts), with the event log's
    filters (least level, search text, one task's key) and with a task's panel open on one of its attempts."""
    path = f"/runs/{quote(run_id)}"
    pairs = (("tab", tab), ("level", level), ("q", q), ("log_task", log_task), ("task", task), ("attempt", attempt))
    query = {name: value for name, value in pairs if value}
    return f"{path}?{urlencode(query)}" if query else path


def job_detail(job_id: str, *, tab: str | None = None) -> str:
    """The page of one job template (optionally opened on a tab: overview, runs, versions, schedules, backfills)."""
    path = f"/jobs/{quote(job_id)}"
    return f"{path}?{urlencode({'tab': tab})}" if tab else path


def promotion_detail(request_id: str) -> str:
    """The page of one promotion request."""
    return f"/promotions/{quote(request_id)}"


def runs_of_job(job_id: str, name: str = "") -> str:
    """The runs list narrowed to the runs of one job template (``name`` labels the filter)."""
    return f"{RUNS}?{urlencode({'job': job_id, 'job_name': name})}"


def runs_filtered(*, status: str | None = None, time_range: str | None = None) -> str:
    """The runs list opened with a status and a time-range filter (e.g. failed runs of the last 24 hours)."""
    query = {key: value for key, value in (("status", status), ("range", time_range)) if value}
    return f"{RUNS}?{urlencode(query)}" if query else RUNS


def artifacts(*, run_id: str | None = None, artifact_id: str | None = None) -> str:
    """The artifact browser, optionally narrowed to one run and with one artifact's preview open."""
    query = {key: value for key, value in (("run", run_id), ("artifact", artifact_id)) if value}
    return f"{ARTIFACTS}?{urlencode(query)}" if query else ARTIFACTS


def coming_later(feature: str) -> str:
    """The placeholder page of a feature that a later issue adds."""
    return f"/later/{quote(feature)}"


def login(*, next_path: str | None = None) -> str:
    """The sign-in page, returning to ``next_path`` afterwards."""
    return f"{LOGIN}?{urlencode({'next': next_path})}" if next_path and next_path != LOGIN else LOGIN


# The web app's own form endpoints (served by control_room.api.web_sessions under the API prefix).
API_V1 = "/api/v1"
WEB_SIGN_IN_PATH = "/auth/web-sessions"
WEB_SIGN_OUT_PATH = "/auth/web-sessions/end"
WEB_SIGN_IN = API_V1 + WEB_SIGN_IN_PATH
WEB_SIGN_OUT = API_V1 + WEB_SIGN_OUT_PATH
API_TOKENS = "/settings/api-tokens"


def safe_next_path(path: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another origin)."""
    if not path or not path.startswith("/") or path.startswith("//") or path.startswith(LOGIN) or "\\" in path:
        return RUNS
    return path


def incident(incident_id: str) -> str:
    """The alerts page with one incident open (the link of notifications and messages)."""
    return f"{ALERTS}?{urlencode({'incident': incident_id})}"


# ML (issue 23): MLflow experiments and the model registry.
ML_EXPERIMENTS = "/ml/experiments"
ML_EXPERIMENT = "/ml/experiments/[experiment_id]"
ML_MODELS = "/ml/models"
ML_ENDPOINTS = "/ml/endpoints"


def ml_experiments(*, run_id: str | None = None) -> str:
    """The experiments list; with ``run_id``, also the MLflow runs that control-room run logged."""
    return f"{ML_EXPERIMENTS}?{urlencode({'run': run_id})}" if run_id else ML_EXPERIMENTS


def ml_experiment(experiment_id: str, *, mlflow_run: str | None = None) -> str:
    """One experiment's runs (optionally with one MLflow run's detail open)."""
    path = f"{ML_EXPERIMENTS}/{quote(experiment_id)}"
    return f"{path}?{urlencode({'mlflow_run': mlflow_run})}" if mlflow_run else path


def ml_models(*, model: str | None = None) -> str:
    """The model registry, optionally with one model open."""
    return f"{ML_MODELS}?{urlencode({'model': model})}" if model else ML_MODELS
