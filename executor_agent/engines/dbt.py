"""The dbt engine: runs a dbt command on a real project in a child process and reports what it did.

One task runs one dbt command (build, run, test, seed, snapshot, compile, docs generate) with
selectors, vars, full refresh, target and slim-CI state (see ``dbt_support/spec.py`` for the spec).
dbt keeps global state and is not thread-safe, so it runs in its own process
(``dbt_support/child.py`` with ``dbtRunner``), which prints one JSON line per node event. The engine
turns those into ``dbt.node_started`` / ``dbt.node_finished`` events and progress, then:

* uploads ``manifest.json``, ``run_results.json``, ``catalog.json`` (when docs were generated),
  ``compiled-sql.zip`` and ``dbt.log`` (scrubbed of the profile's secrets);
* reports the project's lineage (datasets, edges) and OpenLineage RunEvents through the contract
  (``report("lineage", ...)``) and, when ``OPENLINEAGE_URL`` is set, POSTs each RunEvent there;
  edges carry column-level lineage traced from the compiled SQL with sqlglot;
* fails the task when a node errored or a test failed, naming those nodes.

Dataset identity: a DuckDB profile without a path writes to the agent's persistent warehouse (the
DuckDB engine's file), so the same model is the same dataset (``duckdb://<file>``) run after run.

Pitfalls: profiles.yml is generated per attempt (mode 0600) with ``env_var()`` references only; the
secret values live in the child's environment as ``DBT_ENV_SECRET_*``. dbt's target and log folders
are in the attempt's work folder, so a project folder is only read (two tasks may share it).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from executor_agent.engines.base import Engine, EngineError, EngineResult, Level, ProcessOutcome, TaskContext
from executor_agent.engines.dbt_support.lineage import ProjectGraph
from executor_agent.engines.dbt_support.openlineage import OpenLineageEndpoint, ParentRun, RunEventBuilder, run_id_for
from executor_agent.engines.dbt_support.profiles import PROFILE_NAME, GeneratedProfile, dataset_namespace, write_profile
from executor_agent.engines.dbt_support.spec import ArtifactReference, DbtTaskSpec, Source
from executor_agent.engines.duckdb import DuckdbSettings

CHILD_SCRIPT = Path(__file__).with_name("dbt_support") / "child.py"
FAILED_STATUSES = ("error", "fail", "runtime error")
WARNING_STATUSES = ("warn", "skipped")
MAX_NAMED_FAILURES = 10
SCRUBBED = "*****"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class DbtEngine(Engine):
    """``engine: dbt`` tasks."""

    name: ClassVar[str] = "dbt"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("dbt") is not None and importlib.util.find_spec("dbt.cli") is not None

    def run(self, context: TaskContext) -> EngineResult:
        context.check_cancelled()
        return DbtInvocation(context, DbtTaskSpec.parse(context.spec, context.params)).run()


class DbtInvocation:
    """One attempt of one dbt task: prepares the folders, runs the child, then reports and uploads."""

    def __init__(self, context: TaskContext, spec: DbtTaskSpec) -> None:
        self.context = context
        self.spec = spec
        self.root = context.work_dir / "dbt"
        self.target_dir = self.root / "target"
        self.docs_dir = self.root / "docs-target"
        self.log_dir = self.root / "logs"
        self.nodes: dict[str, dict[str, Any]] = {}
        self.invocation_errors: list[str] = []
        self.secrets: list[str] = []

    # Preparing ------------------------------------------------------------------------------------------

    def _fetch(self, reference: ArtifactReference, destination: Path, field_name: str) -> Path:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self.context.fetch_artifact(
                task_key=reference.task_key, name=reference.name, dest=destination, run_id=reference.run_id
            )
        except EngineError:
            raise
        except Exception as exc:  # the control plane's answer (not found, lease lost) as a task error
            where = f"run {reference.run_id}" if reference.run_id else "this run"
            raise EngineError(
                f"spec.{field_name}: cannot fetch {reference.name!r} of task {reference.task_key!r} in {where}: {exc}"
            ) from exc

    def _project_dir(self) -> Path:
        source = self.spec.project
        if source.path is not None:
            project = source.resolve_path(self.context.work_dir, "project.path")
        else:
            assert source.artifact is not None
            bundle = self._fetch(source.artifact, self.root / "downloads" / "project-bundle", "project.artifact")
            project = self.root / "project"
            _unpack(bundle, project)
            found = sorted(project.rglob("dbt_project.yml"), key=lambda p: len(p.parts))
            if not found:
                raise EngineError("spec.project.artifact: the artifact holds no dbt_project.yml")
            project = found[0].parent
        if not (project / "dbt_project.yml").is_file():
            raise EngineError(f"spec.project: {project} is not a dbt project (no dbt_project.yml there)")
        return project

    def _state_dir(self, source: Source) -> Path:
        state = self.root / "state"
        state.mkdir(parents=True, exist_ok=True)
        if source.path is not None:
            manifest = source.resolve_path(self.context.work_dir, "state.manifest_path")
            if manifest.is_dir():
                manifest = manifest / "manifest.json"
            if not manifest.is_file():
                raise EngineError(f"spec.state.manifest_path: {manifest} is not a manifest.json file")
            shutil.copyfile(manifest, state / "manifest.json")
        else:
            assert source.artifact is not None
            self._fetch(source.artifact, state / "manifest.json", "state.artifact")
        try:
            json.loads((state / "manifest.json").read_text(encoding="utf-8"))["nodes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineError("spec.state: the state manifest is not a dbt manifest.json") from exc
        return state

    def _arguments(self, command: str, project: Path, profile: GeneratedProfile, target_dir: Path) -> list[str]:
        spec = self.spec
        args = [
            *command.split(),
            "--project-dir", str(project),
            "--profiles-dir", str(profile.path.parent),
            "--profile", PROFILE_NAME,
            "--target", profile.target,
            "--target-path", str(target_dir),
            "--log-path", str(self.log_dir),
            "--log-level", "none",  # the console: node events and log lines come through the callback
            "--log-level-file", "debug",
            "--no-use-colors",
        ]  # fmt: skip
        if spec.vars:
            args += ["--vars", json.dumps(spec.vars)]
        if spec.threads:
            args += ["--threads", str(spec.threads)]
        for option, values in (("--select", spec.select), ("--exclude", spec.exclude)):
            if values:
                args += [option, *values]
        if spec.full_refresh and command == spec.command:
            args.append("--full-refresh")
        if spec.state is not None:
            args += ["--state", str(self.root / "state")]
            if spec.defer:
                args.append("--defer")
        return args

    # Running ---------------------------------------------------------------------------------------------

    def run(self) -> EngineResult:
        spec, context = self.spec, self.context
        self.root.mkdir(parents=True, exist_ok=True)
        project = self._project_dir()
        environment = context.environment_for_child()
        profile = write_profile(
            spec.profile,
            target=spec.target,
            env=environment,
            directory=self.root / "profiles",
            warehouse=DuckdbSettings(),
        )
        self.secrets = profile.secrets
        if spec.state is not None:
            self._state_dir(spec.state)
        invocations = [self._arguments(spec.command, project, profile, self.target_dir)]
        if spec.docs and spec.command != "docs generate":
            invocations.append(self._arguments("docs generate", project, profile, self.docs_dir))
        request = self.root / "invocations.json"
        request.write_text(json.dumps({"invocations": invocations}), encoding="utf-8")
        child_env = {
            **profile.secret_env,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",  # no calls home from build machines
            "DBT_VERSION_CHECK": "false",
            "PYTHONUNBUFFERED": "1",
        }
        context.emit(
            "dbt.invocation",
            f"dbt {spec.command} on {project.name} (target {profile.target}, {profile.adapter_type})",
            data={
                "command": spec.command,
                "project_dir": str(project),
                "target": profile.target,
                "adapter": profile.adapter_type,
                "select": list(spec.select),
                "exclude": list(spec.exclude),
                "full_refresh": spec.full_refresh,
                "state": spec.state is not None,
                "defer": spec.defer,
            },
        )
        started_at = _now()
        outcome = context.run_process(
            [sys.executable, str(CHILD_SCRIPT), str(request)],
            cwd=project,
            env=context.environment_for_child(child_env),
            on_line=self._on_line,
        )
        finished_at = _now()
        if outcome.killed_for is not None:
            return self._stopped(outcome)
        self._finish_skipped()
        self._upload_artifacts()
        failed = self._failed_nodes()
        error = self._error_message(outcome, failed)
        self._report_lineage(profile, started_at=started_at, finished_at=finished_at, error=error)
        summary = self._summary()
        if error is not None:
            return EngineResult.failed(error, **summary, retryable=self._retryable(failed))
        return EngineResult.ok(**summary)

    def _stopped(self, outcome: ProcessOutcome) -> EngineResult:
        message = f"dbt {self.spec.command} was stopped: {outcome.killed_for}"
        if outcome.killed_for == "cancelled" or outcome.killed_for == "timed_out":
            log = self.log_dir / "dbt.log"
            if log.is_file():
                self._upload(log, "dbt.log", "text/plain")
            return EngineResult(outcome.killed_for, self._summary(), message)
        return EngineResult.failed(message, **self._summary())

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, SCRUBBED)
        return text

    def _on_line(self, stream: str, line: str) -> None:
        line = self._scrub(line)
        if stream == "stdout" and line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "kind" in record:
                self._on_record(record)
                return
        self.context.log(line, level="warning" if stream == "stderr" else "info", stream=stream)

    def _on_record(self, record: dict[str, Any]) -> None:
        kind = record.pop("kind")
        if kind == "log":
            level = record.get("level", "info")
            level = level if level in _LEVELS else "info"
            self.context.log(str(record.get("message", "")), level=cast(Level, level), stream="dbt")
        elif kind in ("node_started", "node_finished") and record.pop("invocation", 0) != 0:
            return  # a follow-up invocation (docs generate after the command) compiles nodes again: not news
        elif kind == "node_started":
            self.nodes[record["unique_id"]] = dict(record)
            self.context.emit(
                "dbt.node_started", f"{record['resource_type']} {record['name']} started", data=_node_data(record)
            )
        elif kind == "node_finished":
            node = self.nodes.setdefault(record["unique_id"], {})
            node.update(record)
            self._emit_finished(node)
        elif kind == "invocation_finished" and record.get("error"):
            self.invocation_errors.append(str(record["error"]))

    def _emit_finished(self, node: Mapping[str, Any]) -> None:
        status = str(node.get("status", ""))
        level: Level = "error" if status in FAILED_STATUSES else "warning" if status in WARNING_STATUSES else "info"
        message = f"{node['resource_type']} {node['name']} {status} in {float(node.get('execution_time') or 0):.2f}s"
        if node.get("failures"):
            message += f" ({node['failures']} failing rows)"
        self.context.emit("dbt.node_finished", message, level=level, data=_node_data(node))
        if node.get("index") and node.get("total"):
            self.context.progress(
                f"{node['index']} of {node['total']} nodes done", done=node["index"], total=node["total"]
            )

    def _run_results(self) -> dict[str, Any]:
        path = self.target_dir / "run_results.json"
        if not path.is_file():
            return {}
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return loaded

    def _finish_skipped(self) -> None:
        """Nodes dbt skipped (a parent failed) never start: report them from run_results as finished."""
        for result in self._run_results().get("results", []):
            unique_id = result.get("unique_id", "")
            if unique_id in self.nodes or result.get("status") != "skipped":
                continue
            resource_type, _, rest = unique_id.partition(".")
            node = {
                "unique_id": unique_id,
                "name": rest.split(".")[1] if "." in rest else rest,
                "resource_type": resource_type,
                "status": "skipped",
                "message": result.get("message") or "skipped: an upstream node failed",
                "execution_time": 0.0,
            }
            self.nodes[unique_id] = node
            self._emit_finished(node)

    def _failed_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes.values() if n.get("status") in FAILED_STATUSES]

    def _error_message(self, outcome: ProcessOutcome, failed: list[dict[str, Any]]) -> str | None:
        command = f"dbt {self.spec.command}"
        if failed:
            named = [
                f"{n['resource_type']} {n['name']} ({n['status']}: {self._scrub(str(n.get('message') or '')).strip()})"
                for n in failed[:MAX_NAMED_FAILURES]
            ]
            more = f" and {len(failed) - MAX_NAMED_FAILURES} more" if len(failed) > MAX_NAMED_FAILURES else ""
            return f"{command} failed: {len(failed)} of {len(self.nodes)} nodes failed: {'; '.join(named)}{more}"
        if self.invocation_errors:
            return f"{command} could not run: {self._scrub(self.invocation_errors[0])}"
        if outcome.returncode != 0:
            return f"{command} failed (child exit status {outcome.returncode}); see the log events and dbt.log"
        return None

    def _retryable(self, failed: list[dict[str, Any]]) -> bool:
        """Whether another attempt could succeed (the control plane retries only then). A failed node or
        test, or a project dbt cannot parse, fails the same way again; a lost warehouse connection or a
        crashed child may not."""
        if failed:
            return False
        if self.invocation_errors:
            return any(word in self.invocation_errors[0].lower() for word in ("connection", "could not connect"))
        return True

    def _summary(self) -> dict[str, Any]:
        statuses: dict[str, int] = {}
        for node in self.nodes.values():
            status = str(node.get("status", "started"))
            statuses[status] = statuses.get(status, 0) + 1
        results = self._run_results()
        return {
            "command": self.spec.command,
            "invocation_id": results.get("metadata", {}).get("invocation_id"),
            "elapsed_s": results.get("elapsed_time"),
            "nodes": len(self.nodes),
            "statuses": statuses,
            "failed_nodes": [n["unique_id"] for n in self._failed_nodes()],
        }

    # Artifacts -------------------------------------------------------------------------------------------

    def _upload(self, path: Path, name: str, content_type: str) -> None:
        """Upload a copy scrubbed of the profile's secrets (dbt scrubs its log; this covers every file)."""
        data = path.read_bytes()
        for secret in self.secrets:
            data = data.replace(secret.encode(), SCRUBBED.encode())
        staged = self.root / "upload" / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(data)
        self.context.upload_artifact(staged, name=name, content_type=content_type, metadata={"engine": "dbt"})

    def _upload_artifacts(self) -> None:
        for name in ("manifest.json", "run_results.json"):
            if (self.target_dir / name).is_file():
                self._upload(self.target_dir / name, name, "application/json")
        for folder in (self.target_dir, self.docs_dir):
            if (folder / "catalog.json").is_file():
                self._upload(folder / "catalog.json", "catalog.json", "application/json")
                break
        compiled = self.target_dir / "compiled"
        if compiled.is_dir():
            bundle = self.root / "compiled-sql.zip"
            with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(compiled.rglob("*.sql")):
                    archive.write(file, file.relative_to(compiled).as_posix())
            self._upload(bundle, "compiled-sql.zip", "application/zip")
        if (self.log_dir / "dbt.log").is_file():
            self._upload(self.log_dir / "dbt.log", "dbt.log", "text/plain")

    # Lineage ---------------------------------------------------------------------------------------------

    def _report_lineage(
        self, profile: GeneratedProfile, *, started_at: str, finished_at: str, error: str | None
    ) -> None:
        manifest_path = self.target_dir / "manifest.json"
        if not manifest_path.is_file():
            return  # dbt stopped before parsing the project: there is no graph to report
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        catalog = None
        for folder in (self.target_dir, self.docs_dir):
            if (folder / "catalog.json").is_file():
                catalog = json.loads((folder / "catalog.json").read_text(encoding="utf-8"))
                break
        graph = ProjectGraph(manifest, catalog, namespace=dataset_namespace(profile.output))
        graph.trace_columns(self._compiled_code(), adapter=profile.adapter_type)
        payload: dict[str, Any] = graph.report()
        events: list[dict[str, Any]] = []
        if self.spec.executes_nodes:
            events = self._run_events(graph, profile, started_at=started_at, finished_at=finished_at, error=error)
        payload["openlineage_events"] = events
        try:
            reply = self.context.report("lineage", payload)
        except Exception as exc:  # the dbt work is done and its artifacts kept: lineage must not undo it
            self.context.emit("lineage", f"the control plane refused the lineage report: {exc}", level="error")
            reply = {"refused": str(exc)}
        self.context.emit(
            "lineage",
            f"lineage reported: {len(payload['datasets'])} datasets, {len(payload['edges'])} edges, "
            f"{len(events)} OpenLineage events",
            data={
                "datasets": len(payload["datasets"]),
                "edges": len(payload["edges"]),
                "openlineage_events": len(events),
                "reply": dict(reply),
            },
        )
        endpoint = OpenLineageEndpoint.from_environment(self.context.environment_for_child())
        if endpoint is not None and events:
            problems = endpoint.send(events)
            for problem in problems:
                self.context.emit("lineage.openlineage", problem, level="warning")
            self.context.emit(
                "lineage.openlineage",
                f"{len(events) - len(problems)} of {len(events)} OpenLineage events sent to {endpoint.url}",
                data={"url": endpoint.url, "sent": len(events), "problems": len(problems)},
            )

    def _compiled_code(self) -> dict[str, str | None]:
        """Each executed node's compiled SQL, by unique id (run_results.json)."""
        results = self._run_results().get("results", [])
        return {str(r["unique_id"]): r.get("compiled_code") for r in results if r.get("unique_id")}

    def _run_events(
        self, graph: ProjectGraph, profile: GeneratedProfile, *, started_at: str, finished_at: str, error: str | None
    ) -> list[dict[str, Any]]:
        context = self.context
        namespace = self.spec.openlineage_namespace or f"lakehouse/{context.project}"
        parent = ParentRun(
            namespace=namespace,
            job_name=f"{context.task_key}",
            run_id=run_id_for(context.task_id, context.attempt),
        )
        builder = RunEventBuilder(
            graph,
            parent,
            dbt_version=str(graph.manifest.get("metadata", {}).get("dbt_version", "")),
            adapter=profile.adapter_type,
        )
        compiled = self._compiled_code()
        events = builder.task_events(started_at=started_at, finished_at=None, failed=None, error=None)
        for node in sorted(self.nodes.values(), key=lambda n: (n.get("started_at") or "", n["unique_id"])):
            events += builder.node_events(node, compiled_code=compiled.get(node["unique_id"]))
        events += builder.task_events(
            started_at=started_at, finished_at=finished_at, failed=error is not None, error=error
        )[1:]
        return events


_LEVELS = ("debug", "info", "warning", "error")
_NODE_FIELDS = (
    "unique_id", "name", "resource_type", "materialized", "relation", "status", "started_at", "finished_at",
    "execution_time", "rows_affected", "failures", "message", "index", "total", "adapter_response",
)  # fmt: skip


def _node_data(node: Mapping[str, Any]) -> dict[str, Any]:
    return {key: node[key] for key in _NODE_FIELDS if node.get(key) not in (None, "", {})}


def _unpack(bundle: Path, destination: Path) -> None:
    """Unpack a .zip or .tar(.gz) project bundle, refusing members that would land outside ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    if zipfile.is_zipfile(bundle):
        with zipfile.ZipFile(bundle) as archive:
            for member in archive.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise EngineError(f"spec.project.artifact: the bundle member {member!r} escapes its folder")
            archive.extractall(root)  # noqa: S202 (every member was checked to stay inside root)
        return
    if tarfile.is_tarfile(bundle):
        with tarfile.open(bundle) as archive:
            archive.extractall(root, filter="data")  # "data" refuses absolute paths, links out and devices
        return
    raise EngineError("spec.project.artifact: the artifact is neither a zip nor a tar archive of a dbt project")
