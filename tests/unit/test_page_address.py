"""A page's events read the address they were sent from, not the tab's latest router.

A background event's ``async with self`` loads the tab's newest state, whose router is that of the tab's last
event: after a navigation, an event still in flight from the page left behind (a list's ticker) can be handled
between the new page's load and its first read. CI saw a saved job's page say "This is not a job id." on
``/jobs/<id>``. The states read ``page_url``/``page_tail`` (the event's own routing data, which Reflex keeps in
the event's context and passes on to the events it yields); a check below keeps ``router.url`` out of them.
"""

from __future__ import annotations

import ast
import types
import uuid
from pathlib import Path
from typing import Any

from reflex.istate.data import ReflexURL
from reflex.istate.manager.memory import StateManagerMemory
from reflex_base.event.context import EventContext

from control_room.state.events import page_id, page_tail, page_url

STATES = Path(__file__).resolve().parents[2] / "control_room" / "state"
# Regular (locked) handlers get their own event's router; this one watches the page the router shows.
ROUTER_READERS = {"base.py:reload_if_stuck", "events.py:page_url"}


def _tab_left_on(path: str) -> types.SimpleNamespace:
    """A state whose router describes the page the person left (what ``async with self`` may load)."""
    return types.SimpleNamespace(router=types.SimpleNamespace(url=ReflexURL(path)), job_id="")


async def _enqueue(token: str, *events: Any) -> None:
    """Where the event's follow-up events would go (none here)."""


def _event_from(address: str) -> EventContext:
    """The context Reflex handles an event from ``address`` in (what a handler reads while it runs)."""
    path = address.split("?", 1)[0]
    # Reflex's in-memory manager (concrete: it runs; mypy reads its overloaded methods as abstract).
    manager = StateManagerMemory()  # type: ignore[abstract]
    return EventContext(
        token="tab", state_manager=manager, enqueue_impl=_enqueue,
        router_data={"pathname": path, "asPath": address, "query": {}},
    )  # fmt: skip


def test_a_load_reads_the_address_of_its_own_event_when_the_tab_has_moved_on() -> None:
    job = uuid.uuid4()
    stale = _tab_left_on("/jobs")
    with _event_from(f"/jobs/{job}?tab=runs"):
        assert page_id(stale) == job
        assert page_tail(stale) == str(job)
        assert dict(page_url(stale).query_parameters) == {"tab": "runs"}
    # Outside an event (nothing to go by): the state's router.
    assert page_url(stale) == "/jobs"
    assert page_id(stale) is None


def test_an_address_that_names_no_job_is_none() -> None:
    with _event_from("/jobs/new/"):
        assert page_tail(_tab_left_on("/jobs")) == "new"
        assert page_id(_tab_left_on("/jobs")) is None


def router_reads(source: str, filename: str) -> list[str]:
    """``<x>.router.url`` and ``<x>.router.page`` reads, by function, outside ROUTER_READERS."""
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in {"url", "page"}
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "router"
                and f"{filename}:{function.name}" not in ROUTER_READERS
            ):
                found.append(f"{filename}:{node.lineno}: {function.name} reads router.{node.attr}")
    return found


def test_states_read_the_events_address_not_the_router() -> None:
    found = [
        problem
        for path in sorted(STATES.rglob("*.py"))
        for problem in router_reads(path.read_text(), str(path.relative_to(STATES)))
    ]
    assert found == []


def test_the_check_finds_a_planted_router_read() -> None:
    planted = """
class S:
    async def open_page(self):
        async with self:
            wanted = self.router.url.query_parameters.get("run", "")
            other = self.router.page.params.get("run_id", "")
"""
    assert router_reads(planted, "planted.py") == [
        "planted.py:5: open_page reads router.url",
        "planted.py:6: open_page reads router.page",
    ]
