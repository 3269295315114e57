"""Schedules for periodic jobs: cron expressions and fixed intervals. Pure computation, no Redis.

A schedule is a set of *ticks*: instants (milliseconds since the epoch, UTC) at which a periodic job is
due. ``next_after(ms)`` is the first tick strictly after an instant, ``last_at_or_before(ms)`` the last tick
at or before it. Every scheduler computes the same ticks from the same declaration, whatever its clock
or start time, which is what lets several schedulers agree on "this tick" (see :mod:`clusterq.periodic`).

Cron expressions have the five Vixie-cron fields (minute, hour, day of month, month, day of week):
lists ``1,15``, ranges ``1-5``, steps ``*/10``, ``10-40/10`` and ``5/15`` (from 5 to the end, every 15),
names ``JAN``-``DEC`` and ``SUN``-``SAT`` (any case), day of week 0 or 7 for Sunday, and the macros
``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly``.
As in Vixie cron, when both day fields are restricted (neither starts with ``*``) a day matches if
either matches (``0 0 1 * MON``: the 1st of the month and every Monday); otherwise both must match.

Times are UTC unless a ``tz`` (an IANA name or a ``tzinfo``) is given; then the fields are wall-clock
times there. Across a daylight-saving change: a wall time the clock skips (02:30 when 02:00 jumps to
03:00) fires as if the clock had not changed, i.e. at 03:30; a wall time that happens twice fires
once, at its first occurrence, unless the hour field is ``*`` (so ``*/15 * * * *`` keeps firing every
15 minutes through the repeated hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# A daylight-saving change moves wall time by at most this much (2 h historically); searches with a
# time zone look this far around a candidate so a shifted wall time cannot be missed.
_DST_WINDOW = timedelta(hours=3)
_SEARCH_YEARS = 30  # longer than any valid expression can go without matching (Feb 29 on a Monday: 28)

_MONTHS = {name: i + 1 for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression (or interval) that cannot be used; the message names the field and the part."""


class Schedule(Protocol):
    """When a periodic job is due. Ticks are milliseconds since the epoch (UTC)."""

    def next_after(self, at_ms: int) -> int:
        """The first tick strictly after ``at_ms``."""
        ...

    def last_at_or_before(self, at_ms: int) -> int:
        """The last tick at or before ``at_ms``."""
        ...

    def describe(self) -> str:
        """A short human-readable text, shown by listings."""
        ...


# --- intervals ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """Every ``every_ms`` milliseconds, counted from the Unix epoch: ``every=3600`` fires on the hour
    (UTC), ``every=60`` at each minute's start, whoever computes it and whenever it started."""

    every_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.every_ms, int) or isinstance(self.every_ms, bool) or self.every_ms < 1000:
            raise CronError(f"an interval must be at least 1 second, got {self.every_ms!r} ms")

    @classmethod
    def of(cls, every: float | int | timedelta) -> Interval:
        if isinstance(every, timedelta):
            seconds = every.total_seconds()
        elif isinstance(every, (int, float)) and not isinstance(every, bool):
            seconds = float(every)
        else:
            raise CronError(f"every must be seconds or a timedelta, got {every!r}")
        if seconds < 1:
            raise CronError(f"every must be at least 1 second, got {every!r}")
        return cls(round(seconds * 1000))

    def next_after(self, at_ms: int) -> int:
        return (at_ms // self.every_ms + 1) * self.every_ms

    def last_at_or_before(self, at_ms: int) -> int:
        return at_ms // self.every_ms * self.every_ms

    def describe(self) -> str:
        ms = self.every_ms
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if ms % size == 0:
                return f"every {ms // size}{unit}"
        return f"every {ms / 1000:g}s"


# --- cron expressions -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),
)


def _value(field: _Field, text: str, part: str) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names[upper]
    if not text.isdigit():
        hint = f" or a name ({', '.join(field.names)})" if field.names else ""
        raise CronError(f"{field.name} field: {part!r}: {text!r} is not a number{hint}")
    number = int(text)
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name} field: {part!r}: {number} is outside {field.low}-{field.high}")
    return number


def _parse_field(field: _Field, text: str) -> frozenset[int]:
    if not text:
        raise CronError(f"{field.name} field is empty")
    values: set[int] = set()
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field.name} field: {part!r}: the step must be a positive number")
            step = int(step_text)
        if body == "*":
            low, high = field.low, field.high
        elif "-" in body:
            first, _, last = body.partition("-")
            low, high = _value(field, first, part), _value(field, last, part)
            if low > high:
                raise CronError(f"{field.name} field: {part!r}: a range must go upwards ({low} > {high})")
        else:
            low = _value(field, body, part)
            high = field.high if slash else low  # "5/15": from 5 to the end, every 15
        values.update(range(low, high + 1, step))
    if field.name == "day of week" and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values)


def _resolve_tz(tz: str | tzinfo | None) -> tzinfo | None:
    if tz is None or tz == "UTC" or tz is timezone.utc:
        return None
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {tz!r}: {exc}") from None


class CronExpr:
    """A parsed five-field cron expression, evaluated in UTC or in the time zone ``tz``."""

    def __init__(self, expression: str, tz: str | tzinfo | None = None) -> None:
        if not isinstance(expression, str):
            raise CronError(f"a cron expression must be a str, got {type(expression).__name__}")
        self.expression = " ".join(expression.split())
        text = _MACROS.get(self.expression.lower(), self.expression)
        if text.startswith("@"):
            raise CronError(f"unknown cron macro {self.expression!r}; expected one of {', '.join(_MACROS)}")
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"cron expression {self.expression!r} has {len(parts)} field(s); expected 5 "
                            "(minute hour day-of-month month day-of-week)")
        self.minutes, self.hours, self.days, self.months, self.weekdays = (
            _parse_field(field, part) for field, part in zip(_FIELDS, parts))
        self._sorted_minutes = sorted(self.minutes)
        # Vixie cron: a field starting with "*" is unrestricted for the day-of-month/day-of-week rule.
        self._day_or = not parts[2].startswith("*") and not parts[4].startswith("*")
        self._hour_star = parts[1].startswith("*")
        self.tz = _resolve_tz(tz)
        if self._next_wall(datetime(2000, 1, 1)) is None:
            raise CronError(f"cron expression {self.expression!r} never matches a date")

    def __repr__(self) -> str:
        return f"CronExpr({self.expression!r}{f', tz={self.tz}' if self.tz else ''})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronExpr) and (other.expression, str(other.tz)) == (self.expression, str(self.tz))

    def __hash__(self) -> int:
        return hash((self.expression, str(self.tz)))

    def describe(self) -> str:
        return f"cron {self.expression}" + (f" ({self.tz})" if self.tz else "")

    # --- matching on wall-clock times (naive datetimes, minute resolution) -----------------------

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        return (dom or dow) if self._day_or else (dom and dow)

    def _next_wall(self, t: datetime) -> datetime | None:
        """The first matching wall time at or after ``t`` (whole minutes), or None within the horizon."""
        limit = t.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = datetime(t.year + 1, 1, 1) if t.month == 12 else datetime(t.year, t.month + 1, 1)
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + _DAY
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + _HOUR
            else:
                later = [m for m in self._sorted_minutes if m >= t.minute]
                if later:
                    return t.replace(minute=later[0])
                t = t.replace(minute=0) + _HOUR
        return None

    def _prev_wall(self, t: datetime) -> datetime | None:
        """The last matching wall time at or before ``t`` (whole minutes), or None within the horizon."""
        limit = t.year - _SEARCH_YEARS
        while t.year >= limit:
            if t.month not in self.months:
                t = datetime(t.year, t.month, 1) - _MINUTE
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) - _MINUTE
            elif t.hour not in self.hours:
                t = t.replace(minute=0) - _MINUTE
            else:
                earlier = [m for m in self._sorted_minutes if m <= t.minute]
                if earlier:
                    return t.replace(minute=earlier[-1])
                t = t.replace(minute=0) - _MINUTE
        return None

    # --- wall times <-> instants ----------------------------------------------------------------

    def _wall(self, at_ms: int) -> datetime:
        moment = datetime.fromtimestamp(at_ms / 1000, self.tz or timezone.utc)
        return moment.replace(tzinfo=None, second=0, microsecond=0)

    def _instants(self, wall: datetime) -> list[int]:
        """The tick(s) of one matching wall time (see the module's note on daylight saving)."""
        if self.tz is None:
            return [_ms(wall.replace(tzinfo=timezone.utc))]
        first = _ms(wall.replace(tzinfo=self.tz, fold=0))
        second = _ms(wall.replace(tzinfo=self.tz, fold=1))
        if second > first and self._hour_star:  # a repeated wall time; only "*" hours fire twice
            return [first, second]
        return [first]  # normal; repeated (first occurrence); skipped (fold 0 = shifted forward)

    def next_after(self, at_ms: int) -> int:
        start = self._wall(at_ms) + _MINUTE
        if self.tz is None:
            found = self._next_wall(start)
            if found is None:
                raise CronError(f"{self.expression!r} has no tick after {at_ms}")
            return _ms(found.replace(tzinfo=timezone.utc))
        # Daylight saving makes wall order and instant order differ inside a window: look around it.
        best: int | None = None
        best_wall: datetime | None = None
        candidate = self._next_wall(start - _DST_WINDOW)
        while candidate is not None and (best_wall is None or candidate <= best_wall + _DST_WINDOW):
            for tick in self._instants(candidate):
                if tick > at_ms and (best is None or tick < best):
                    best, best_wall = tick, best_wall or candidate
            candidate = self._next_wall(candidate + _MINUTE)
        if best is None:
            raise CronError(f"{self.expression!r} has no tick after {at_ms}")
        return best

    def last_at_or_before(self, at_ms: int) -> int:
        start = self._wall(at_ms)
        if self.tz is None:
            found = self._prev_wall(start)
            if found is None:
                raise CronError(f"{self.expression!r} has no tick before {at_ms}")
            return _ms(found.replace(tzinfo=timezone.utc))
        best: int | None = None
        best_wall: datetime | None = None
        candidate = self._prev_wall(start + _DST_WINDOW)
        while candidate is not None and (best_wall is None or candidate >= best_wall - _DST_WINDOW):
            for tick in self._instants(candidate):
                if tick <= at_ms and (best is None or tick > best):
                    best, best_wall = tick, best_wall or candidate
            candidate = self._prev_wall(candidate - _MINUTE)
        if best is None:
            raise CronError(f"{self.expression!r} has no tick before {at_ms}")
        return best


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def to_datetime(ms: int) -> datetime:
    """A tick as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


__all__ = ["CronError", "CronExpr", "Interval", "Schedule", "to_datetime"]
