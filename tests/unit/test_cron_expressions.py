"""The cron parser and periodic declarations, without a server: fields, ranges, steps, names and
macros; day-of-month OR day-of-week; month ends, leap days and daylight-saving changes; intervals.
(The scheduler on every topology: tests/test_cron.py.)"""

from __future__ import annotations

import bisect
import random
from datetime import datetime, timedelta, timezone

import pytest

from clusterq import CronError, CronExpr, Interval, Periodic, PeriodicError
from clusterq.scheduling.periodic import unique

NY = "America/New_York"


def ms(text: str, tz: timezone = timezone.utc) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def iso(tick: int) -> str:
    return datetime.fromtimestamp(tick / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def ticks(schedule: CronExpr | Interval, start: str, count: int) -> list[str]:
    out, at = [], ms(start)
    for _ in range(count):
        at = schedule.next_after(at)
        out.append(iso(at))
    return out


def test_lists_ranges_steps_and_names_expand_as_in_vixie_cron() -> None:
    expr = CronExpr("0,30 9-17/4 * jan,Jul mon-FRI")
    assert expr.minutes == {0, 30} and expr.hours == {9, 13, 17}
    assert expr.months == {1, 7} and expr.weekdays == {1, 2, 3, 4, 5}
    assert CronExpr("5/20 * * * *").minutes == {5, 25, 45}  # from 5 to the end, every 20
    assert CronExpr("*/15 * * * *").minutes == {0, 15, 30, 45}
    assert CronExpr("10-40/10 * * * *").minutes == {10, 20, 30, 40}
    assert CronExpr("0 0 * * 5-7").weekdays == {5, 6, 0}  # 7 is Sunday
    assert CronExpr("0 0 * * 0").weekdays == CronExpr("0 0 * * 7").weekdays == {0}


def test_macros_mean_their_five_field_expressions() -> None:
    start = "2026-03-15T10:07:00"
    assert ticks(CronExpr("@hourly"), start, 2) == ["2026-03-15T11:00", "2026-03-15T12:00"]
    assert ticks(CronExpr("@daily"), start, 1) == ticks(CronExpr("@midnight"), start, 1) == ["2026-03-16T00:00"]
    assert ticks(CronExpr("@weekly"), start, 2) == ["2026-03-22T00:00", "2026-03-29T00:00"]  # Sundays
    assert ticks(CronExpr("@monthly"), start, 1) == ["2026-04-01T00:00"]
    assert ticks(CronExpr("@yearly"), start, 1) == ticks(CronExpr("@annually"), start, 1) == ["2027-01-01T00:00"]


def test_day_of_month_and_day_of_week_match_either_when_both_are_restricted() -> None:
    # 2026-06-01 is a Monday. Both restricted: the 13th OR any Friday.
    assert ticks(CronExpr("0 0 13 * FRI"), "2026-06-01T00:00:00", 4) == [
        "2026-06-05T00:00", "2026-06-12T00:00", "2026-06-13T00:00", "2026-06-19T00:00"]
    # One starts with "*": both must match (Vixie's rule, even for "*/2").
    assert ticks(CronExpr("0 0 */2 * FRI"), "2026-06-01T00:00:00", 2) == ["2026-06-05T00:00", "2026-06-19T00:00"]
    assert ticks(CronExpr("0 0 * * FRI"), "2026-06-01T00:00:00", 2) == ["2026-06-05T00:00", "2026-06-12T00:00"]


def test_month_ends_and_leap_days() -> None:
    assert ticks(CronExpr("0 12 31 * *"), "2026-01-31T13:00:00", 3) == [
        "2026-03-31T12:00", "2026-05-31T12:00", "2026-07-31T12:00"]  # months without a 31st are skipped
    assert ticks(CronExpr("0 0 29 2 *"), "2025-01-01T00:00:00", 2) == ["2028-02-29T00:00", "2032-02-29T00:00"]
    assert ticks(CronExpr("59 23 L * *".replace("L", "28-31")), "2026-02-27T00:00:00", 2) == [
        "2026-02-28T23:59", "2026-03-28T23:59"]
    assert ticks(CronExpr("0 0 1 1 *"), "2026-12-31T23:59:00", 1) == ["2027-01-01T00:00"]


@pytest.mark.parametrize("expression, problem", [
    ("* * * *", "has 4 field(s)"),
    ("* * * * * *", "has 6 field(s)"),
    ("60 * * * *", "minute field: '60': 60 is outside 0-59"),
    ("* 24 * * *", "hour field"),
    ("* * 0 * *", "day of month field"),
    ("* * * 13 *", "month field"),
    ("* * * * 8", "day of week field"),
    ("*/0 * * * *", "the step must be a positive number"),
    ("5-1 * * * *", "a range must go upwards"),
    ("* * * FOO *", "'FOO' is not a number or a name"),
    ("FRI-MON * * * *", "minute field"),
    ("1,,2 * * * *", "minute field"),
    ("@reboot", "unknown cron macro"),
    ("0 0 30 2 *", "never matches"),
])
def test_a_bad_expression_is_refused_naming_the_field_and_part(expression: str, problem: str) -> None:
    with pytest.raises(CronError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        CronExpr(expression)


@pytest.mark.parametrize("expression", [
    "* * * * *", "*/7 * * * *", "0 */5 * * *", "15 3 * * 1-5", "0 0 13 * 5", "30 4 1,15 * *",
    "0 12 * 2 *", "*/20 22-23 * * 0,6", "0 0 29-31 * *", "45 * * 1,4,7,10 3",
])
def test_next_and_last_agree_with_a_minute_by_minute_scan(expression: str) -> None:
    expr = CronExpr(expression)
    rng = random.Random(expression)
    start = ms("2026-01-27T00:00:00")
    matching = []
    for minute in range(0, 60 * 24 * 40):  # 40 days, minute by minute
        t = datetime.fromtimestamp(start / 1000 + minute * 60, timezone.utc)
        dom, dow = t.day in expr.days, (t.isoweekday() % 7) in expr.weekdays
        restricted = not expression.split()[2].startswith("*") and not expression.split()[4].startswith("*")
        day = (dom or dow) if restricted else (dom and dow)
        if t.minute in expr.minutes and t.hour in expr.hours and t.month in expr.months and day:
            matching.append(start + minute * 60_000)
    assert matching
    for _ in range(200):
        at = start + rng.randrange(0, 60 * 24 * 30 * 60_000)
        split = bisect.bisect_right(matching, at)  # matching[:split] <= at < matching[split:]
        if split < len(matching):  # else the next tick is beyond the scanned window
            assert expr.next_after(at) == matching[split]
        if split:
            assert expr.last_at_or_before(at) == matching[split - 1]
    for m in matching[:50]:
        assert expr.last_at_or_before(m) == m and expr.next_after(m) > m


def test_a_time_zone_follows_daylight_saving_changes() -> None:
    # New York: 2026-03-08 02:00 EST jumps to 03:00 EDT; 2026-11-01 02:00 EDT falls back to 01:00 EST.
    daily = CronExpr("30 2 * * *", tz=NY)
    assert ticks(daily, "2026-03-07T12:00:00", 3) == [
        "2026-03-08T07:30",  # 02:30 does not exist that day: it fires at 03:30 EDT
        "2026-03-09T06:30", "2026-03-10T06:30"]
    every_30 = CronExpr("*/30 * * * *", tz=NY)
    assert ticks(every_30, "2026-03-08T06:00:00", 4) == [
        "2026-03-08T06:30", "2026-03-08T07:00", "2026-03-08T07:30", "2026-03-08T08:00"]
    # The repeated hour: "*" hours fire in both, a fixed hour once.
    assert ticks(every_30, "2026-11-01T04:45:00", 5) == [
        "2026-11-01T05:00", "2026-11-01T05:30", "2026-11-01T06:00", "2026-11-01T06:30", "2026-11-01T07:00"]
    assert ticks(CronExpr("30 1 * * *", tz=NY), "2026-10-31T12:00:00", 2) == ["2026-11-01T05:30", "2026-11-02T06:30"]
    for at in ("2026-03-08T07:10:00", "2026-11-01T06:10:00", "2026-11-01T05:40:00"):
        tick = every_30.last_at_or_before(ms(at))
        assert tick <= ms(at) < every_30.next_after(tick)
    with pytest.raises(CronError, match="unknown time zone"):
        CronExpr("* * * * *", tz="Mars/Olympus")


def test_intervals_count_from_the_epoch() -> None:
    hourly = Interval.of(timedelta(hours=1))
    assert ticks(hourly, "2026-03-15T10:07:00", 2) == ["2026-03-15T11:00", "2026-03-15T12:00"]
    assert hourly.last_at_or_before(ms("2026-03-15T11:00:00")) == ms("2026-03-15T11:00:00")
    assert Interval.of(90).describe() == "every 90s" and Interval.of(7200).describe() == "every 2h"
    for bad in (0, 0.5, -3, "60", True):
        with pytest.raises(CronError):
            Interval.of(bad)  # type: ignore[arg-type]


def test_periodic_declarations_are_checked_when_made() -> None:
    job = Periodic("jobs.add", every=60, args=(1, 2), queue="q")
    assert job.name == "jobs.add" and job.schedule == Interval(60_000)
    assert job.job_id(ms("2026-03-15T11:00:00")) == "cron:jobs.add:2026-03-15T11:00:00Z"
    assert job.job_id(ms("2026-03-15T11:00:00") + 250) == "cron:jobs.add:2026-03-15T11:00:00.250Z"
    with pytest.raises(PeriodicError, match="exactly one of cron"):
        Periodic("jobs.add")
    with pytest.raises(PeriodicError, match="exactly one of cron"):
        Periodic("jobs.add", cron="* * * * *", every=60)
    with pytest.raises(PeriodicError, match="minute field"):
        Periodic("jobs.add", cron="61 * * * *")
    with pytest.raises(PeriodicError, match="tz applies to cron"):
        Periodic("jobs.add", every=60, tz=NY)
    with pytest.raises(PeriodicError, match=r"two different periodic jobs are named 'jobs\.add'"):
        unique([job, Periodic("jobs.add", every=30, queue="q")])
    assert unique([job, Periodic("jobs.add", every=60, args=(1, 2), queue="q")]) == [job]
