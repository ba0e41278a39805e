"""A task reads an earlier task's artifact through the agent (context.fetch_artifact), verified by SHA-256."""

from __future__ import annotations

from typing import ClassVar

from executor_agent.engines.base import Engine, EngineResult, TaskContext
from tests.agent.conftest import StartAgent, operator_client, submit, wait_for_run
from tests.live import LiveServer, Provisioner


class HandOffEngine(Engine):
    """`build` writes and uploads a file; `use` fetches it back and returns its text."""

    # A stand-in under a real engine's name: task specs are typed per engine, so the tasks carry a valid
    # duckdb spec this class ignores.
    name: ClassVar[str] = "duckdb"

    def run(self, context: TaskContext) -> EngineResult:
        if context.task_key == "build":
            out = context.work_dir / "app.py"
            out.write_text("print('built by an earlier task')\n")
            context.upload_artifact(out, name="dist/app.py", content_type="text/x-python")
            return EngineResult.ok()
        fetched = context.fetch_artifact(task_key="build", name="dist/app.py", dest=context.work_dir / "in/app.py")
        return EngineResult.ok(text=fetched.read_text(), path=str(fetched.relative_to(context.work_dir)))


def test_dependent_task_fetches_the_artifact_of_its_upstream(
    live_api: LiveServer, provision: Provisioner, start_agent: StartAgent, pool: str
) -> None:
    operator = operator_client(live_api, provision.user_token("operator")[1])
    start_agent(
        live_api, provision.executor_token(pool), engines=["duckdb"], engine_classes={"duckdb": HandOffEngine}
    )
    run = submit(
        operator,
        provision.tenant().project_id,
        [
            {"key": "build", "engine": "duckdb", "sql": "select 1", "pool": pool},
            {"key": "use", "engine": "duckdb", "sql": "select 1", "pool": pool, "depends_on": ["build"]},
        ],
    )
    detail = wait_for_run(operator, run["id"])
    assert detail["status"] == "succeeded", detail
    use = next(t for t in detail["tasks"] if t["key"] == "use")
    assert use["result"] == {"text": "print('built by an earlier task')\n", "path": "in/app.py"}
