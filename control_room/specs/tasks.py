"""The task spec of each engine as a pydantic model, and ``TaskSpec``: their union discriminated by ``engine``.

This is the one definition of what a task may say. The API validates submitted runs with it (and the
OpenAPI contract publishes it, so clients and the agent's generated models follow), job templates of
a bundle are checked with it, and the Submit dialog builds its form from its JSON Schema. Every model
is closed (an unknown field is an error) and strict (``"4"`` is not a number). Checks that JSON Schema
cannot say (exactly one of two fields, a dependency between fields) are model validators here; the
agent repeats only those few, next to the engine that needs them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

TASK_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
POOL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
SQL_MAX_CHARS = 1_000_000
Scalar = str | int | float | bool


class SpecModel(BaseModel):
    """Closed and strict: a typo or a quoted number is an error at submit, not a surprise on the agent."""

    model_config = ConfigDict(extra="forbid", strict=True)


def examples(*specs: dict[str, Any]) -> ConfigDict:
    """Model config publishing example specs in the JSON Schema (the contract, the Submit dialog)."""
    return ConfigDict(json_schema_extra={"examples": list(specs)})


def _one_of(model: BaseModel, names: tuple[str, ...], what: str) -> None:
    given = [name for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(names)} ({what}); got {', '.join(given) or 'none'}")


# Shared parts ------------------------------------------------------------------------------------


class ArtifactReference(SpecModel):
    """An artifact of an earlier task: of this run, or of run ``run_id`` of the same project."""

    task_key: str = Field(pattern=TASK_KEY_PATTERN, description="Key of the task that uploaded it.")
    name: str = Field(min_length=1, max_length=512, description="The artifact's name.", examples=["manifest.json"])
    run_id: str | None = Field(
        default=None, pattern=UUID_PATTERN, description="Another run of the same project (default: this run)."
    )


class TaskBase(SpecModel):
    """Fields every task has, whatever its engine: identity, dependencies, retries and routing."""

    key: str = Field(
        pattern=TASK_KEY_PATTERN, description="Unique within the run; other tasks name it in depends_on.",
        examples=["build"],
    )  # fmt: skip
    depends_on: list[str] = Field(
        default_factory=list, max_length=1000, description="Keys of tasks of this run that must succeed first."
    )
    timeout_s: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="Stop the attempt after this many seconds (timed_out)."
    )
    max_attempts: int = Field(default=3, ge=1, le=100, description="Attempts, the first included.")
    retry_backoff_s: int = Field(
        default=10, ge=0, le=86400, description="Base of the exponential backoff between attempts, seconds."
    )
    pool: str | None = Field(
        default=None, pattern=POOL_PATTERN, description="Run in this executor pool (skips the routing rules)."
    )
    labels: list[str] = Field(default_factory=list, max_length=64, description="Labels routing rules match on.")
    required_labels: list[str] = Field(
        default_factory=list, max_length=64, description="Labels the executor must have to claim the task."
    )
    description: str | None = Field(default=None, max_length=2000, description="What the task is for (shown only).")


class ProcessLimits(SpecModel):
    """Resource limits of a task that runs a child process (rlimits; the claim's caps apply as well)."""

    max_memory_mb: int | None = Field(
        default=None, ge=1, description="Address-space limit of the child, MB (the lower of this and the cap)."
    )
    cpu_time_s: int | None = Field(default=None, ge=1, description="CPU-time limit of the child, seconds.")


class ProcessFields(ProcessLimits):
    """Environment, folder and artifacts of a task that runs a command."""

    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the child.")
    cwd: str | None = Field(
        default=None,
        pattern=r"^[^/]",
        description="Folder to run in, relative to the attempt's work folder (created when missing; no ..).",
    )
    artifacts: list[str] = Field(
        default_factory=list,
        description="Glob patterns, relative to the work folder, of files uploaded when the task ends on its own.",
        examples=[["out/*.csv", "report.md"]],
    )

    @field_validator("cwd")
    @classmethod
    def _inside_work_folder(cls, value: str | None) -> str | None:
        if value is not None and ".." in value.split("/"):
            raise ValueError("must stay inside the work folder (no ..)")
        return value


# shell and python ----------------------------------------------------------------------------------


class ShellTaskSpec(TaskBase, ProcessFields):
    """A command in its own process group; output lines become log events."""

    model_config = examples(
        {"key": "land", "engine": "shell", "command": "echo landed > out.txt", "artifacts": ["out.txt"]}
    )

    engine: Literal["shell"] = Field(description="Runs a command.")
    command: str | None = Field(
        default=None, min_length=1, description="Run by `shell -c` (give this or argv).", examples=["make report"]
    )
    argv: list[str] | None = Field(
        default=None, min_length=1, description="Run as is, without a shell (give this or command).",
        examples=[["python", "-m", "report"]],
    )  # fmt: skip
    shell: str = Field(default="/bin/sh", min_length=1, description="The shell that runs command.")

    @model_validator(mode="after")
    def _command_or_argv(self) -> Self:
        _one_of(self, ("command", "argv"), "a string for the shell, or a list run as is")
        return self


class PythonTaskSpec(TaskBase, ProcessFields):
    """A ``module:function`` called with the run's params, or a script, in a child Python process."""

    model_config = examples(
        {
            "key": "summarize",
            "engine": "python",
            "function": "executor_agent.examples.demo_pipeline:summarize",
            "params": {"rows": 200},
        }
    )

    engine: Literal["python"] = Field(description="Runs Python code.")
    function: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="`package.module:function`; its JSON return value becomes the task's result.",
        examples=["executor_agent.examples.demo_pipeline:summarize"],
    )
    script: str | None = Field(
        default=None, min_length=1, description="A script (relative to the agent's folder) run as __main__."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the function, over the run's params of the same name."
    )
    args: list[str | int | float] = Field(default_factory=list, description="Command-line arguments of the script.")
    python: str | None = Field(default=None, min_length=1, description="Interpreter (default: the agent's).")
    python_path: list[str] = Field(default_factory=list, description="Folders put first on sys.path.")

    @model_validator(mode="after")
    def _function_or_script(self) -> Self:
        _one_of(self, ("function", "script"), "what to run")
        return self


# dbt -----------------------------------------------------------------------------------------------

DbtCommand = Literal["build", "run", "test", "seed", "snapshot", "compile", "docs generate"]
DBT_FULL_REFRESH_COMMANDS = ("build", "run", "seed", "compile")


class DbtProjectPath(SpecModel):
    """A dbt project folder: relative paths are looked up in the work folder, then the agent's folder."""

    path: str = Field(min_length=1, description="The folder holding dbt_project.yml.", examples=["examples/dbt"])


class DbtProjectArtifact(SpecModel):
    """A dbt project uploaded (as an archive) by an earlier task."""

    artifact: ArtifactReference


class DbtStateManifest(SpecModel):
    """The manifest of an earlier dbt run, for ``state:modified+`` selection and defer."""

    manifest_path: str = Field(min_length=1, description="Path of the earlier run's manifest.json.")


class DbtTaskSpec(TaskBase, ProcessLimits):
    """A dbt command on a project, with per-node results, lineage and artifacts."""

    model_config = examples(
        {
            "key": "build",
            "engine": "dbt",
            "command": "build",
            "project": {"path": "examples/dbt"},
            "select": ["path:models/marts+"],
            "threads": 4,
        }
    )

    engine: Literal["dbt"] = Field(description="Runs dbt.")
    command: DbtCommand = Field(description="The dbt command.", examples=["build"])
    project: str | DbtProjectPath | DbtProjectArtifact = Field(
        description='The project: a path, {"path": ...}, or {"artifact": {...}} of an earlier task.',
        examples=[{"path": "examples/dbt"}],
    )
    select: str | list[str] | None = Field(default=None, description="dbt selector(s).", examples=[["tag:daily"]])
    exclude: str | list[str] | None = Field(default=None, description="dbt selector(s) to leave out.")
    vars: dict[str, Any] = Field(default_factory=dict, description="dbt vars; the run's params are added on top.")
    full_refresh: bool = Field(default=False, description="Rebuild incremental models (build, run, seed, compile).")
    target: str | None = Field(default=None, min_length=1, description="The profile output to use.")
    threads: int | None = Field(default=None, ge=1, le=64, description="dbt threads.", examples=[4])
    profile: dict[str, Any] | None = Field(
        default=None,
        description='One output ({"type": "duckdb", "path": "shop.duckdb"}) or {"target": ..., "outputs": {...}}; '
        'a value {"env": "NAME"} is read from the agent\'s environment as a secret. Default: DuckDB on the '
        "agent's warehouse.",
    )
    state: DbtStateManifest | DbtProjectArtifact | None = Field(
        default=None, description="An earlier run's manifest, for state:modified+ and defer."
    )
    defer: bool = Field(default=False, description="Resolve unselected refs against state (needs state).")
    docs: bool = Field(default=False, description="Also generate the catalog (column types) after the command.")
    openlineage_namespace: str | None = Field(
        default=None, min_length=1, description="Namespace of emitted OpenLineage jobs (default lakehouse/<project>)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.full_refresh and self.command not in DBT_FULL_REFRESH_COMMANDS:
            raise ValueError(f"full_refresh applies to {', '.join(DBT_FULL_REFRESH_COMMANDS)}, not to {self.command}")
        if self.defer and self.state is None:
            raise ValueError("defer needs state: the manifest of the run to defer to")
        return self


# Delta (the delta engine, and spark tasks with a delta object) ---------------------------------------


class DeltaSource(SpecModel):
    """Rows to write: files at ``path``, inline ``rows``, or a Delta ``table`` (at a version or time)."""

    path: str | None = Field(default=None, min_length=1, description="A Parquet/CSV/JSON file or folder.")
    format: Literal["parquet", "csv", "json"] = Field(default="parquet", description="Format of the files at path.")
    rows: list[dict[str, Any]] | None = Field(default=None, description="Inline rows, one object per row.")
    table: str | None = Field(default=None, min_length=1, description="Another Delta table.")
    version: int | None = Field(default=None, ge=0, description="Version of the source table to read.")
    timestamp: str | None = Field(default=None, description="ISO 8601 time of the source table to read.")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        _one_of(self, ("path", "rows", "table"), "where the rows come from")
        if self.version is not None and self.timestamp is not None:
            raise ValueError("give version or timestamp, not both")
        return self


class DeltaColumn(SpecModel):
    """A column of a table created from an explicit schema."""

    name: str = Field(min_length=1)
    type: str = Field(
        description="string, long, integer, short, byte, double, float, boolean, binary, date, timestamp, "
        "timestamp_ntz or decimal(p,s).",
        examples=["long"],
    )
    nullable: bool = True


DeltaOperationName = Literal[
    "create", "append", "overwrite", "merge", "delete", "optimize", "vacuum", "history", "read"
]


class DeltaOperation(SpecModel):
    """One operation on one Delta table through delta-rs."""

    model_config = examples({"operation": "history", "table": ".lakehouse/lake/daily_sales"})

    operation: DeltaOperationName = Field(description="What to do to the table.")
    table: str = Field(min_length=1, description="The table's location (a folder, or s3://…).")
    source: DeltaSource | None = Field(default=None, description="Rows to write (append, overwrite, merge, create).")
    table_schema: list[DeltaColumn] | None = Field(
        default=None, alias="schema", min_length=1, description="Columns of a table created without a source."
    )
    schema_mode: Literal["merge", "overwrite"] | None = Field(
        default=None, description="Let a write change the table's schema."
    )
    if_exists: Literal["error", "ignore"] = Field(default="error", description="create: when the table exists.")
    partition_by: str | list[str] = Field(default_factory=list, description="Partition columns (create).")
    keys: str | list[str] = Field(default_factory=list, description="Columns that identify a row (merge).")
    predicate: str | None = Field(default=None, description='Rows to delete (delete); "true" deletes every row.')
    when_matched: Literal["update", "ignore"] | None = Field(default=None, description="merge: a matching row.")
    when_not_matched: Literal["insert", "ignore"] | None = Field(default=None, description="merge: a new row.")
    delete_not_matched_by_source: bool | None = Field(default=None, description="merge: delete rows not in source.")
    mode: Literal["compact", "z_order"] | None = Field(default=None, description="optimize: compact or z-order.")
    columns: str | list[str] = Field(default_factory=list, description="z_order columns, or the columns to read.")
    target_size: int | None = Field(default=None, ge=0, description="optimize: target file size, bytes.")
    retention_hours: int | None = Field(default=None, ge=0, description="vacuum: keep files newer than this.")
    enforce_retention_duration: bool | None = Field(default=None, description="vacuum: refuse a short retention.")
    dry_run: bool | None = Field(default=None, description="vacuum: list the files without deleting them.")
    version: int | None = Field(default=None, ge=0, description="read: the table version.")
    timestamp: str | None = Field(default=None, description="read: the table as of this ISO 8601 time.")
    format: Literal["parquet", "json"] | None = Field(default=None, description="read: the artifact's format.")
    limit: int | None = Field(default=None, ge=0, description="read: at most this many rows; history: entries.")
    name: str | None = Field(default=None, description="create: the table's name in its metadata.")
    description: str | None = Field(default=None, description="create: the table's description.")

    @model_validator(mode="after")
    def _operation_needs(self) -> Self:
        if self.operation in ("append", "overwrite", "merge") and self.source is None:
            raise ValueError(f"{self.operation} needs a source")
        if self.operation == "create" and self.source is None and self.table_schema is None:
            raise ValueError("create needs a schema ([{name, type}]) or a source to take it from")
        if self.operation == "merge" and not self.keys:
            raise ValueError("merge needs keys: the columns that identify a row")
        if self.operation == "delete" and not (self.predicate or "").strip():
            raise ValueError('delete needs a predicate; to delete every row say so with "true"')
        if self.version is not None and self.timestamp is not None:
            raise ValueError("give version or timestamp, not both")
        return self


class DeltaTaskSpec(TaskBase):
    """A Delta table operation on an agent without Java (the same as a spark task's delta object)."""

    model_config = examples(
        {"key": "compact", "engine": "delta", "delta": {"operation": "optimize", "table": "/lake/orders"}}
    )

    engine: Literal["delta"] = Field(description="Runs a Delta table operation.")
    delta: DeltaOperation


# spark ---------------------------------------------------------------------------------------------


class SparkApplicationArtifact(SpecModel):
    """A .py application uploaded by an earlier task of the run."""

    task: str = Field(pattern=TASK_KEY_PATTERN, description="Key of the task that uploaded it.")
    name: str = Field(min_length=1, description="The artifact's name.")


class SparkLineage(SpecModel):
    """Locations the job reads and writes, reported as lineage when it succeeds."""

    inputs: list[str] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)


SparkMemory = Annotated[
    str | int,
    Field(description='A size such as "2g" or "512m", or a number of MB.', examples=["1g"]),
]


class SparkTaskSpec(TaskBase, ProcessLimits):
    """One spark-submit (or, with ``delta``, one Delta table operation), observed and bounded by the agent."""

    model_config = examples(
        {
            "key": "daily_sales",
            "engine": "spark",
            "application": "examples/spark/daily_sales.py",
            "master": "local[2]",
            "driver_memory": "1g",
            "args": ["--output", "{output_path}/daily_sales"],
        }
    )

    engine: Literal["spark"] = Field(description="Runs a Spark application.")
    application: str | None = Field(
        default=None, pattern=r"\.py$", description="A .py file (relative: the agent's folder).",
        examples=["examples/spark/daily_sales.py"],
    )  # fmt: skip
    module: str | None = Field(
        default=None, pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$", description="A Python module run as __main__."
    )
    application_artifact: SparkApplicationArtifact | None = Field(
        default=None, description="The application, uploaded by an earlier task."
    )
    delta: DeltaOperation | None = Field(default=None, description="Instead of a job: a Delta table operation.")
    args: list[Scalar] = Field(
        default_factory=list, description='Arguments; "{output_path}" and "{work_dir}" are replaced.'
    )
    conf: dict[str, Scalar] = Field(
        default_factory=dict, description='Spark settings passed as --conf (names start with "spark.").',
        examples=[{"spark.sql.shuffle.partitions": 8}],
    )  # fmt: skip
    master: str | None = Field(
        default=None, description="local[N], spark://, k8s://, yarn (default: the agent's).", examples=["local[2]"]
    )
    deploy_mode: Literal["client", "cluster"] = Field(default="client", description="cluster needs a cluster master.")
    driver_memory: SparkMemory | None = None
    executor_memory: SparkMemory | None = None
    driver_cores: int | None = Field(default=None, ge=1)
    executor_cores: int | None = Field(default=None, ge=1)
    num_executors: int | None = Field(default=None, ge=1)
    python_path: list[str] = Field(
        default_factory=list, description="Folders (PYTHONPATH) and .py/.zip/.egg files (--py-files) of the job."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the job.")
    output_path: str | None = Field(
        default=None, description="Where the job writes (default <work dir>/output); $LAKEHOUSE_OUTPUT_PATH."
    )
    lineage: SparkLineage | None = None
    log_level: Literal["trace", "debug", "info", "warn", "error", "fatal", "off", "all"] = Field(
        default="info", description="Root log4j level."
    )
    progress_interval_s: float = Field(default=1.0, ge=0.1, le=60, description="How often progress is polled.")
    python: str | None = Field(default=None, min_length=1, description="The job's interpreter (default: agent's).")
    name: str | None = Field(default=None, description="The Spark application name (default: the task key).")

    @model_validator(mode="after")
    def _what_to_run(self) -> Self:
        _one_of(self, ("application", "module", "application_artifact", "delta"), "the job, or a Delta operation")
        if self.deploy_mode == "cluster" and (self.master is None or self.master.startswith("local")):
            raise ValueError("deploy_mode cluster needs a cluster master (spark://, k8s://, yarn)")
        if "spark.master" in self.conf:
            raise ValueError("set the master with master, not conf spark.master")
        return self


# SQL engines ---------------------------------------------------------------------------------------


OutputFormat = Literal["parquet", "csv"]


class SqlOutput(SpecModel):
    """How a result set is stored: Parquet always, CSV on request, and a JSON preview."""

    formats: list[OutputFormat] = Field(
        default_factory=lambda: list[OutputFormat](["parquet"]), description="Parquet is always written."
    )
    preview_rows: int = Field(default=100, ge=0, le=10_000, description="Rows in the JSON preview.")
    row_group_rows: int = Field(default=65_536, ge=1_000, le=1_048_576, description="Rows per Parquet row group.")


class SqlFields(SpecModel):
    """What DuckDB and Trino tasks share: the script, result storage and the scanned-bytes cap."""

    sql: str = Field(
        min_length=1, max_length=SQL_MAX_CHARS, description="A statement or a script (statements separated by ;).",
        examples=["select 42 as answer"],
    )  # fmt: skip
    output: SqlOutput | None = None
    max_scan_bytes: int | None = Field(
        default=None, ge=0, description="Refuse a statement estimated to scan more (the lower of this and the cap)."
    )
    on_unknown_estimate: Literal["run", "refuse"] = Field(
        default="run", description="What to do when the engine cannot estimate the scan."
    )
    user: str | None = Field(default=None, min_length=1, description="The user statements run as.")
    sql_schema: str | None = Field(default=None, alias="schema", min_length=1, description="The current schema.")
    session_properties: dict[str, Scalar] = Field(default_factory=dict, description="Session settings.")


class TableLocation(SpecModel):
    """A lake table registered as a view: its location and format."""

    path: str = Field(min_length=1)
    format: Literal["delta", "parquet", "csv"] | None = Field(default=None, description="Default: guessed.")


class DuckdbTaskSpec(TaskBase, SqlFields):
    """SQL on the agent's DuckDB warehouse, with lake tables registered as views."""

    model_config = examples(
        {"key": "report", "engine": "duckdb", "sql": "select 42 as answer", "output": {"formats": ["csv"]}}
    )

    engine: Literal["duckdb"] = Field(description="Runs SQL on DuckDB.")
    database: str | None = Field(default=None, min_length=1, description="Database file (default: the warehouse).")
    read_only: bool = Field(default=False, description="Open the database read-only.")
    tables: dict[str, str | TableLocation] = Field(
        default_factory=dict, description="Views to register: name -> location.",
        examples=[{"trips": "s3://bucket/trips"}],
    )  # fmt: skip
    discover_tables: bool = Field(default=True, description="Register the tables found in the agent's data folder.")


class TrinoTaskSpec(TaskBase, SqlFields):
    """SQL on the agent's Trino cluster (the cluster and its credentials are agent settings)."""

    model_config = examples({"key": "q", "engine": "trino", "catalog": "tpch", "schema": "tiny", "sql": "select 1"})

    engine: Literal["trino"] = Field(description="Runs SQL on Trino.")
    catalog: str | None = Field(default=None, min_length=1, description="The current catalog.")
    roles: dict[str, Scalar] = Field(default_factory=dict, description='Roles per catalog: {"system": "analyst"}.')
    client_tags: list[str] = Field(default_factory=list, description="Client tags (non-empty, without commas).")

    @field_validator("client_tags")
    @classmethod
    def _plain_tags(cls, value: list[str]) -> list[str]:
        if any(not tag or "," in tag for tag in value):
            raise ValueError("each tag is a non-empty string without commas")
        return value


# catalog_sync ---------------------------------------------------------------------------------------


class CatalogSyncTaskSpec(TaskBase):
    """A sync of the run's project with an outside catalog (OpenMetadata), done by the control room for
    the agent holding the task's lease; its differences (the dry run's diff) are the task's result."""

    model_config = examples(
        {"key": "openmetadata", "engine": "catalog_sync", "catalog": "openmetadata", "dry_run": False},
        {"key": "preview", "engine": "catalog_sync", "dry_run": True},
    )

    engine: Literal["catalog_sync"] = Field(description="Syncs the project with an outside catalog.")
    catalog: Literal["openmetadata"] = Field(
        default="openmetadata",
        description="The catalog: the OpenMetadata server the control room is configured with "
        "(LAKEHOUSE_OPENMETADATA_URL).",
    )
    dry_run: bool = Field(
        default=False, description="Only list the differences (the diff is the task's result); write nothing."
    )


# serving -------------------------------------------------------------------------------------------


class ServingTaskSpec(TaskBase, ProcessLimits):
    """A long-running service task: `mlflow models serve` of one model version until the task is cancelled.

    The agent reports the replica's address (``POST /tasks/{id}/serving``) once the server answers, keeps
    the lease while it lives, and fails the attempt when the process dies (the task is retried; the
    control room starts a new run for a replica whose task ended for good). Serving endpoints create
    these tasks; they are rarely written by hand.
    """

    model_config = examples(
        {"key": "serve", "engine": "serving", "endpoint": "churn", "model_uri": "models:/churn-classifier/1"}
    )

    engine: Literal["serving"] = Field(description="Serves an MLflow model over HTTP until cancelled.")
    model_uri: str = Field(
        min_length=1, max_length=1000, description="What `mlflow models serve -m` loads.",
        examples=["models:/churn-classifier/1"],
    )  # fmt: skip
    endpoint: str | None = Field(default=None, max_length=63, description="The serving endpoint it belongs to.")
    host: str = Field(default="127.0.0.1", min_length=1, max_length=200, description="Address to listen on.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Port (default: a free one).")
    advertise_host: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="Host the control room reaches the replica at (default: host, or the agent's name for 0.0.0.0).",
    )  # fmt: skip
    workers: int = Field(default=1, ge=1, le=64, description="Server worker processes.")
    ready_timeout_s: int = Field(
        default=180, ge=5, le=3600, description="Fail the attempt when the server does not answer /ping by then."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the server.")


# The union -------------------------------------------------------------------------------------------

TASK_SPEC_MODELS: tuple[type[TaskBase], ...] = (
    ShellTaskSpec,
    PythonTaskSpec,
    DbtTaskSpec,
    SparkTaskSpec,
    DeltaTaskSpec,
    DuckdbTaskSpec,
    TrinoTaskSpec,
    CatalogSyncTaskSpec,
    ServingTaskSpec,
)
AnyTaskSpec = Annotated[
    ShellTaskSpec
    | PythonTaskSpec
    | DbtTaskSpec
    | SparkTaskSpec
    | DeltaTaskSpec
    | DuckdbTaskSpec
    | TrinoTaskSpec
    | CatalogSyncTaskSpec
    | ServingTaskSpec,
    Field(discriminator="engine"),
]


class TaskSpec(RootModel[AnyTaskSpec]):
    """One task of a run: the fields every task has, and its engine's own, chosen by ``engine``."""


ENGINES: tuple[str, ...] = tuple(
    str(get_args(model.model_fields["engine"].annotation)[0]) for model in TASK_SPEC_MODELS
)


class RunSpec(SpecModel):
    """What a run does: its tasks, each typed by its engine (``TaskSpec``, discriminated by ``engine``)."""

    model_config = examples(
        {
            "name": "nightly",
            "tasks": [
                {"key": "land", "engine": "shell", "command": "echo landed"},
                {
                    "key": "build",
                    "engine": "dbt",
                    "command": "build",
                    "project": "examples/dbt",
                    "depends_on": ["land"],
                },
            ],
        }
    )

    name: str | None = Field(default=None, max_length=200, description="Shown in lists (default: run).")
    tasks: list[TaskSpec] = Field(min_length=1, max_length=1000, description="Keys unique, dependencies acyclic.")


def validate_task(task: Any) -> TaskBase:
    """One task spec, validated by its engine's model (pydantic ValidationError naming the field)."""
    return TaskSpec.model_validate(task).root


def _union_labels() -> frozenset[str]:
    names = {"str", "int", "float", "bool", "list[str]", "dict[str,any]", "list[dict[str,any]]"}
    pending: list[type] = [SpecModel]
    while pending:
        model = pending.pop()
        names.add(model.__name__)
        pending.extend(model.__subclasses__())
    return frozenset(names)


def _without_union_tags(loc: tuple[Any, ...] | list[Any]) -> list[str | int]:
    # A union puts the member in the location: the engine tag ("tasks", 0, "dbt", "threads") or the member's
    # type ("conf", "spark.x", "str"); neither is a field.
    labels = _union_labels()
    out: list[str | int] = []
    for index, part in enumerate(loc):
        if part in ENGINES and (index == 0 or isinstance(loc[index - 1], int)):
            continue
        if isinstance(part, str) and part in labels and out and out[-1] not in ("env", "conf", "tables"):
            continue
        out.append(part if isinstance(part, int) else str(part))
    return out


def json_pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    """RFC 6901 pointer of a validation location (``("spec", "tasks", 0, "threads")`` -> ``/spec/tasks/0/threads``)."""
    parts = _without_union_tags(loc)
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def dotted_field(loc: tuple[Any, ...] | list[Any]) -> str:
    """The same location as ``spec.tasks[0].threads`` (the ``field`` of problem details)."""
    out = ""
    for part in _without_union_tags(loc):
        out += f"[{part}]" if isinstance(part, int) or str(part).isdigit() else (f".{part}" if out else str(part))
    return out


def pointer_of_field(field: str) -> str:
    """``spec.tasks[0].threads`` -> ``/spec/tasks/0/threads`` (for errors raised with a dotted field)."""
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        parts.append(int(index) if index else name)
    return json_pointer(parts)


def spec_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    """A pydantic error as problem-details items: field, pointer and message (tags of unknown engines
    point at ``engine``)."""
    return merged_items(spec_error_items(error, (*prefix, *error.get("loc", ()))) for error in exc.errors())


def merged_items(items: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """One item per field: the members of a union each say why they refused a value."""
    merged: dict[str, dict[str, str]] = {}
    for item in items:
        key = item.get("pointer") or item.get("field") or ""
        if key in merged:
            if item["message"] not in merged[key]["message"]:
                merged[key]["message"] += f"; or {item['message']}"
        else:
            merged[key] = item
    return list(merged.values())


def spec_error_items(error: Any, loc: Sequence[Any]) -> dict[str, str]:
    """One pydantic error at ``loc`` as field, pointer and message; an unknown engine points at ``engine``."""
    loc = list(loc)
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "union_tag_invalid":
        loc.append("engine")
        tag = (error.get("ctx") or {}).get("tag")
        message = f"unknown engine {tag!r}; engines: {', '.join(ENGINES)}"
    elif error.get("type") == "union_tag_not_found":
        loc.append("engine")
        message = f"required: one of {', '.join(ENGINES)}"
    return {"field": dotted_field(loc) or "body", "pointer": json_pointer(loc), "message": message}
