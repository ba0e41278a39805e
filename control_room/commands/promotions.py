"""`lakehouse promotions ...` and `lakehouse promote`: request, approve, reject and cancel promotions of job
versions through their gates, roll an environment back, report CI checks, and show the pipeline.

The CLI works on the control plane's own (trusted) connection: ``--as EMAIL`` names the person who acts, and
the SQL functions apply that person's role and the gate's approvers exactly as for a signed-in user.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import psycopg
import typer

from control_room.commands.jobs import _actor
from control_room.commands.on_database import on_database
from control_room.services import auth, jobs, promotions
from control_room.services.errors import Invalid
from control_room.services.runs import resolve_project

app = typer.Typer(help="Promotion gates: promote job versions dev → staging → prod, approve, roll back.",
                  no_args_is_help=True)  # fmt: skip

AsOption = Annotated[
    str | None, typer.Option("--as", help="E-mail of the person acting (approvals need one; never the requester).")
]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why (required to reject).")]


async def _user_id(conn: psycopg.AsyncConnection, email: str | None) -> uuid.UUID | None:
    if email is None:
        return None
    found = await auth.user_id_by_email(conn, email)
    if found is None:
        raise Invalid(f'no user with e-mail "{email}"; create one with `lakehouse users create`', field="--as")
    return found


def _ticks(request: dict[str, Any]) -> list[str]:
    lines = []
    for check in request["checks"]:
        mark = "✓" if check["passed"] else "✗"
        lines.append(f"  {mark} {check['label']}: {check['summary']}")
        lines.extend(f"      {e['kind']} {e['id']}  {e['label']}" for e in check["evidence"][:5])
    return lines


def _print_request(request: dict[str, Any]) -> None:
    typer.echo(
        f"{request['id']}  {request['project']}/{request['job']} v{request['version']} "
        f"{request['from_environment']} → {request['to_environment']}  {request['status']}"
    )
    typer.echo(f"  gate {request['gate_name']} · requested by {request['requested_by']}"
               f" · approvals {request['approvals']}/{request['required_approvals']}")  # fmt: skip
    for line in _ticks(request):
        typer.echo(line)
    for decision in request.get("decisions", []):
        note = "" if decision["decision"] != "approve" or decision["in_force"] else " (expired: evidence changed)"
        typer.echo(f"  {decision['decision']} by {decision['actor']}{note}: {decision['comment']}")
    if request["outcome"]:
        typer.echo(f"  outcome: {request['outcome']}")


def promote(
    job: Annotated[str, typer.Argument(help="Template id, name or PROJECT/NAME.")],
    version: Annotated[int, typer.Option("--version", "-v", help="The version to promote.")],
    to: Annotated[str, typer.Option("--to", help="staging or prod.")],
    comment: CommentOption = "",
    as_user: AsOption = None,
    project: Annotated[str | None, typer.Option(help="Project slug (when the name is ambiguous).")] = None,
) -> None:
    """Request the promotion of a job version into staging or prod; prints its checks."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        template_id = await jobs.resolve_template(conn, job, project=project)
        return await promotions.request_promotion(
            conn, template_id=template_id, version=version, to_environment=to, comment=comment,
            user_id=await _user_id(conn, as_user), by=_actor(),
        )  # fmt: skip

    _print_request(on_database(work))


app.command("request")(promote)


@app.command("list")
def list_command(
    project: Annotated[str | None, typer.Option(help="Project slug.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, promoted, rejected, cancelled or superseded.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Promotion requests, newest first."""

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        project_id = await resolve_project(conn, project) if project else None
        items, _ = await promotions.requests_page(conn, project_id=project_id, status=status, limit=limit)
        return items

    for request in on_database(work):
        passed = sum(1 for c in request["checks"] if c["passed"])
        typer.echo(
            f"{request['id']}  {request['created_at']:%Y-%m-%d %H:%M}  {request['project']}/{request['job']} "
            f"v{request['version']} → {request['to_environment']}  {request['status']}  "
            f"checks {passed}/{len(request['checks'])}  "
            f"approvals {request['approvals']}/{request['required_approvals']}"
        )


@app.command("show")
def show_command(request_id: Annotated[uuid.UUID, typer.Argument(help="The request's id.")]) -> None:
    """A request with its checks, evidence and decisions."""
    _print_request(on_database(lambda conn: promotions.get_request(conn, request_id=request_id)))


def _decide(request_id: uuid.UUID, decision: str, comment: str, as_user: str | None) -> None:
    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        await auth.act_as(conn, _actor())
        await promotions.decide(
            conn, request_id=request_id, decision=decision, comment=comment, user_id=await _user_id(conn, as_user)
        )
        return await promotions.get_request(conn, request_id=request_id)

    _print_request(on_database(work))


@app.command("approve")
def approve_command(request_id: uuid.UUID, comment: CommentOption = "", as_user: AsOption = None) -> None:
    """Approve a pending request (the gate's approvers; never its requester)."""
    _decide(request_id, "approve", comment, as_user)


@app.command("reject")
def reject_command(request_id: uuid.UUID, comment: CommentOption = "", as_user: AsOption = None) -> None:
    """Reject a pending request with a comment; a new request starts over."""
    _decide(request_id, "reject", comment, as_user)


@app.command("cancel")
def cancel_command(request_id: uuid.UUID, comment: CommentOption = "", as_user: AsOption = None) -> None:
    """Cancel a pending request (its requester or a project admin)."""
    _decide(request_id, "cancel", comment, as_user)


@app.command("rollback")
def rollback_command(
    job: Annotated[str, typer.Argument(help="Template id, name or PROJECT/NAME.")],
    environment: Annotated[str, typer.Option("--env", help="The environment to roll back.")],
    comment: CommentOption = "",
    as_user: AsOption = None,
) -> None:
    """Deploy the version that ran before the current one (admins; audited; no checks). When the gate sets
    rollback_approvals, open a rollback request for its approvers instead (operators; four eyes)."""

    async def work(conn: psycopg.AsyncConnection) -> dict[str, Any]:
        template_id = await jobs.resolve_template(conn, job)
        return await promotions.rollback(
            conn, template_id=template_id, environment=environment, comment=comment,
            user_id=await _user_id(conn, as_user), by=_actor(),
        )  # fmt: skip

    done = on_database(work)
    if done["status"] == "pending":
        typer.echo(
            f"{job} in {environment}: rollback request {done['request_id']} opened (v{done['previous_version']} → "
            f"v{done['version']}); it rolls back once approved (lakehouse promotions approve ID)"
        )
    else:
        typer.echo(f"{job} in {environment}: v{done['previous_version']} → v{done['version']} (rolled back)")


@app.command("report-check")
def report_check_command(
    job: Annotated[str, typer.Argument(help="Template id, name or PROJECT/NAME.")],
    version: Annotated[int, typer.Option("--version", "-v")],
    name: Annotated[str, typer.Option("--name", help="The check, e.g. pr-gate.")],
    status: Annotated[str, typer.Option("--status", help="passed, failed or pending.")],
    url: Annotated[str | None, typer.Option(help="Link to the check's result.")] = None,
    summary: Annotated[str, typer.Option()] = "",
) -> None:
    """Record an external check's result (CI) for a version; pending requests re-evaluate at once."""

    async def work(conn: psycopg.AsyncConnection) -> int:
        template_id = await jobs.resolve_template(conn, job)
        return await promotions.report_check(
            conn, template_id=template_id, version=version, name=name, status=status, url=url, summary=summary,
            by=_actor(),
        )  # fmt: skip

    typer.echo(f"check report {on_database(work)}: {name} {status} for {job} v{version}")


@app.command("pipeline")
def pipeline_command(project: Annotated[str, typer.Option(help="Project slug.")]) -> None:
    """Each job's version per environment (* gated) and the pending request into it."""

    async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
        return await promotions.pipeline(conn, project_id=await resolve_project(conn, project))

    for job in on_database(work):
        cells = []
        for env in promotions.ENVIRONMENTS:
            cell = job["environments"].get(env)
            if cell is None:
                continue
            text = f"{env}{'*' if cell['gated'] else ''} v{cell['runs'] or '-'}"
            if cell["request_id"]:
                text += f" (v{cell['request_version']} pending)"
            cells.append(text)
        typer.echo(f"{job['job']:<28} " + " | ".join(cells))
