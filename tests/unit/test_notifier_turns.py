"""The claim line of the notifier: a task notification wakes one waiting claim, which hands the wake-up on
to the claims that were already waiting, one at a time; later joiners are not woken for it."""

from __future__ import annotations

from control_room.db.notify import EVENTS_CHANNEL, TASKS_CHANNEL, Notifier


def notifier() -> Notifier:
    return Notifier("postgresql://unused")  # never started: notifications are delivered by hand below


def test_a_task_notification_wakes_only_the_first_claim_in_line() -> None:
    n = notifier()
    first, second = n.turn(TASKS_CHANNEL, "etl"), n.turn(TASKS_CHANNEL, "etl")
    other_pool = n.turn(TASKS_CHANNEL, "ml")
    n._signal(TASKS_CHANNEL, "etl")
    assert first.event.is_set()
    assert not second.event.is_set()
    assert not other_pool.event.is_set()


def test_the_wake_up_walks_the_line_of_its_moment_and_stops_before_later_joiners() -> None:
    n = notifier()
    a, b, c = (n.turn(TASKS_CHANNEL, "etl") for _ in range(3))
    n._signal(TASKS_CHANNEL, "etl")
    late = n.turn(TASKS_CHANNEL, "etl")  # joined after the notification: its own check sees the task
    n.hand_on(a)
    assert b.event.is_set() and not c.event.is_set()
    n.hand_on(b)
    assert c.event.is_set()
    n.hand_on(c)
    assert not late.event.is_set()


def test_a_claim_that_left_the_line_is_not_woken_and_does_not_swallow_a_wake_up() -> None:
    n = notifier()
    gone, waiting = n.turn(TASKS_CHANNEL, "etl"), n.turn(TASKS_CHANNEL, "etl")
    n.leave(gone)  # its claim got tasks, or its wait ran out
    n._signal(TASKS_CHANNEL, "etl")
    assert not gone.event.is_set()
    assert waiting.event.is_set()
    assert n._lines == {}


def test_handing_on_without_a_notification_wakes_nobody() -> None:
    n = notifier()
    lone, other = n.turn(TASKS_CHANNEL, "etl"), n.turn(TASKS_CHANNEL, "etl")
    n.leave(lone)
    n.hand_on(lone)  # it timed out: there is no wake-up to hand on
    assert not other.event.is_set()


def test_a_reconnect_wakes_every_claim_and_every_watcher() -> None:
    n = notifier()
    turns = [n.turn(TASKS_CHANNEL, "etl") for _ in range(3)]
    watcher = n.waiter(EVENTS_CHANNEL, "run-1")
    n._signal_all()
    assert all(t.event.is_set() and t.woken_for is None for t in turns)
    assert watcher.is_set()


def test_event_notifications_still_wake_every_watcher() -> None:
    n = notifier()
    one, two = n.waiter(EVENTS_CHANNEL, "run-1"), n.waiter(EVENTS_CHANNEL, "run-1")
    assert one is two  # watchers of a run share one event: every SSE stream of the run hears each append
    n._signal(EVENTS_CHANNEL, "run-1")
    assert one.is_set()
