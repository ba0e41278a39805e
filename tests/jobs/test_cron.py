"""Cron fire times in time zones: DST spring-forward and fall-back in Europe/Berlin and America/New_York,
macros, and the fast stepping checked against croniter."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from control_room.services.errors import Invalid
from control_room.services.schedules import CronSchedule, jitter_offset, parse_cron

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(instants: list[datetime], zone: ZoneInfo) -> list[str]:
    return [i.astimezone(zone).strftime("%m-%d %H:%M%z") for i in instants]


def upcoming_from(cron: str, zone: ZoneInfo, wall: datetime, count: int) -> list[str]:
    start = wall.replace(tzinfo=zone).astimezone(UTC)
    return local(CronSchedule.of(cron, str(zone)).upcoming(start, count), zone)


# Spring forward: 02:00 -> 03:00 local (Berlin 2026-03-29, New York 2026-03-08).


@pytest.mark.parametrize(("zone", "day"), [(BERLIN, datetime(2026, 3, 28, 12)), (NEW_YORK, datetime(2026, 3, 7, 12))])
def test_a_daily_fire_in_the_skipped_hour_runs_shifted_by_the_gap(zone: ZoneInfo, day: datetime) -> None:
    fires = upcoming_from("30 2 * * *", zone, day, 3)
    shifted = (day + timedelta(days=1)).strftime("%m-%d")
    after = (day + timedelta(days=2)).strftime("%m-%d")
    assert fires[0].startswith(f"{shifted} 03:30")  # 02:30 does not exist: one fire, an hour later
    assert fires[1].startswith(f"{after} 02:30")


@pytest.mark.parametrize(
    ("zone", "day"), [(BERLIN, datetime(2026, 3, 29, 0, 0)), (NEW_YORK, datetime(2026, 3, 8, 0, 0))]
)
def test_an_hourly_schedule_has_one_fire_less_on_the_short_day(zone: ZoneInfo, day: datetime) -> None:
    fires = upcoming_from("15 * * * *", zone, day, 4)
    # 02:15 would be 03:15: the same instant as the 03:15 fire, so they are one fire (no double run)
    assert [f[6:11] for f in fires] == ["00:15", "01:15", "03:15", "04:15"]
    instants = [datetime.strptime(f"2026-{f}", "%Y-%m-%d %H:%M%z") for f in fires]
    assert instants[2] - instants[1] == timedelta(hours=1)


# Fall back: 03:00 -> 02:00 local in Berlin (2026-10-25), 02:00 -> 01:00 in New York (2026-11-01).


@pytest.mark.parametrize(
    ("zone", "day", "wall"),
    [(BERLIN, datetime(2026, 10, 24, 12), "02:30"), (NEW_YORK, datetime(2026, 10, 31, 12), "01:30")],
)
def test_a_daily_fire_in_the_repeated_hour_runs_once_at_its_first_occurrence(
    zone: ZoneInfo, day: datetime, wall: str
) -> None:
    minute, hour = int(wall[3:]), int(wall[:2])
    fires = CronSchedule.of(f"{minute} {hour} * * *", str(zone)).upcoming(day.replace(tzinfo=zone), 2)
    first = fires[0].astimezone(zone)
    assert first.strftime("%H:%M") == wall and first.fold == 0  # the summer-time occurrence
    assert fires[1] - fires[0] == timedelta(days=1, hours=1)  # the repeat is not fired; next day as usual


@pytest.mark.parametrize(
    ("zone", "day", "repeated"),
    [(BERLIN, datetime(2026, 10, 25, 0, 30), "02:15"), (NEW_YORK, datetime(2026, 11, 1, 0, 0), "01:15")],
)
def test_an_hourly_schedule_fires_every_real_hour_through_the_repeated_hour(
    zone: ZoneInfo, day: datetime, repeated: str
) -> None:
    start = day.replace(tzinfo=zone).astimezone(UTC)
    fires = CronSchedule.of("15 * * * *", str(zone)).upcoming(start, 5)
    gaps = {b - a for a, b in itertools.pairwise(fires)}
    assert gaps == {timedelta(hours=1)}
    walls = [f.astimezone(zone).strftime("%H:%M") for f in fires]
    assert walls.count(repeated) == 2  # once in summer time, once in standard time


def test_fires_between_walks_back_through_a_dst_change() -> None:
    cron = CronSchedule.of("15 * * * *", "Europe/Berlin")
    lo = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST
    hi = datetime(2026, 10, 25, 3, 0, tzinfo=UTC)  # 04:00 CET
    fires, previous, truncated = cron.fires_between(lo, hi, limit=100)
    assert len(fires) == 5 and not truncated  # 00:15, 01:15, 02:15 CEST, 02:15 CET, 03:15 CET
    assert previous == datetime(2026, 10, 24, 21, 15, tzinfo=UTC)
    newest, previous2, truncated2 = cron.fires_between(lo, hi, limit=2)
    assert newest == fires[-2:] and previous2 == fires[-3] and truncated2


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", "2026-01-01 13:00"),
        ("@daily", "2026-01-02 00:00"),
        ("@weekly", "2026-01-04 00:00"),
        ("@monthly", "2026-02-01 00:00"),
        ("@yearly", "2027-01-01 00:00"),
        ("@midnight", "2026-01-02 00:00"),
    ],
)
def test_macros(macro: str, expected: str) -> None:
    nxt = CronSchedule.of(macro).next_after(datetime(2026, 1, 1, 12, 30, tzinfo=UTC))
    assert nxt.strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize("bad", ["61 * * * *", "* * *", "every minute", "* * 32 * *"])
def test_bad_expressions_name_the_cron_field(bad: str) -> None:
    with pytest.raises(Invalid) as err:
        parse_cron(bad)
    assert err.value.field == "cron"


def test_bad_zone_names_the_timezone_field() -> None:
    with pytest.raises(Invalid) as err:
        CronSchedule.of("* * * * *", "Mars/Olympus")
    assert err.value.field == "timezone"


def test_fast_stepping_agrees_with_croniter() -> None:
    rng = random.Random(17)
    expressions = [
        "*/7 * * * *",
        "0 9-17/2 * * 1-5",
        "30 4 1,15 * *",
        "0 0 * * 0",
        "5 0 29 2 *",
        "0 12 1 * 1",
        "*/20 */3 10-20 3,6,9 *",
        "59 23 31 * *",
        "0 0 1 1 *",
    ]
    for expression in expressions:
        cron = parse_cron(expression)
        assert cron.fast
        schedule = CronSchedule.of(expression)
        for _ in range(25):
            start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 3 * 365 * 24 * 60))
            expected_next = croniter(expression, start.replace(tzinfo=None)).get_next(datetime)
            assert schedule.next_after(start).replace(tzinfo=None) == expected_next, (expression, start)
            expected_prev = croniter(expression, start.replace(tzinfo=None)).get_prev(datetime)
            assert schedule.previous_before(start).replace(tzinfo=None) == expected_prev, (expression, start)  # type: ignore[union-attr]


def test_jitter_is_stable_and_bounded() -> None:
    import uuid

    schedule_id = uuid.uuid4()
    t = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = {jitter_offset(schedule_id, t + timedelta(minutes=i), 30) for i in range(200)}
    assert all(timedelta(0) <= o <= timedelta(seconds=30) for o in offsets)
    assert len(offsets) > 10  # spread, not constant
    assert jitter_offset(schedule_id, t, 30) == jitter_offset(schedule_id, t, 30)
    assert jitter_offset(schedule_id, t, 0) == timedelta(0)
