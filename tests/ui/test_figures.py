"""The UI's plotly figures: DAG layout by dependency depth, one Gantt bar per attempt, one line per pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_room.components.figures import dag_figure, dag_positions, gantt_figure, pool_load_figure
from control_room.components.status import STATUS_HEX
from control_room.state.run_detail.timeline import figure_signature, updated_figures


def _task(key: str, status: str = "succeeded", depends_on: tuple[str, ...] = ()) -> dict[str, object]:
    return {"key": key, "status": status, "engine": "shell", "depends_on": list(depends_on)}


def test_dag_columns_follow_dependency_depth() -> None:
    tasks = [_task("extract"), _task("clean", depends_on=("extract",)), _task("stats", depends_on=("extract",)),
             _task("publish", depends_on=("clean", "stats"))]  # fmt: skip
    positions = dag_positions(tasks)
    x = {key: round(pos[0], 6) for key, pos in positions.items()}
    assert x["extract"] < x["clean"] == x["stats"] < x["publish"]
    assert positions["clean"][1] != positions["stats"][1]


def test_dag_nodes_are_coloured_by_state() -> None:
    figure = dag_figure([_task("a", "succeeded"), _task("b", "running", ("a",)), _task("c", "failed", ("b",))])
    nodes = figure.data[-1]
    colours = dict(zip(nodes.text, nodes.marker.color, strict=True))
    assert colours == {"a": STATUS_HEX["succeeded"], "b": STATUS_HEX["running"], "c": STATUS_HEX["failed"]}
    assert len(figure.layout.annotations) == 2  # one arrow per dependency


def test_gantt_has_a_bar_per_attempt_coloured_by_outcome() -> None:
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    attempts = [
        {"task_key": "a", "attempt": 1, "claimed_at": t0, "started_at": t0 + timedelta(seconds=2),
         "finished_at": t0 + timedelta(seconds=10), "outcome": "failed", "executor": "x"},
        {"task_key": "a", "attempt": 2, "claimed_at": t0 + timedelta(seconds=20), "started_at": None,
         "finished_at": None, "outcome": None, "executor": "x"},
    ]  # fmt: skip
    figure = gantt_figure([_task("a")], attempts, now=t0 + timedelta(seconds=30))
    assert [bar.marker.color for bar in figure.data] == [STATUS_HEX["failed"], STATUS_HEX["running"]]
    assert figure.data[0].x[0] == 10000 and figure.data[1].x[0] == 10000  # ms; the open attempt runs to now
    (now_line,) = figure.layout.shapes  # an attempt still runs: a "now" line
    assert now_line.x0 == t0 + timedelta(seconds=30)


def test_a_running_attempts_gantt_is_rebuilt_only_when_due_and_at_once_when_something_changed() -> None:
    """The run page refreshes on every burst of a busy run's events: its Gantt (a running bar that grows) is
    sent again only when the page says a growth is due, but any change of state is drawn at once."""
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    running = [{"task_key": "a", "attempt": 1, "claimed_at": t0, "started_at": t0, "finished_at": None,
                "outcome": None, "executor": "x"}]  # fmt: skip
    tasks = [{**_task("a", "running"), "attempt": 1}]
    shown = figure_signature(tasks, running)
    quiet = updated_figures(tasks, running, shown=shown, now=t0 + timedelta(seconds=3), grow=False)
    assert quiet.gantt is None and quiet.dag is None
    grown = updated_figures(tasks, running, shown=shown, now=t0 + timedelta(seconds=6), grow=True)
    assert grown.gantt is not None and grown.dag is None
    assert grown.gantt.layout.shapes[0].x0 == t0 + timedelta(seconds=6)  # the "now" line moved on
    finished = [{**running[0], "finished_at": t0 + timedelta(seconds=7), "outcome": "succeeded"}]
    tasks = [{**_task("a"), "attempt": 1}]
    done = updated_figures(tasks, finished, shown=shown, now=t0 + timedelta(seconds=7), grow=False)
    assert done.gantt is not None and done.dag is not None  # a change is drawn although no growth was due
    assert [bar.marker.color for bar in done.gantt.data] == [STATUS_HEX["succeeded"]]
    settled = updated_figures(tasks, finished, shown=done.signature, now=t0 + timedelta(seconds=20))
    assert settled.gantt is None and settled.dag is None  # nothing runs: nothing to grow


def test_pool_chart_has_one_line_per_pool() -> None:
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    series = [{"pool": pool, "at": at + timedelta(minutes=i), "running": i} for pool in ("gpu", "default")
              for i in range(3)]  # fmt: skip
    figure = pool_load_figure(series)
    assert [trace.name for trace in figure.data] == ["default", "gpu"]
    assert list(figure.data[0].y) == [0, 1, 2]


def test_gantt_draws_short_attempts_at_their_real_extent_with_a_marker() -> None:
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    attempts = [
        {"task_key": "summarize", "attempt": 1, "claimed_at": t0, "started_at": t0,
         "finished_at": t0 + timedelta(milliseconds=49), "outcome": "succeeded", "executor": "x"},
        {"task_key": "publish", "attempt": 1, "claimed_at": t0 + timedelta(milliseconds=60), "started_at": None,
         "finished_at": t0 + timedelta(seconds=20), "outcome": "succeeded", "executor": "x"},
    ]  # fmt: skip
    figure = gantt_figure([_task("summarize"), _task("publish", depends_on=("summarize",))], attempts)
    bars = [trace for trace in figure.data if trace.type == "bar"]
    markers = [trace for trace in figure.data if trace.type == "scatter"]
    assert [bar.x[0] for bar in bars] == [49, 19940]  # no minimum width: summarize ends before publish starts
    assert [m.y[0] for m in markers] == ["summarize"]  # too narrow to see: marked where it ran
    assert "12:00:00.000 → 12:00:00.049 UTC" in bars[0].hovertemplate
    assert figure.layout.shapes == ()  # nothing runs: no "now" line
