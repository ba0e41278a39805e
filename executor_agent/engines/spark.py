"""The Spark engine: one task is one ``spark-submit`` (pyspark's), observed and bounded by the agent.

Task spec (beside ``key``/``engine``); exactly one of ``application``, ``module``, ``application_artifact``::

    application           a .py file (relative paths: against the agent's working directory)
    module                a Python module of the project, run as __main__
    application_artifact  {"task": <task key>, "name": <artifact name>} of an earlier task
    args                  list of arguments, passed as given (the job runs in the task's work dir, so give
                          paths absolute); "{output_path}" and "{work_dir}" are replaced
    conf                  {"spark.x": value} passed as --conf
    master                local[N] (default: $LAKEHOUSE_EXECUTOR_SPARK_MASTER or local[*]), spark://,
                          k8s://, yarn, passed through; deploy_mode client (default) or cluster
    driver_memory, executor_memory ("2g", "512m" or MB), driver_cores, executor_cores, num_executors
    python_path           folders (PYTHONPATH) and .py/.zip/.egg files (--py-files) for the job
    env                   extra environment variables for the job
    output_path           where the job writes (default <work dir>/output; $LAKEHOUSE_OUTPUT_PATH)
    lineage               {"inputs": [...], "outputs": [...]} locations, reported as lineage on success
    log_level             root log4j level (default info); progress_interval_s (default 1)
    delta                 instead of a job: a Delta table operation (see executor_agent.engines.delta)

What the engine adds: ``SPARK_LOCAL_IP=127.0.0.1`` (local masters) and a per-task ``SPARK_CONF_DIR``
whose log4j2 configuration logs to the console (streamed as log events with their level) and to a
file (uploaded with the console output and the event log when the task ends, whatever the outcome);
a free UI port whose REST API is polled for progress; memory and cores capped by the claim's
``max_memory_mb``/``max_cores`` (per JVM: the driver, and each executor), with the capping recorded
in a ``spark.config`` event; ``max_output_bytes`` enforced on ``output_path`` while the job runs and
after. The runtime limit is enforced by the context, which stops the process group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from executor_agent.engines.base import Engine, EngineError, EngineResult, Level, ProcessOutcome, TaskContext
from executor_agent.engines.delta import report_lineage, run_delta_operation
from executor_agent.engines.spark_support.lineage import describe_location, lineage_payload, resolve_location
from executor_agent.engines.spark_support.logs import LogLevelReader, write_spark_conf_dir
from executor_agent.engines.spark_support.progress import (
    SparkRestPoller,
    StageProgress,
    event_log_files,
    summarize_event_log,
)
from executor_agent.engines.specs import typed_spec
from executor_agent.generated import contract

MASTER_ENV = "LAKEHOUSE_EXECUTOR_SPARK_MASTER"
MARKER_ENV = "LAKEHOUSE_SPARK_TASK_MARKER"
SPARK_DEFAULT_DRIVER_MEMORY_MB = 1024  # what Spark uses when nothing is asked for
SPARK_DEFAULT_EXECUTOR_MEMORY_MB = 1024  # spark.executor.memory's default (cluster masters)
_LOCAL_MASTER = re.compile(r"^local(?:\[(\*|\d+)(?:,(\d+))?\])?$")
_CLUSTER_MASTERS = ("spark://", "k8s://", "yarn", "mesos://")
_MEMORY = re.compile(r"^(\d+)\s*([kmgt]?)b?$", re.IGNORECASE)
_UI_STARTED = re.compile(r"Successfully started service 'SparkUI' on port (\d+)")
_UNIT_TO_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
_MEMORY_CONF = {"driver_memory": "spark.driver.memory", "executor_memory": "spark.executor.memory"}
_CORES_CONF = {
    "driver_cores": "spark.driver.cores",
    "executor_cores": "spark.executor.cores",
    "num_executors": "spark.executor.instances",
}


def parse_memory_mb(value: Any, where: str) -> int:
    """Spark memory (``"2g"``, ``"512m"``, ``"1024k"``) or a number of MB, as whole MB."""
    if isinstance(value, bool):
        raise EngineError(f'{where}: expected a size such as "2g" or "512m", got {value!r}')
    if isinstance(value, int):
        mb = value
    elif isinstance(value, str) and _MEMORY.match(value.strip()):
        match = _MEMORY.match(value.strip())
        assert match is not None
        unit = match.group(2).lower() or "m"  # Spark reads a bare number as MiB for these settings
        mb = int(int(match.group(1)) * _UNIT_TO_MB[unit])
    else:
        raise EngineError(f'{where}: expected a size such as "2g" or "512m", got {value!r}')
    if mb < 1:
        raise EngineError(f"{where}: must be at least 1 MB, got {value!r}")
    return mb


def _positive_int(value: Any, where: str) -> int:
    """A count from a spec field (an integer) or from --conf (its text)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"{where}: expected a positive integer, got {value!r}")
    return int(value)


def _conf_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise EngineError(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


@dataclass(frozen=True)
class Capping:
    """One requested setting lowered by a cap."""

    setting: str
    requested: str
    effective: str
    limit: str

    def describe(self) -> str:
        return f"{self.setting} capped from {self.requested} to {self.effective} by {self.limit}"


@dataclass(frozen=True)
class SparkResources:
    """Memory and cores of the application's JVMs; ``local_threads`` only for local masters."""

    master: str
    local_threads: int | None
    driver_memory_mb: int
    executor_memory_mb: int | None
    driver_cores: int | None
    executor_cores: int | None
    num_executors: int | None

    @property
    def is_local(self) -> bool:
        return self.local_threads is not None


def parse_master(master: str) -> tuple[int | None, str | None]:
    """(threads, failures) of a local master (threads None for ``local[*]``'s machine size), or raise."""
    match = _LOCAL_MASTER.match(master)
    if match is None:
        raise ValueError(master)
    threads = match.group(1)
    count = (os.cpu_count() or 1) if threads == "*" else int(threads) if threads else 1
    return count, match.group(2)


def cap_resources(
    requested: SparkResources, *, max_memory_mb: int | None, max_cores: int | None
) -> tuple[SparkResources, list[Capping]]:
    """Lower memory and cores to the caps (per JVM); say what was lowered."""
    capped: list[Capping] = []
    master = requested.master
    local_threads = requested.local_threads
    if local_threads is not None and max_cores is not None and local_threads > max_cores:
        _, failures = parse_master(master)
        master = f"local[{max_cores}{',' + failures if failures else ''}]"
        capped.append(Capping("master", requested.master, master, f"max_cores={max_cores}"))
        local_threads = max_cores

    def memory(name: str, value: int | None) -> int | None:
        if value is None or max_memory_mb is None or value <= max_memory_mb:
            return value
        capped.append(Capping(name, f"{value}m", f"{max_memory_mb}m", f"max_memory_mb={max_memory_mb}"))
        return max_memory_mb

    def cores(name: str, value: int | None) -> int | None:
        if value is None or max_cores is None or value <= max_cores:
            return value
        capped.append(Capping(name, str(value), str(max_cores), f"max_cores={max_cores}"))
        return max_cores

    driver_memory = memory("spark.driver.memory", requested.driver_memory_mb)
    assert driver_memory is not None
    executor_memory, executor_cores = requested.executor_memory_mb, requested.executor_cores
    if local_threads is None:
        # On a cluster, executors unasked for still get Spark's defaults: 1g each, and on a standalone
        # worker every core it has. The caps hold per JVM there too, so say them explicitly.
        if executor_memory is None and max_memory_mb is not None and max_memory_mb < SPARK_DEFAULT_EXECUTOR_MEMORY_MB:
            executor_memory = SPARK_DEFAULT_EXECUTOR_MEMORY_MB
        if executor_cores is None and max_cores is not None:
            capped.append(
                Capping("spark.executor.cores", "all of a worker's", str(max_cores), f"max_cores={max_cores}")
            )
            executor_cores = max_cores
    return (
        SparkResources(
            master=master,
            local_threads=local_threads,
            driver_memory_mb=driver_memory,
            executor_memory_mb=memory("spark.executor.memory", executor_memory),
            driver_cores=cores("spark.driver.cores", requested.driver_cores),
            executor_cores=cores("spark.executor.cores", executor_cores),
            num_executors=requested.num_executors,
        ),
        capped,
    )


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact of an earlier task of the same run, used as the application."""

    task: str
    name: str


@dataclass(frozen=True)
class SparkJobSpec:
    """A validated Spark task spec; errors name the field."""

    application: Path | None
    module: str | None
    artifact: ArtifactRef | None
    args: tuple[str, ...]
    conf: Mapping[str, str]
    resources: SparkResources
    deploy_mode: str
    python_path: tuple[str, ...]
    env: Mapping[str, str]
    output_path: Path
    lineage_inputs: tuple[str, ...]
    lineage_outputs: tuple[str, ...]
    log_level: str
    progress_interval_s: float
    app_name: str
    python: str

    @classmethod
    def parse(cls, spec: Mapping[str, Any], *, work_dir: Path, default_master: str, task_key: str) -> SparkJobSpec:
        """Read the spec through the contract's SparkTaskSpec (types, unknown fields, bounds: errors name the
        field), then check what JSON Schema cannot: files exist, the master, memory sizes, --conf agreement."""
        typed = typed_spec(contract.SparkTaskSpec, spec, key=task_key, engine="spark")
        sources = [k for k in ("application", "module", "application_artifact") if getattr(typed, k) is not None]
        if len(sources) != 1:
            raise EngineError(
                "spec: give exactly one of application (a .py file), module (a Python module) or "
                f"application_artifact ({{task, name}}); got {', '.join(sources) or 'none'}"
            )
        application = None
        artifact = None
        if typed.application is not None:
            application = Path(resolve_location(typed.application))
            if not application.is_file():
                raise EngineError(f"spec.application: no file at {application}")
        elif typed.application_artifact is not None:
            artifact = ArtifactRef(typed.application_artifact.task, typed.application_artifact.name)

        output_path = Path(resolve_location(typed.output_path or work_dir / "output"))

        def substitute(text: str) -> str:
            return text.replace("{output_path}", str(output_path)).replace("{work_dir}", str(work_dir))

        args = tuple(substitute(_conf_value(a, f"spec.args[{i}]")) for i, a in enumerate(typed.args or []))

        conf: dict[str, str] = {}
        for key, value in (typed.conf or {}).items():
            if not isinstance(key, str) or not key.startswith("spark."):
                raise EngineError(f'spec.conf: {key!r} is not a Spark setting (names start with "spark.")')
            conf[key] = substitute(_conf_value(value, f"spec.conf[{key!r}]"))

        master = typed.master or default_master
        if "spark.master" in conf:
            raise EngineError("spec.conf: set the master with spec.master, not spark.master")
        try:
            local_threads, _ = parse_master(master)
        except ValueError:
            if not master.startswith(_CLUSTER_MASTERS):
                raise EngineError(
                    f"spec.master: {master!r} is not local, local[N], local[*], spark://…, k8s://…, yarn or mesos://…"
                ) from None
            local_threads = None

        def requested(field_name: str, conf_key: str, parse: Callable[[Any, str], int]) -> int | None:
            # A setting may come as a spec field or as --conf; both at once must agree.
            from_field = spec.get(field_name)
            from_conf = conf.pop(conf_key, None)
            values = {}
            if from_field is not None:
                values[f"spec.{field_name}"] = parse(from_field, f"spec.{field_name}")
            if from_conf is not None:
                values[f"spec.conf[{conf_key!r}]"] = parse(from_conf, f"spec.conf[{conf_key!r}]")
            if len(set(values.values())) > 1:
                raise EngineError(f"{' and '.join(values)} disagree; give one")
            return next(iter(values.values()), None)

        memory = {name: requested(name, key, parse_memory_mb) for name, key in _MEMORY_CONF.items()}
        cores = {name: requested(name, key, _positive_int) for name, key in _CORES_CONF.items()}
        resources = SparkResources(
            master=master,
            local_threads=local_threads,
            driver_memory_mb=memory["driver_memory"] or SPARK_DEFAULT_DRIVER_MEMORY_MB,
            executor_memory_mb=memory["executor_memory"],
            driver_cores=cores["driver_cores"],
            executor_cores=cores["executor_cores"],
            num_executors=cores["num_executors"],
        )

        deploy_mode = typed.deploy_mode or "client"
        if deploy_mode == "cluster" and local_threads is not None:
            raise EngineError("spec.deploy_mode: cluster needs a cluster master (spark://, k8s://, yarn)")

        lineage = typed.lineage
        inputs = [substitute(x) for x in (lineage.inputs or [] if lineage else [])]
        outputs = [substitute(x) for x in (lineage.outputs or [] if lineage else [])]
        python = typed.python or sys.executable
        if not (shutil.which(python) or Path(python).is_file()):
            raise EngineError(f"spec.python: no Python interpreter at {python!r}")

        return cls(
            application=application,
            module=typed.module,
            artifact=artifact,
            args=args,
            conf=conf,
            resources=resources,
            deploy_mode=deploy_mode,
            python_path=tuple(substitute(p) for p in typed.python_path or []),
            env=dict(typed.env or {}),
            output_path=output_path,
            lineage_inputs=tuple(inputs),
            lineage_outputs=tuple(outputs),
            log_level=typed.log_level or "info",
            progress_interval_s=float(typed.progress_interval_s if typed.progress_interval_s is not None else 1.0),
            app_name=typed.name or task_key,
            python=python,
        )


@dataclass(frozen=True)
class SparkTaskLayout:
    """The task's folders under its work dir."""

    root: Path

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def driver_log(self) -> Path:
        return self.logs_dir / "driver.log"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    @property
    def events_dir(self) -> Path:
        return self.root / "events"

    def create(self) -> None:
        for folder in (self.conf_dir, self.logs_dir, self.events_dir, self.root / "local", self.root / "warehouse"):
            folder.mkdir(parents=True, exist_ok=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (Spark moves on to the next one if it is taken meanwhile)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (files vanishing while we look are skipped)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return total


def kill_marked_processes(marker: str) -> int:
    """SIGKILL every process group holding a descendant of this process started with ``marker``.

    ``run_process`` does not hand out the child's pid, and the PySpark daemon moves its workers into a
    group of their own, so the engine finds the job's processes by the marker in their environment.
    """
    import psutil

    groups: set[int] = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.environ().get(MARKER_ENV) == marker:
                groups.add(os.getpgid(child.pid))
        except (psutil.Error, ProcessLookupError):
            continue
    own_group = os.getpgid(0)
    for group in groups - {own_group}:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    return len(groups - {own_group})


_SECRET_SETTING = re.compile(r"secret|password|token|credential|(^|[._])(access[._])?key$", re.IGNORECASE)


def redact_conf(conf: Mapping[str, str]) -> dict[str, str]:
    """Settings fit for an event: values of secret-looking ones (s3a keys, passwords, tokens) hidden."""
    return {key: "***" if _SECRET_SETTING.search(key) else value for key, value in conf.items()}


@dataclass
class SparkSubmission:
    """The command, environment and effective settings of one spark-submit."""

    argv: list[str]
    env: dict[str, str]
    conf: dict[str, str]
    resources: SparkResources
    capped: list[Capping]
    ui_port: int
    marker: str

    def config_event_data(self, requested: SparkResources) -> dict[str, Any]:
        def describe(resources: SparkResources) -> dict[str, Any]:
            return {
                "master": resources.master,
                "driver_memory": f"{resources.driver_memory_mb}m",
                "executor_memory": f"{resources.executor_memory_mb}m" if resources.executor_memory_mb else None,
                "driver_cores": resources.driver_cores,
                "executor_cores": resources.executor_cores,
                "num_executors": resources.num_executors,
            }

        return {
            "requested": describe(requested),
            "effective": describe(self.resources),
            "capped": [c.__dict__ for c in self.capped],
            "conf": redact_conf(self.conf),
            "ui_port": self.ui_port,
        }


class SparkRunWatch:
    """Follows one spark-submit: its lines (levels, UI port, errors), REST progress and output size."""

    def __init__(self, context: TaskContext, job: SparkJobSpec, layout: SparkTaskLayout, submission: SparkSubmission):
        self.context = context
        self.job = job
        self.layout = layout
        self.submission = submission
        self.levels = LogLevelReader()
        self.errors: deque[str] = deque(maxlen=5)
        self._console_lock = threading.Lock()
        self._console = layout.console_log.open("a", encoding="utf-8")
        self.output_exceeded: int | None = None
        self.output_bytes = 0
        self._forward = getattr(context, "handle_line", None)
        self._poll_errors: set[str] = set()
        self.poller = SparkRestPoller(
            ui_port=submission.ui_port,
            interval_s=job.progress_interval_s,
            on_ui=self._on_ui,
            on_progress=self._on_progress,
            on_tick=self._check_output,
            on_error=self._on_poll_error,
        )

    def on_line(self, stream: str, line: str) -> None:
        with self._console_lock:
            if not self._console.closed:  # a reader thread outliving the process writes nothing more
                self._console.write(f"[{stream}] {line}\n")
                self._console.flush()
        if line.startswith("::lakehouse::") and callable(self._forward):
            self._forward(stream, line)  # the task_output convention: events and artifacts from the job
            return
        level: Level = self.levels.level_of(stream, line)
        started = _UI_STARTED.search(line)
        if started:
            self.poller.use_port(int(started.group(1)))
        if level == "error" and line.strip() and not line[0].isspace() and not line.startswith("Traceback ("):
            self.errors.append(line.strip())  # the messages, not the stack frames under them
        self.context.log(line, level=level, stream=stream)

    def _on_poll_error(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        if kind not in self._poll_errors:  # once per kind: a broken poller must not flood the events
            self._poll_errors.add(kind)
            self.context.emit("spark.progress_error", f"progress polling failed: {kind}: {exc}", level="warning")

    def _on_ui(self, url: str, app_id: str) -> None:
        self.context.emit("spark.ui", f"Spark UI at {url}", data={"url": url, "app_id": app_id})

    def _on_progress(self, progress: StageProgress) -> None:
        self.context.progress(progress.describe(), source="rest", **progress.as_data())

    def _check_output(self) -> None:
        cap = self.context.limits.max_output_bytes
        if cap is None or self.output_exceeded is not None:
            return
        self.output_bytes = tree_size(self.job.output_path)
        if self.output_bytes > cap:
            self.output_exceeded = self.output_bytes
            self.context.emit(
                "limits.output_exceeded",
                f"output under {self.job.output_path} is {self.output_bytes} bytes, over max_output_bytes={cap}; "
                "stopping the job",
                level="error",
                data={"output_bytes": self.output_bytes, "max_output_bytes": cap, "path": str(self.job.output_path)},
            )
            kill_marked_processes(self.submission.marker)

    def close(self) -> None:
        self.poller.stop()
        with self._console_lock:
            self._console.close()


class SparkEngine(Engine):
    """Runs a Spark application with spark-submit, or a Delta table operation (spec ``delta``)."""

    name = "spark"

    def __init__(self, *, default_master: str | None = None, spark_home: Path | None = None) -> None:
        self.default_master = default_master or os.environ.get(MASTER_ENV) or "local[*]"
        self._spark_home = spark_home

    @classmethod
    def available(cls) -> bool:
        return find_spec("pyspark") is not None and java_found()

    @property
    def spark_home(self) -> Path:
        """SPARK_HOME when it holds a Spark distribution, else the one inside the pyspark package."""
        if self._spark_home is not None:
            return self._spark_home
        configured = os.environ.get("SPARK_HOME")
        if configured and (Path(configured) / "bin" / "spark-submit").is_file():
            return Path(configured)
        spec = find_spec("pyspark")
        if spec is None or spec.origin is None:
            raise EngineError("pyspark is not installed: install the agent's spark extra (pip install '.[spark]')")
        return Path(spec.origin).parent

    def run(self, context: TaskContext) -> EngineResult:
        typed_spec(contract.SparkTaskSpec, context.spec, key=context.task_key, engine="spark")
        if context.spec.get("delta") is not None:
            job_fields = [k for k in ("application", "module", "application_artifact") if context.spec.get(k)]
            if job_fields:
                raise EngineError(
                    f"spec: a task is a Delta operation (delta) or a Spark job ({job_fields[0]}), not both"
                )
            return run_delta_operation(context, context.spec["delta"])
        if not java_found():
            raise EngineError(
                "Spark needs Java 17+: install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        job = SparkJobSpec.parse(
            context.spec, work_dir=context.work_dir, default_master=self.default_master, task_key=context.task_key
        )
        layout = SparkTaskLayout(context.work_dir / "spark")
        layout.create()
        job.output_path.mkdir(parents=True, exist_ok=True)
        application = self._application(context, job, layout)
        submission = self._submission(context, job, layout, application)
        self._emit_config(context, job, submission)

        watch = SparkRunWatch(context, job, layout, submission)
        outcome: ProcessOutcome | None = None
        try:
            watch.poller.start()
            outcome = context.run_process(
                submission.argv,
                cwd=context.work_dir,
                env=submission.env,
                on_line=watch.on_line,
                # RLIMIT_AS would stop the JVM, which reserves far more address space than it uses:
                # memory is bounded through the heap sizes above instead.
                rlimits=False,
            )
        finally:
            watch.close()
            summary = self._final_progress(context, layout)
            self._upload_logs(context, layout)
        return self._result(context, job, watch, outcome, summary, submission)

    # -- preparing ---------------------------------------------------------------------------------------

    def _application(self, context: TaskContext, job: SparkJobSpec, layout: SparkTaskLayout) -> Path:
        if job.application is not None:
            return job.application
        if job.module is not None:
            return _module_launcher(job.module, layout)
        assert job.artifact is not None
        target = layout.root / "app" / Path(job.artifact.name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fetched = context.fetch_artifact(task_key=job.artifact.task, name=job.artifact.name, dest=target)
        except Exception as exc:  # the agent's client errors, or a harness without artifacts
            raise EngineError(
                f"spec.application_artifact: cannot fetch artifact {job.artifact.name!r} of task "
                f"{job.artifact.task!r}: {exc}"
            ) from exc
        if fetched.suffix != ".py":
            raise EngineError(f"spec.application_artifact: {job.artifact.name!r} is not a .py file")
        return fetched

    def _submission(
        self, context: TaskContext, job: SparkJobSpec, layout: SparkTaskLayout, application: Path
    ) -> SparkSubmission:
        resources, capped = cap_resources(
            job.resources, max_memory_mb=context.limits.max_memory_mb, max_cores=context.limits.max_cores
        )
        write_spark_conf_dir(layout.conf_dir, log_file=layout.driver_log, root_level=job.log_level)
        ui_port = free_port()
        conf: dict[str, str] = {
            "spark.ui.port": str(ui_port),
            "spark.ui.showConsoleProgress": "false",
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": layout.events_dir.resolve().as_uri(),
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false",
            "spark.sql.warehouse.dir": (layout.root / "warehouse").resolve().as_uri(),
            **job.conf,  # the task's own settings win over these defaults
        }
        argv = [str(self.spark_home / "bin" / "spark-submit"), "--master", resources.master, "--name", job.app_name]
        argv += ["--driver-memory", f"{resources.driver_memory_mb}m"]
        if resources.executor_memory_mb is not None:
            argv += ["--executor-memory", f"{resources.executor_memory_mb}m"]
        if resources.driver_cores is not None:
            argv += ["--driver-cores", str(resources.driver_cores)]
        if resources.executor_cores is not None:
            argv += ["--executor-cores", str(resources.executor_cores)]
        if resources.num_executors is not None:
            argv += ["--num-executors", str(resources.num_executors)]
        if not resources.is_local:
            argv += ["--deploy-mode", job.deploy_mode]
            # Executors run elsewhere: ship them the same logging layout (their logs stay with the cluster).
            executor_log4j = layout.conf_dir / "log4j2-executor.properties"
            shutil.copyfile(layout.conf_dir / "log4j2.properties", executor_log4j)
            argv += ["--files", str(executor_log4j)]
            options = conf.get("spark.executor.extraJavaOptions", "")
            conf["spark.executor.extraJavaOptions"] = (
                f"{options} -Dlog4j2.configurationFile=log4j2-executor.properties".strip()
            )
        python_dirs = [resolve_location(p) for p in job.python_path if not p.endswith((".py", ".zip", ".egg"))]
        py_files = [resolve_location(p) for p in job.python_path if p.endswith((".py", ".zip", ".egg"))]
        for entry in [*python_dirs, *py_files]:
            if not Path(entry).exists():
                raise EngineError(f"spec.python_path: nothing at {entry}")
        if py_files:
            argv += ["--py-files", ",".join(py_files)]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        argv += [str(application), *job.args]

        if job.module is not None:
            python_dirs.insert(0, str(_module_root(job.module)))
        inherited = os.environ.get("PYTHONPATH")
        marker = uuid.uuid4().hex
        env_extra = {
            **job.env,
            "SPARK_HOME": str(self.spark_home),
            "SPARK_CONF_DIR": str(layout.conf_dir.resolve()),
            "PYSPARK_PYTHON": job.python,
            "PYSPARK_DRIVER_PYTHON": job.python,
            "LAKEHOUSE_OUTPUT_PATH": str(job.output_path),
            # Shuffle and block files inside the work dir (the env, not spark.local.dir, which Spark warns about).
            "SPARK_LOCAL_DIRS": str((layout.root / "local").resolve()),
            MARKER_ENV: marker,
        }
        if resources.is_local:
            # A cluster's executors must reach the driver, so there the address comes from configuration.
            env_extra["SPARK_LOCAL_IP"] = "127.0.0.1"
        python_path = [*python_dirs, *[p for p in (job.env.get("PYTHONPATH"), inherited) if p]]
        if python_path:
            env_extra["PYTHONPATH"] = os.pathsep.join(python_path)
        return SparkSubmission(
            argv=argv,
            env=context.environment_for_child(env_extra),
            conf=conf,
            resources=resources,
            capped=capped,
            ui_port=ui_port,
            marker=marker,
        )

    def _emit_config(self, context: TaskContext, job: SparkJobSpec, submission: SparkSubmission) -> None:
        resources = submission.resources
        summary = f"spark-submit {resources.master}, driver memory {resources.driver_memory_mb}m"
        if resources.executor_memory_mb is not None:
            summary += f", executor memory {resources.executor_memory_mb}m"
        if submission.capped:
            summary += "; " + "; ".join(c.describe() for c in submission.capped)
        context.emit(
            "spark.config",
            summary,
            level="warning" if submission.capped else "info",
            data=submission.config_event_data(job.resources),
        )

    # -- finishing ---------------------------------------------------------------------------------------

    def _final_progress(self, context: TaskContext, layout: SparkTaskLayout) -> StageProgress | None:
        summary = summarize_event_log(layout.events_dir)
        if not summary.files:
            return None
        context.progress(
            f"final: {summary.progress.describe()}",
            source="event_log",
            app_id=summary.app_id,
            **summary.progress.as_data(),
        )
        return summary.progress

    def _upload_logs(self, context: TaskContext, layout: SparkTaskLayout) -> None:
        uploads = [(layout.driver_log, "text/plain"), (layout.console_log, "text/plain")]
        uploads += [(path, "application/x-ndjson") for path in event_log_files(layout.events_dir)]
        for path, content_type in uploads:
            if path.is_file():
                context.upload_artifact(
                    path,
                    name=f"spark/{path.relative_to(layout.root).as_posix()}",
                    content_type=content_type,
                )

    def _result(
        self,
        context: TaskContext,
        job: SparkJobSpec,
        watch: SparkRunWatch,
        outcome: ProcessOutcome | None,
        progress: StageProgress | None,
        submission: SparkSubmission,
    ) -> EngineResult:
        assert outcome is not None  # run_process returned, or its exception left run() already
        output_bytes = tree_size(job.output_path)
        result: dict[str, Any] = {
            "app_id": watch.poller.app_id,
            "ui_url": watch.poller.ui_url,
            "exit_code": outcome.returncode,
            "master": submission.resources.master,
            "driver_memory": f"{submission.resources.driver_memory_mb}m",
            "capped": [c.describe() for c in submission.capped],
            "output_path": str(job.output_path),
            "output_bytes": output_bytes,
            "progress": progress.as_data() if progress is not None else None,
        }
        if outcome.killed_for == "timed_out":
            limits = [x for x in (context.timeout_s, context.limits.max_runtime_s) if x]
            within = f" of {min(limits)} s" if limits else ""
            return EngineResult("timed_out", result, f"the Spark job ran past its time limit{within} and was stopped")
        if outcome.killed_for is not None:
            return EngineResult("cancelled", result, f"the Spark job was stopped: {outcome.killed_for}")
        cap = context.limits.max_output_bytes
        if watch.output_exceeded is not None or (cap is not None and output_bytes > cap):
            size = max(output_bytes, watch.output_exceeded or 0)
            return EngineResult.failed(
                f"the job wrote {size} bytes under {job.output_path}, over the max_output_bytes cap of {cap}"
                + ("; it was stopped" if watch.output_exceeded is not None else ""),
                **result,
            )
        if outcome.returncode != 0:
            detail = f"; last errors: {' | '.join(watch.errors)}" if watch.errors else ""
            return EngineResult.failed(f"spark-submit exited with code {outcome.returncode}{detail}", **result)
        if job.lineage_outputs:
            payload = lineage_payload(
                outputs=[describe_location(o) for o in job.lineage_outputs],
                inputs=[describe_location(i) for i in job.lineage_inputs],
                job_name=job.app_name,
            )
            report_lineage(context, payload)
        return EngineResult("succeeded", result)


def java_found() -> bool:
    """Whether a java binary is reachable (JAVA_HOME or PATH), as spark-submit will look for it."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return True
    return shutil.which("java") is not None


def _module_root(module: str) -> Path:
    """The sys.path folder the module is found under (so the driver can import it too)."""
    try:
        spec = find_spec(module)
    except (ImportError, ValueError) as exc:
        raise EngineError(f"spec.module: cannot find {module!r}: {exc}") from None
    if spec is None or spec.origin is None or spec.origin in ("built-in", "frozen"):
        raise EngineError(f"spec.module: no module {module!r} on the agent's Python path")
    depth = module.count(".") + (1 if spec.submodule_search_locations is not None else 0)
    return Path(spec.origin).resolve().parents[depth]


def _module_launcher(module: str, layout: SparkTaskLayout) -> Path:
    """A .py file for spark-submit that runs ``module`` as __main__ (spark-submit takes files only)."""
    _module_root(module)  # fail here, with the field named, rather than inside the driver
    launcher = layout.root / "app" / "run_module.py"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(
        '"""Runs the task\'s module as __main__ (written by the Spark engine)."""\n'
        "import runpy\n"
        "import sys\n\n"
        f"sys.argv[0] = {module!r}\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n",
        encoding="utf-8",
    )
    return launcher
