"""`lakehouse validate contract|migrations|workflows|schemas`: the PR gate's checks, runnable locally.

Each prints its verdict and findings, exits 1 on failure, and with ``--json-out`` writes the check
result that `lakehouse ci summary` turns into the PR comment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from control_room.api.contract import CONTRACT_PATH
from control_room.config import MIGRATIONS_DIR
from control_room.validators.contract import check_contract
from control_room.validators.migrations import check_migrations
from control_room.validators.results import CheckResult
from control_room.validators.schemas import check_schemas, write_schemas
from control_room.validators.workflows import WORKFLOWS_DIR, check_workflows

app = typer.Typer(help="PR-gate checks: contract, migrations, workflows, published schemas.", no_args_is_help=True)

JsonOut = typer.Option(None, "--json-out", help="Also write the check result (JSON) here, for `lakehouse ci summary`.")
BaseRef = typer.Option(
    None, "--base", help="Git ref to compare with, e.g. origin/main (the PR's base branch). Omitted: no comparison."
)


def finish(result: CheckResult, json_out: Path | None) -> None:
    """Print a result (summary, then one line per finding), write it if asked, exit 1 when it failed."""
    if json_out is not None:
        result.write(json_out)
    stream_err = result.status == "failed"
    typer.echo(f"{result.name}: {result.status}: {result.summary}", err=stream_err)
    for line in result.details:
        typer.echo(f"  {line}", err=stream_err)
    if result.status == "failed":
        raise typer.Exit(1)


def print_or_write(text: str, out: Path | None) -> None:
    """Print a rendered report, or write it to ``out`` (its folder created) and say so."""
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("contract")
def contract_command(
    path: Annotated[Path, typer.Option("--file", help="The OpenAPI file.")] = CONTRACT_PATH,
    base: str | None = BaseRef,
    json_out: Path | None = JsonOut,
) -> None:
    """OpenAPI validity, and no breaking change against --base (removed operations, new required fields, ...)."""
    finish(check_contract(path, base), json_out)


@app.command("migrations")
def migrations_command(
    directory: Annotated[Path, typer.Option("--dir", help="The migrations folder.")] = MIGRATIONS_DIR,
    base: str | None = BaseRef,
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="A Postgres server to apply on (a temporary database is created and dropped; needs CREATEDB). "
        "Omitted: a throwaway embedded PostgreSQL.",
    ),
    lint: bool = typer.Option(True, "--lint/--no-lint", help="Run squawk on the new files."),
    apply: bool = typer.Option(True, "--apply/--no-apply", help="Apply every file from scratch."),
    json_out: Path | None = JsonOut,
) -> None:
    """Naming, forward-only against --base (no merged file edited), squawk lint, apply from scratch."""
    finish(check_migrations(directory, base_ref=base, database_url=database_url, lint=lint, apply=apply), json_out)


@app.command("workflows")
def workflows_command(
    directory: Annotated[Path, typer.Option("--dir", help="The workflows folder.")] = WORKFLOWS_DIR,
    json_out: Path | None = JsonOut,
) -> None:
    """actionlint on the GitHub Actions workflows (skipped, with the reason, when actionlint is unavailable)."""
    finish(check_workflows(directory), json_out)


@app.command("schemas")
def schemas_command(
    write: bool = typer.Option(False, "--write", help="Regenerate the files instead of checking them."),
    json_out: Path | None = JsonOut,
) -> None:
    """The JSON Schemas published under spec/ match the models that define the formats."""
    if write:
        for path in write_schemas():
            typer.echo(f"wrote {path}")
    finish(check_schemas(), json_out)
