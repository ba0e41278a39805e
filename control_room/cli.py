"""The `lakehouse` command: assembles the command groups (db, executors, users, bundle, validate, ...).

Command groups are imported lazily, when they are run: a command that touches the database imports
only its own module, not every group's (jsonschema's format checkers, the API, boto3, ...), so it
answers in well under 2 s. ``lakehouse --help`` lists every group from the table below without
importing any; tests/commands/test_cli_lazy.py checks the table's help against each group's own.
"""

from __future__ import annotations

import importlib

import typer
import typer.main
from typer import _click as click  # typer 0.29 vendors click: its groups take these types, not the click package's
from typer.core import TyperCommand, TyperGroup

# name -> (module under control_room.commands, its Typer attribute, the group's help as that Typer says it).
LAZY_GROUPS: dict[str, tuple[str, str, str]] = {
    "db": ("db", "app",
           "The control-plane database (LAKEHOUSE_DATABASE_URL, or the embedded Postgres under .lakehouse/)."),
    "executors": ("executors", "app", "Executor agents and their tokens."),
    "contract": ("contract", "app", "The wire contract (contracts/lakehouse-executor.openapi.yaml)."),
    "users": ("users", "app", "People who sign in to the control room: local accounts and their roles."),
    "bundle": ("bundle", "app",
               "GitOps bundles: a YAML directory of job templates, schedules, routing, caps, alerts and gates."),
    "validate": ("validate", "app", "PR-gate checks: contract, migrations, workflows, published schemas."),
    "backlog": ("backlog", "app", "The canonical backlog (spec/backlog.yaml): epics -> items."),
    "caps": ("reports", "caps_app", "Caps (ops.caps) and their usage (ops.cap_usage)."),
    "capabilities": ("reports", "capabilities_app",
                     "The capability matrix versus Databricks (spec/capabilities.yaml)."),
    "ci": ("ci", "app", "Continuous integration helpers for the PR gate."),
    "jobs": ("jobs", "app", "Job templates: run them, their schedules, backfills."),
    "tokens": ("tokens", "app", "A person's API tokens for calling the HTTP API (lhu_…)."),
    "alerts": ("alerts", "app", "Alert rules and incidents: list them, ack, snooze, resolve."),
    "promotions": ("promotions", "app",
                   "Promotion gates: promote job versions dev → staging → prod, approve, roll back."),
    "runs": ("runs", "app",
             "Runs: re-run a finished run (all tasks, failed ones, or from a task); print a task's log."),
    "routing": ("governance", "routing_app", "The routing matrix: its rules and warnings, and where a task would go."),
    "governance": ("governance", "governance_app",
                   "GitOps drift of routing and caps against the deployed bundle; export; bundle-only lock."),
    "ml": ("ml", "app", "MLflow: experiments, registered models and their aliases."),
    "policies": ("policies", "app",
                 "Access policies: grants, row filters and column masks; groups, service principals; Trino export."),
    "dashboards": ("dashboards", "app", "Dashboards: shipped templates, a project's dashboards and their versions."),
    "catalog": ("catalog", "app", "The dataset catalog: sync with OpenMetadata."),
    "superset": ("superset", "app", "A local Superset: install it in its own virtualenv and start it."),
    "serving": ("serving", "app", "Model serving endpoints: create, canary, promote, roll back, stop; tokens."),
    "projects": ("projects", "app", "Projects: event retention (days before a finished run's events move to Parquet)."),
}  # fmt: skip


def load_group(name: str) -> TyperGroup:
    """Import one lazy command group and build its click command."""
    module_name, attribute, _help = LAZY_GROUPS[name]
    module = importlib.import_module(f"control_room.commands.{module_name}")
    command = typer.main.get_group(getattr(module, attribute))  # a group even with one command
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The top-level group: eager commands as Typer registers them, plus LAZY_GROUPS imported on use."""

    _listing_help = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = super().list_commands(ctx)
        return eager + [name for name in LAZY_GROUPS if name not in eager]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_GROUPS:
            return super().get_command(ctx, cmd_name)
        if self._listing_help:  # the help page only needs the name and the help line
            return TyperCommand(cmd_name, help=LAZY_GROUPS[cmd_name][2])
        command = load_group(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing_help = False


app = typer.Typer(
    name="lakehouse",
    help="Lakehouse Control Room: control plane, web UI and contract API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


@app.callback()
def lakehouse() -> None:
    """Lakehouse Control Room: control plane, web UI and contract API."""


@app.command("run")
def run_command() -> None:
    """Start Postgres (embedded unless LAKEHOUSE_DATABASE_URL is set), migrate, serve UI + API on one port."""
    from control_room import supervisor  # only this command needs the supervisor's imports

    raise typer.Exit(supervisor.run())


@app.command("api")
def api_command() -> None:
    """Serve the contract API alone (no UI) with LAKEHOUSE_API_WORKERS processes, for split deployments."""
    from control_room import api_server  # only this command needs uvicorn

    raise typer.Exit(api_server.serve())


@app.command(
    "promote", add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
def promote_command(ctx: typer.Context) -> None:
    """Request the promotion of a job version: lakehouse promote JOB --version N --to staging|prod."""
    from control_room.commands import promotions  # imported on use, like the groups

    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(promotions.promote)
    typer.main.get_command(single).main(args=ctx.args, prog_name="lakehouse promote", standalone_mode=True)


def main() -> None:
    """Console-script entry point (``lakehouse``)."""
    app()
