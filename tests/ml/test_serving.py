"""Serving endpoints against a real MLflow server: replicas are `mlflow models serve` processes run by an agent
as service tasks; the control room's proxy answers predictions, splits traffic for a canary, survives a
replica's death, and promote / roll back / stop change what serves."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from executor_agent.config import AgentSettings
from executor_agent.examples.train_model import FEATURES, train
from executor_agent.runner import Agent
from tests.agent.conftest import operator_client
from tests.live import LiveServer, Provisioner
from tests.mlflow_server import MlflowServer

MODEL = "serve-churn"
LAST_SEEN: dict[str, Any] = {}  # what the last health poll saw, for the failure message
ROWS = {"dataframe_split": {"columns": list(FEATURES), "data": [[3, 95.0, 4, 1.0], [60, 30.0, 0, 9.0]]}}


@dataclass
class Serving:
    project: uuid.UUID
    pool: str
    operator: httpx.Client
    viewer: httpx.Client
    base_url: str
    agent: Agent


def wait_for(what: str, check: Callable[[], Any], timeout: float = 240.0) -> Any:
    """Poll ``check`` until it returns something truthy, up to a deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last}; replicas: {LAST_SEEN})")


@pytest.fixture(scope="module")
def models(mlflow_server: MlflowServer) -> list[str]:
    """Two registered versions of a small churn classifier (the demo's training code, run in-process)."""
    versions = [
        train(rows=300, epochs=2, alphas=[alpha], model_name=MODEL)["registered"]["version"] for alpha in (0.1, 0.01)
    ]
    assert versions == ["1", "2"]
    return versions


@pytest.fixture(scope="module")
def served(
    models: list[str], ml_api: LiveServer, ml_provision: Provisioner, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serving]:
    """One agent that runs serving tasks (up to 6 replicas at once) for the module."""
    tenant = ml_provision.tenant("serving")
    pool = f"serve-{uuid.uuid4().hex[:6]}"
    work = Path(tmp_path_factory.mktemp("serving-agent"))
    settings = AgentSettings(
        url=ml_api.base_url, token=ml_provision.executor_token(pool, tenant=tenant), spool_dir=work / "spool",
        work_dir=work / "work", concurrency=6, claim_wait_s=2.0, grace_period_s=5.0, engines=["serving"],
    )  # fmt: skip
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, name="serving-agent", daemon=True)
    thread.start()
    assert agent.started.wait(30), "the agent did not register"
    operator = operator_client(ml_api, ml_provision.user_token("operator", tenant)[1])
    viewer = operator_client(ml_api, ml_provision.user_token("viewer", tenant)[1])
    try:
        yield Serving(tenant.project_id, pool, operator, viewer, ml_api.base_url, agent)
    finally:
        agent.request_stop()
        agent.request_stop()
        thread.join(60)
        operator.close()
        viewer.close()


def _endpoint(served: Serving, name: str) -> dict[str, Any]:
    response = served.viewer.get(f"/serving/endpoints/{name}", params={"project": str(served.project)})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _healthy(served: Serving, name: str, versions: set[str], replicas: int) -> dict[str, Any] | None:
    endpoint = _endpoint(served, name)
    live = [r for r in endpoint["replica_list"] if r["healthy"]]
    served_versions = {r["model_version"] for r in live}
    if served_versions == versions and len(live) == replicas * len(versions):
        return endpoint
    LAST_SEEN["replicas"] = [
        (r["model_version"], r["task_status"], r["attempt"], r["address"], r["last_error"])
        for r in endpoint["replica_list"]
    ]
    return None


@pytest.fixture(scope="module")
def endpoint(served: Serving) -> tuple[str, str]:
    """Endpoint `churn` serving version 1 on two replicas, and a token of it."""
    created = served.operator.post(
        "/serving/endpoints",
        json={"project": str(served.project), "name": "churn", "model": MODEL, "version": "1", "replicas": 2,
              "pool": served.pool},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["routes"] == [{"model": MODEL, "version": "1", "percent": 100}]
    token = served.operator.post(
        "/serving/endpoints/churn/tokens", params={"project": str(served.project)}, json={"name": "tests"}
    )
    assert token.status_code == 201, token.text
    wait_for("two healthy replicas of version 1", lambda: _healthy(served, "churn", {"1"}, 2), timeout=100)
    return "churn", token.json()["token"]


def _invoke(client: httpx.Client, base_url: str, name: str, token: str) -> httpx.Response:
    return client.post(
        f"{base_url}/api/v1/serving/{name}/invocations", json=ROWS, headers={"Authorization": f"Bearer {token}"}
    )


def test_endpoint_answers_a_prediction_through_the_proxy(served: Serving, endpoint: tuple[str, str]) -> None:
    name, token = endpoint
    with httpx.Client(timeout=30) as client:
        answer = _invoke(client, served.base_url, name, token)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == 2 and set(predictions) <= {0, 1}
        assert answer.headers["x-served-version"] == f"{MODEL}/1"
        # Only a token of this endpoint opens it.
        assert _invoke(client, served.base_url, name, "lhe_not-a-token").status_code == 401
        user_token = served.operator.headers["Authorization"].removeprefix("Bearer ")
        assert _invoke(client, served.base_url, name, user_token).status_code == 401
    endpoint_now = _endpoint(served, name)
    assert endpoint_now["health"] == "healthy" and endpoint_now["replicas_healthy"] == 2
    assert all(r["address"].startswith("127.0.0.1:") and r["pid"] for r in endpoint_now["replica_list"])


def test_killed_replica_restarts_and_no_request_fails_beyond_those_in_flight(
    served: Serving, endpoint: tuple[str, str]
) -> None:
    name, token = endpoint
    before = _endpoint(served, name)["replica_list"]
    victim = before[0]
    statuses: Counter[int] = Counter()
    stop = threading.Event()
    senders = 2

    def send() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                statuses[_invoke(client, served.base_url, name, token).status_code] += 1

    threads = [threading.Thread(target=send, daemon=True) for _ in range(senders)]
    for thread in threads:
        thread.start()
    try:
        wait_for("requests flowing", lambda: statuses[200] >= 20, timeout=60)
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted() -> bool:
            replicas = _endpoint(served, name)["replica_list"]
            again = [r for r in replicas if r["id"] == victim["id"]]
            return bool(again) and again[0]["healthy"] and again[0]["pid"] != victim["pid"]

        wait_for("the killed replica serving again", restarted)
        sent_after = sum(statuses.values())
        wait_for("requests to the restarted replica", lambda: sum(statuses.values()) >= sent_after + 20, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    failed = sum(count for status, count in statuses.items() if status != 200)
    assert statuses[200] > 40
    assert failed <= senders, f"only requests in flight on the killed replica may fail: {dict(statuses)}"
    replica = next(r for r in _endpoint(served, name)["replica_list"] if r["id"] == victim["id"])
    assert replica["attempt"] == 2 or replica["restarts"] == 1, replica


def test_canary_split_promote_rollback_and_stop(served: Serving, endpoint: tuple[str, str]) -> None:
    name, token = endpoint
    project = {"project": str(served.project)}
    canary = served.operator.post(f"/serving/endpoints/{name}/canary", params=project,
                                  json={"version": "2", "percent": 20})  # fmt: skip
    assert canary.status_code == 200, canary.text
    assert canary.json()["endpoint"]["routes"] == [
        {"model": MODEL, "version": "1", "percent": 80},
        {"model": MODEL, "version": "2", "percent": 20},
    ]
    # A viewer cannot change the endpoint.
    assert served.viewer.post(f"/serving/endpoints/{name}/promote", params=project).status_code == 403
    wait_for("both versions healthy", lambda: _healthy(served, name, {"1", "2"}, 2))
    counts: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(1000):
            answer = _invoke(client, served.base_url, name, token)
            assert answer.status_code == 200, answer.text
            counts[answer.headers["x-served-version"]] += 1
    canary_share = counts[f"{MODEL}/2"] / 1000
    assert abs(canary_share - 0.20) <= 0.05, dict(counts)

    def counted() -> dict[str, Any] | None:
        stats = served.viewer.get(f"/serving/endpoints/{name}/stats", params=project).json()
        return stats if stats["requests_by_version"].get("2", 0) >= counts[f"{MODEL}/2"] else None

    stats = wait_for("the proxy's stats written", counted, timeout=30)
    assert stats["latency_p95_ms"] is not None and stats["error_rate"] < 0.01

    promoted = served.operator.post(f"/serving/endpoints/{name}/promote", params=project)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["endpoint"]["routes"] == [{"model": MODEL, "version": "2", "percent": 100}]
    with httpx.Client(timeout=30) as client:
        assert _invoke(client, served.base_url, name, token).headers["x-served-version"] == f"{MODEL}/2"
    wait_for(
        "version 1 retired", lambda: {r["model_version"] for r in _endpoint(served, name)["replica_list"]} == {"2"}
    )

    rolled = served.operator.post(f"/serving/endpoints/{name}/rollback", params=project)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["endpoint"]["routes"] == [{"model": MODEL, "version": "1", "percent": 100}]
    wait_for("version 1 back", lambda: _healthy(served, name, {"1"}, 2))
    with httpx.Client(timeout=30) as client:
        assert _invoke(client, served.base_url, name, token).headers["x-served-version"] == f"{MODEL}/1"
    revisions = [r["action"] for r in _endpoint(served, name)["revisions"]]
    assert revisions == ["rollback", "promote", "canary", "create"]

    stopped = served.operator.post(f"/serving/endpoints/{name}/stop", params=project)
    assert stopped.status_code == 200 and stopped.json()["endpoint"]["health"] == "stopped"

    def all_cancelled() -> bool:
        runs = served.viewer.get("/runs", params={"project": str(served.project), "limit": 50}).json()["items"]
        return all(run["status"] in ("cancelled", "failed", "succeeded") for run in runs)

    wait_for("every replica's run ended", all_cancelled, timeout=60)
    with httpx.Client(timeout=30) as client:
        assert _invoke(client, served.base_url, name, token).status_code == 503
