"""One LISTEN connection per process that wakes long-polling claims and SSE streams on NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

TASKS_CHANNEL = "lakehouse_tasks_queued"  # payload: pool name
EVENTS_CHANNEL = "lakehouse_events"  # payload: run id
NOTIFICATIONS_CHANNEL = "lakehouse_notifications"  # payload: user id (the bell)
AUTH_CHANNEL = "lakehouse_auth_changed"  # no payload: a token, session, user or executor changed


# Channels whose notification is work for one waiter, not news for all: the first waiter in line is woken and
# hands the wake-up on when it is done (see Turn).
QUEUED_CHANNELS = frozenset({TASKS_CHANNEL})

# Auth generations are unique in the process, across notifiers (the API's lifespan starts a new one each time).
_AUTH_GENERATIONS = itertools.count(1)


@dataclass(eq=False)
class Turn:
    """A place in the line of waiters of a work channel (a claim waiting for tasks of its pool).

    A notification wakes only the first turn in line, so one submit does not set every idle agent's claim
    racing for one task. The woken waiter calls ``Notifier.hand_on`` once it has claimed: the next turn in
    line is woken, if it was already waiting when the notification came. So the wake-up walks the line one
    claim at a time, and reaches every waiter of that moment (one whose engines or labels fit the task, when
    the first could not claim it), and a waiter that joins later (a claim that has just re-checked) is never
    woken for a notification it did not miss."""

    key: tuple[str, str]
    number: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    woken_for: int | None = None  # the newest turn number in line when this one was woken by a notification


class Notifier:
    """Turns Postgres notifications into asyncio wake-ups keyed by (channel, payload).

    Take a waiter (or a turn) *before* checking the database, then wait on it: a notification that
    arrives between the check and the wait still wakes the waiter.
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}
        self._lines: dict[tuple[str, str], deque[Turn]] = {}
        self._numbers = itertools.count(1)
        self._newest = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._listening = False
        self._auth_generation = next(_AUTH_GENERATIONS)

    def auth_generation(self) -> int | None:
        """A number that changes whenever what a token look-up read may have changed (an AUTH_CHANNEL
        notification, a lost or new LISTEN connection); None while not listening, when nothing is sure."""
        return self._auth_generation if self._listening else None

    def waiter(self, channel: str, key: str) -> asyncio.Event:
        """The event set by the next notification on channel with this payload."""
        return self._waiters.setdefault((channel, key), asyncio.Event())

    def turn(self, channel: str, key: str) -> Turn:
        """A place at the end of the line of (channel, key): woken by a notification when first in line."""
        self._newest = next(self._numbers)
        turn = Turn((channel, key), self._newest)
        self._lines.setdefault(turn.key, deque()).append(turn)
        return turn

    def leave(self, turn: Turn) -> None:
        """Out of line (the claim got tasks or its time ran out); a turn already woken is out already."""
        line = self._lines.get(turn.key)
        if line is not None:
            with contextlib.suppress(ValueError):
                line.remove(turn)
            if not line:
                del self._lines[turn.key]

    def hand_on(self, turn: Turn) -> None:
        """After a woken turn's claim: wake the next turn in line that was waiting when its wake-up came."""
        if turn.woken_for is not None:
            self._wake_first(turn.key, turn.woken_for)

    def _wake_first(self, key: tuple[str, str], joined_by: int) -> None:
        line = self._lines.get(key)
        if line and line[0].number <= joined_by:
            first = line.popleft()
            if not line:
                del self._lines[key]
            first.woken_for = joined_by
            first.event.set()

    async def wait(self, event: asyncio.Event, within: float) -> bool:
        """Wait for a waiter up to ``within`` seconds; True when notified, False when the time ran out."""
        if within <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), within)
        except TimeoutError:
            return False
        return True

    def _signal(self, channel: str, key: str) -> None:
        if channel == AUTH_CHANNEL:
            self._auth_generation = next(_AUTH_GENERATIONS)
            return
        if channel in QUEUED_CHANNELS:
            self._wake_first((channel, key), self._newest)
            return
        event = self._waiters.pop((channel, key), None)
        if event is not None:
            event.set()

    def _signal_all(self) -> None:
        self._auth_generation = next(_AUTH_GENERATIONS)
        waiters, self._waiters = self._waiters, {}
        for event in waiters.values():
            event.set()
        lines, self._lines = self._lines, {}
        for line in lines.values():
            for turn in line:
                turn.event.set()  # all awake: nobody needs a wake-up handed on

    async def start(self) -> None:
        """Start listening in the background; returns once the first LISTEN is in place (or failed)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name="lakehouse-notifier")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await listen(conn, TASKS_CHANNEL, EVENTS_CHANNEL, NOTIFICATIONS_CHANNEL, AUTH_CHANNEL)
                    self._ready.set()
                    backoff = 0.5
                    # Anything may have happened while we were not listening: let everyone re-check.
                    self._signal_all()
                    self._listening = True
                    try:
                        async for note in conn.notifies():
                            self._signal(note.channel, note.payload)
                    finally:
                        # Not listening from here on: nothing remembered on the strength of notices is sure.
                        self._listening = False
                        self._auth_generation = next(_AUTH_GENERATIONS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifier connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self._signal_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)


async def listen(conn: psycopg.AsyncConnection[object], *channels: str) -> None:
    """LISTEN on each channel (our own constant channel names) on a dedicated autocommit connection."""
    for channel in channels:
        await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))


async def watch(
    channel: str,
    key: str,
    *,
    wait_s: float,
    still_wanted: Callable[[], Awaitable[bool]],
    on_notify: Callable[[], Awaitable[None]],
) -> None:
    """Call ``on_notify`` after each NOTIFY of (channel, key), waiting at most ``wait_s`` at a time, for as
    long as ``still_wanted`` says so (asked after every wait, so a page left stops the watch soon)."""
    notifier = await get_notifier()
    while True:
        notified = await notifier.wait(notifier.waiter(channel, key), wait_s)
        if not await still_wanted():
            return
        if notified:
            await on_notify()


_notifier: Notifier | None = None


async def get_notifier() -> Notifier:
    """The process-wide notifier, started on first use."""
    global _notifier
    if _notifier is None:
        from control_room.db.connection import database_url

        _notifier = Notifier(database_url())
        await _notifier.start()
    return _notifier


async def stop_notifier() -> None:
    global _notifier
    if _notifier is not None:
        await _notifier.stop()
        _notifier = None
