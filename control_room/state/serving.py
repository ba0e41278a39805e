"""Endpoints page: the project's serving endpoints, one endpoint's replicas, traffic and stats, create, changes
(canary, promote, roll back, stop, start), delete (after a confirmation) and a "try it" form that sends a
prediction through the proxy."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import plotly.graph_objects as go
import reflex as rx
from plotly.subplots import make_subplots
from psycopg import AsyncConnection

from control_room import routes
from control_room.db.connection import get_pool
from control_room.services import serving
from control_room.services.serving_proxy import proxy_for
from control_room.state.base import SignedIn, problem_text, signed_in_event
from control_room.state.events import background, exclusive, handler, page_url, setter
from control_room.state.ml import MlBase
from control_room.state.rows import EndpointDetail, EndpointForm, EndpointRow, ReplicaRow, TryAnswer, with_field

T = TypeVar("T")
DEMO_BODY = json.dumps(
    {"dataframe_split": {"columns": ["tenure_months", "monthly_spend", "support_tickets", "logins_per_week"],
                         "data": [[3, 95.0, 4, 1.0], [60, 30.0, 0, 9.0]]}},
    indent=1,
)  # fmt: skip


def _traffic(routes_: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['model']} v{r['version']} {r['percent']}%" for r in routes_)


def stats_figure(stats: dict[str, Any]) -> go.Figure:
    """Requests per second and error rate over the minutes, latency p50/p95 below."""
    points = stats["points"]
    minutes = [p["minute"] for p in points]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                           subplot_titles=("requests/s and error rate", "latency (ms)"))  # fmt: skip
    figure.add_trace(go.Bar(x=minutes, y=[p["requests_per_s"] for p in points], name="requests/s",
                            marker_color="#6366f1", width=50_000), row=1, col=1)  # fmt: skip
    figure.add_trace(go.Scatter(x=minutes, y=[p["error_rate"] * 100 for p in points], name="errors %",
                                mode="lines+markers", line={"color": "#dc2626"}), row=1, col=1)  # fmt: skip
    figure.add_trace(go.Scatter(x=minutes, y=[p["latency_p50_ms"] for p in points], name="p50",
                                mode="lines+markers", line={"color": "#0891b2"}), row=2, col=1)  # fmt: skip
    figure.add_trace(go.Scatter(x=minutes, y=[p["latency_p95_ms"] for p in points], name="p95",
                                mode="lines+markers", line={"color": "#f59e0b"}), row=2, col=1)  # fmt: skip
    # The whole window, so a single minute of traffic is not stretched across the axis.
    figure.update_xaxes(range=[stats["since"], stats["until"]])
    figure.update_layout(height=380, margin={"l": 40, "r": 10, "t": 30, "b": 30}, legend={"orientation": "h"},
                         template="plotly_white")  # fmt: skip
    return figure


class EndpointsState(MlBase):
    """The project's endpoints, the selected one's detail and stats, the create form and "try it"."""

    rows: rx.Field[list[EndpointRow]] = rx.field(default_factory=list)
    selected: rx.Field[str] = rx.field("")  # the open endpoint's name (refresh opens it again)
    detail: rx.Field[EndpointDetail] = rx.field(default_factory=EndpointDetail)
    replicas: rx.Field[list[ReplicaRow]] = rx.field(default_factory=list)
    chart: rx.Field[go.Figure] = rx.field(default_factory=go.Figure)
    form: rx.Field[EndpointForm] = rx.field(default_factory=EndpointForm)
    message: rx.Field[str] = rx.field("")
    action_error: rx.Field[str] = rx.field("")
    confirm_delete: rx.Field[bool] = rx.field(False)
    # Try it
    body: rx.Field[str] = rx.field(DEMO_BODY)
    answer: rx.Field[TryAnswer] = rx.field(default_factory=TryAnswer)
    sending: rx.Field[bool] = rx.field(False)

    set_body = setter("body")
    set_confirm_delete = setter("confirm_delete")

    @handler
    def set_form(self, field: str, value: str) -> None:
        """One input of the create form or the canary bar."""
        self.form = with_field(self.form, field, value)

    @rx.event
    def ask_delete(self) -> None:
        """Open the confirmation of Delete."""
        self.confirm_delete, self.message, self.action_error = True, "", ""

    @signed_in_event
    async def open_page(self, _signed: SignedIn) -> AsyncIterator[Any]:
        """The list; ``?endpoint=`` (or the first endpoint) opens its detail."""
        async with self:
            wanted = page_url(self).query_parameters.get("endpoint", "")
        await self._list()
        async with self:
            first = wanted or (self.rows[0].name if self.rows else "")
        if first:
            yield EndpointsState.open_endpoint(first)

    async def _list(self) -> None:
        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            assert signed.project_id is not None
            return await serving.list_endpoints(conn, project_id=uuid.UUID(str(signed.project_id)))

        value, error, _ = await self._read(read)
        async with self:
            self.error, self.loaded = error, True
            if value is not None:
                self.rows = [
                    EndpointRow(e["name"], e["health"], f"{e['replicas_healthy']}/{e['replicas_total']}",
                                _traffic(e["routes"]), str(e["revision"]))
                    for e in value
                ]  # fmt: skip

    @signed_in_event
    async def refresh(self, _signed: SignedIn) -> AsyncIterator[Any]:
        """Read the list and the open endpoint again."""
        await self._list()
        async with self:
            name = self.selected
        if name:
            yield EndpointsState.open_endpoint(name)

    @background
    async def open_endpoint(self, name: str) -> AsyncIterator[Any]:
        """An endpoint's replicas, traffic split and the proxy's stats of the last 30 minutes."""

        async def read(conn: AsyncConnection, signed: SignedIn) -> Any:
            assert signed.project_id is not None
            endpoint_id = await serving.resolve_endpoint(
                conn, endpoint=name, project_id=uuid.UUID(str(signed.project_id))
            )
            detail = await serving.get_endpoint(conn, endpoint_id=endpoint_id)
            return detail, await serving.request_stats(conn, endpoint_id=endpoint_id)

        value, error, _ = await self._read(read)
        async with self:
            self.error = error
            if value is None:
                return
            detail, stats = value
            self.selected = detail["name"]
            self.replicas = [
                ReplicaRow(
                    f"{r['model_name']} v{r['model_version']}", str(r["replica_index"]),
                    "healthy" if r["healthy"] else r["task_status"], r["address"] or "—", str(r["pid"] or "—"),
                    str(r["attempt"]), str(r["restarts"]), routes.run_detail(str(r["run_id"]), tab="timeline"),
                    r["last_error"] or "",
                )
                for r in detail["replica_list"]
            ]  # fmt: skip
            p50, p95 = stats["latency_p50_ms"], stats["latency_p95_ms"]
            totals = (
                f"{stats['requests']} requests in 30 min · error rate {stats['error_rate'] * 100:.1f}% · "
                f"p50 {p50 if p50 is not None else '—'} ms · p95 {p95 if p95 is not None else '—'} ms"
            )
            self.detail = EndpointDetail(str(detail["id"]), detail["health"], _traffic(detail["routes"]), totals,
                                         self.replicas[0].run_href if self.replicas else "")  # fmt: skip
            self.chart = stats_figure(stats)
        yield

    async def _change(self, work: Callable[[AsyncConnection, SignedIn], Awaitable[T]], done: str) -> AsyncIterator[Any]:
        value, error, _ = await self._read(work)
        async with self:
            self.action_error = error
            self.message = done if value is not None and not error else ""
        yield EndpointsState.refresh

    @background
    async def create(self) -> AsyncIterator[Any]:
        """Create the endpoint of the form (operators)."""
        async with self:
            form = self.form
            name, model, version = form.name.strip(), form.model.strip(), form.version.strip()
            replicas = int(form.replicas) if form.replicas.isdigit() else 1

        async def work(conn: AsyncConnection, signed: SignedIn) -> Any:
            assert signed.project_id is not None
            return await serving.create_endpoint(
                conn, project_id=uuid.UUID(str(signed.project_id)), environment="dev", name=name, model=model,
                version=version, replicas=replicas,
            )  # fmt: skip

        async with self:
            self.selected = name
        async for event in self._change(work, f"endpoint {name} created: its replicas are starting"):
            yield event

    @background
    async def change(self, action: str) -> AsyncIterator[Any]:
        """canary, promote, rollback, stop or start the open endpoint (operators)."""
        async with self:
            endpoint_id = uuid.UUID(self.detail.id)
            version, percent = self.form.canary_version.strip(), self.form.canary_percent.strip()

        async def work(conn: AsyncConnection, _signed: SignedIn) -> Any:
            if action == "canary":
                return await serving.canary(conn, endpoint_id=endpoint_id, version=version,
                                            percent=int(percent) if percent.isdigit() else 0)  # fmt: skip
            if action == "promote":
                return await serving.promote(conn, endpoint_id=endpoint_id)
            if action == "rollback":
                return await serving.rollback(conn, endpoint_id=endpoint_id)
            return await serving.set_running(conn, endpoint_id=endpoint_id, running=action == "start")

        async for event in self._change(work, f"{action}: done"):
            yield event

    @signed_in_event
    async def delete(self, _signed: SignedIn) -> None:
        """Delete the open endpoint (operators): its replicas stop and its tokens stop working."""
        async with self:
            endpoint_id, name = uuid.UUID(self.detail.id), self.selected
            self.confirm_delete = False

        async def work(conn: AsyncConnection, _signed: SignedIn) -> Any:
            await serving.delete_endpoint(conn, endpoint_id=endpoint_id)
            return name

        value, error, _ = await self._read(work)
        async with self:
            self.action_error = error
            self.message = f"endpoint {name} deleted: its replicas are stopping" if value is not None else ""
            if value is not None:
                self.selected, self.detail, self.replicas, self.answer = "", EndpointDetail(), [], TryAnswer()
        await self._list()

    @background
    @exclusive("sending")
    async def try_it(self) -> None:
        """Send the body to the open endpoint through the proxy (as the signed-in viewer) and show the answer."""
        async with self:
            self.answer = TryAnswer()
            body, endpoint_id = self.body, uuid.UUID(self.detail.id)

        async def check(conn: AsyncConnection, _signed: SignedIn) -> Any:
            return await serving.get_endpoint(conn, endpoint_id=endpoint_id)  # the viewer may see it

        visible, error, _ = await self._read(check)
        answer, meta = "", ""
        if visible is not None:
            try:
                json.loads(body)
                reply = await proxy_for(await get_pool()).invoke(endpoint_id, body.encode())
                text = reply.body.decode("utf-8", "replace")
                try:
                    answer = json.dumps(json.loads(text), indent=1)
                except ValueError:
                    answer = text
                meta = f"HTTP {reply.status} from {reply.model} v{reply.version} at {reply.address}"
            except ValueError as exc:
                error = f"the body is not JSON: {exc}"
            except Exception as exc:
                error = problem_text(exc)
        async with self:
            self.answer, self.action_error = TryAnswer(answer, meta), error
