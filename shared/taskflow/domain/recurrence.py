"""Recurrence arithmetic: validate RFC 5545 RRULE bodies and compute a series' next due time.

Pure Python, no I/O. The calendar arithmetic is python-dateutil's ``rrule`` (an RFC 5545
implementation); this module only parses and validates the supported subset strictly (dateutil's
own parser is lenient and accepts parts TaskFlow does not support) and handles time zones:
rules are evaluated on naive local wall-clock times in the task's IANA zone, so occurrences keep
their local time across DST changes, and are localised at the end with ``fold=0`` (a time in a
spring-forward gap takes the offset before the gap, as RFC 5545 §3.3.5 says; an ambiguous time
takes its first occurrence).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as du

__all__ = ["RecurrenceError", "next_due", "validate_rule"]


class RecurrenceError(ValueError):
    """An invalid or unsupported recurrence rule; the message is meant for the API user."""


_FREQS: Final[dict[str, Literal[0, 1, 2, 3]]] = {
    "YEARLY": du.YEARLY,
    "MONTHLY": du.MONTHLY,
    "WEEKLY": du.WEEKLY,
    "DAILY": du.DAILY,
}
_UNSUPPORTED_FREQS: Final = frozenset({"HOURLY", "MINUTELY", "SECONDLY"})
_WEEKDAYS: Final = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# Canonical order of the parts in a normalised rule.
_ORDER: Final = (
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYMONTHDAY",
    "BYDAY",
    "BYSETPOS",
    "WKST",
)
_UNSUPPORTED_PARTS: Final = frozenset({"BYHOUR", "BYMINUTE", "BYSECOND", "BYYEARDAY", "BYWEEKNO"})
# Longest month (February counts 29 days) and largest candidate set per FREQ period: without
# BYHOUR/BYMINUTE/BYSECOND a rule has at most one instance per day.
_MONTH_DAYS: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MAX_SET: Final = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 31, "YEARLY": 366}
# The Gregorian calendar repeats every 400 years, so a rule with INTERVAL=k that has no instance
# within 400*k years of a point has none after it either. Bounding the search by that keeps a
# rule that never matches again from scanning every day up to the year 9999.
_CYCLE_YEARS: Final = 400

_INT = re.compile(r"[+-]?[0-9]{1,4}")
_BYDAY = re.compile(r"([+-]?[0-9]{1,2})?([A-Z]{2})")
_UNTIL_DATE = re.compile(r"[0-9]{8}")
_UNTIL_DATETIME = re.compile(r"[0-9]{8}T[0-9]{6}Z?")


@dataclass(frozen=True)
class _Until:
    """UNTIL as given: a local date, a floating local date-time, or an absolute UTC instant."""

    value: date | datetime
    kind: Literal["date", "floating", "utc"]

    def text(self) -> str:
        if self.kind == "date":
            return self.value.strftime("%Y%m%d")
        return self.value.strftime("%Y%m%dT%H%M%S") + ("Z" if self.kind == "utc" else "")


@dataclass(frozen=True)
class _Rule:
    """A parsed, validated rule; values are kept in the order the user gave them."""

    freq: str
    interval: int | None = None
    count: int | None = None
    until: _Until | None = None
    bymonth: tuple[int, ...] = ()
    bymonthday: tuple[int, ...] = ()
    byday: tuple[tuple[int | None, str], ...] = ()
    bysetpos: tuple[int, ...] = ()
    wkst: str | None = None

    def text(self) -> str:
        """The normalised RRULE body: upper case, canonical part order, canonical numbers."""
        values: dict[str, str | None] = {
            "FREQ": self.freq,
            "INTERVAL": None if self.interval is None else str(self.interval),
            "COUNT": None if self.count is None else str(self.count),
            "UNTIL": None if self.until is None else self.until.text(),
            "BYMONTH": _join(self.bymonth),
            "BYMONTHDAY": _join(self.bymonthday),
            "BYDAY": ",".join(f"{'' if n is None else n}{d}" for n, d in self.byday) or None,
            "BYSETPOS": _join(self.bysetpos),
            "WKST": self.wkst,
        }
        return ";".join(f"{key}={values[key]}" for key in _ORDER if values[key] is not None)

    def build(self, dtstart: datetime, until: datetime | None) -> du.rrule:
        """The dateutil rule started at naive local ``dtstart``, bounded by naive local ``until``."""
        return du.rrule(
            _FREQS[self.freq],
            dtstart=dtstart,
            interval=self.interval or 1,
            wkst=None if self.wkst is None else _WEEKDAYS.index(self.wkst),
            until=until,
            bysetpos=self.bysetpos or None,
            bymonth=self.bymonth or None,
            bymonthday=self.bymonthday or None,
            byweekday=[du.weekday(_WEEKDAYS.index(d), n) for n, d in self.byday] or None,
            cache=False,
        )


def _join(values: tuple[int, ...]) -> str | None:
    return ",".join(str(v) for v in values) or None


def validate_rule(rule: str) -> str:
    """Parse and validate an RRULE body (no 'RRULE:' prefix); return it normalised or raise RecurrenceError.

    Normalising (upper case, canonical part order) makes equal rules compare equal, and is
    idempotent so a stored rule validates to itself.
    """
    return _parse(rule).text()


def next_due(
    rule: str,
    anchor: str,
    *,
    series_start: datetime,
    previous_due: datetime,
    completed_at: datetime,
    timezone: str,
    occurrence: int,
) -> datetime | None:
    """Due time (aware, UTC) of occurrence `occurrence + 1`, or None when the series has ended.

    ``anchor`` "due": the rule runs from ``series_start``; the result is its first instance
    strictly after max(previous_due, completed_at), so missed instances are skipped.
    ``anchor`` "completion": the rule is restarted on the completion's local date at the series'
    local time of day; the result is its first instance strictly after that start.
    COUNT caps the number of occurrences, UNTIL bounds the due times (DESIGN §5).
    """
    parsed = _parse(rule)
    if anchor not in ("due", "completion"):
        raise RecurrenceError(f"anchor must be 'due' or 'completion', not {anchor!r}")
    for name, value in (
        ("series_start", series_start),
        ("previous_due", previous_due),
        ("completed_at", completed_at),
    ):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RecurrenceError(f"unknown time zone {timezone!r}") from exc

    if parsed.count is not None and occurrence >= parsed.count:
        return None

    try:
        return _next(parsed, anchor, series_start, previous_due, completed_at, tz)
    except OverflowError:  # dates at the very end (or start) of the calendar: no next occurrence
        return None


def _next(
    parsed: _Rule,
    anchor: str,
    series_start: datetime,
    previous_due: datetime,
    completed_at: datetime,
    tz: ZoneInfo,
) -> datetime | None:
    """next_due after argument checks and COUNT; may raise OverflowError near datetime.max."""
    if anchor == "due":
        dtstart = _local(series_start, tz)
        pivot = max(previous_due, completed_at).astimezone(UTC)
    else:
        dtstart = datetime.combine(_local(completed_at, tz).date(), _time_of_day(series_start, previous_due, tz))
        pivot = _aware(dtstart, tz)

    local_pivot = _local(pivot, tz)
    limit = _overflow_safe(lambda: local_pivot + timedelta(days=366 * _CYCLE_YEARS * (parsed.interval or 1)))
    if parsed.until is not None:
        limit = min(limit, _overflow_safe(lambda: _search_bound(parsed.until, tz)))
    for instance in parsed.build(dtstart, limit).xafter(local_pivot - timedelta(days=1)):
        due = _aware(instance, tz)
        if due <= pivot:
            continue
        return due if _within_until(instance, due, parsed.until) else None
    return None


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    """Naive local wall-clock time of an aware instant in ``tz``."""
    return moment.astimezone(tz).replace(tzinfo=None, fold=0)


def _aware(local: datetime, tz: ZoneInfo) -> datetime:
    """Localise a naive wall-clock time with fold=0 (first of two, offset before a gap), as UTC.

    UTC because Python never considers a fold-dependent local time equal to another zone's.
    """
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _time_of_day(series_start: datetime, previous_due: datetime, tz: ZoneInfo) -> time:
    """The series' local time of day, taken from ``previous_due``.

    When previous_due is the series' own time shifted by a spring-forward gap (02:30 that
    became 03:30), the series' nominal time is kept so one gap does not move it for good.
    """
    nominal = _local(series_start, tz).time()
    if _aware(datetime.combine(_local(previous_due, tz).date(), nominal), tz) == previous_due.astimezone(UTC):
        return nominal
    return _local(previous_due, tz).time()


def _overflow_safe(compute: Callable[[], datetime]) -> datetime:
    """``compute()``, or datetime.max when it runs past the end of the calendar."""
    try:
        return compute()
    except OverflowError:
        return datetime.max


def _search_bound(until: _Until | None, tz: ZoneInfo) -> datetime:
    """A naive local bound at or after UNTIL for dateutil's search; _within_until is exact."""
    if until is None:
        return datetime.max
    if until.kind == "date":
        return datetime.combine(until.value, time.max)
    if until.kind == "floating":
        assert isinstance(until.value, datetime)
        return until.value
    assert isinstance(until.value, datetime)
    return _local(until.value, tz) + timedelta(days=1)


def _within_until(local: datetime, due: datetime, until: _Until | None) -> bool:
    if until is None:
        return True
    if until.kind == "date":
        return local.date() <= until.value
    if until.kind == "floating":
        return local <= until.value
    return due <= until.value


# --- parsing ---------------------------------------------------------------------------------


def _parse(rule: str) -> _Rule:
    if not isinstance(rule, str):
        raise RecurrenceError("the rule must be a string such as 'FREQ=WEEKLY;BYDAY=MO'")
    body = rule.strip()
    if not body:
        raise RecurrenceError("the rule is empty; give e.g. 'FREQ=DAILY'")
    if body.upper().startswith("RRULE:"):
        raise RecurrenceError("leave out the 'RRULE:' prefix; give only the rule body, e.g. 'FREQ=DAILY'")
    parts: dict[str, str] = {}
    for raw in body.split(";"):
        key, sep, value = raw.partition("=")
        key, value = key.strip().upper(), value.strip().upper()
        if not sep or not key:
            raise RecurrenceError(f"{raw!r} is not a KEY=VALUE rule part")
        if key in parts:
            raise RecurrenceError(f"{key} is given more than once")
        if key in _UNSUPPORTED_PARTS:
            raise RecurrenceError(f"{key} is not supported")
        if key not in _ORDER:
            raise RecurrenceError(f"unknown rule part {key}")
        if not value:
            raise RecurrenceError(f"{key} has no value")
        parts[key] = value

    freq = parts.get("FREQ")
    if freq is None:
        raise RecurrenceError("FREQ is required (DAILY, WEEKLY, MONTHLY or YEARLY)")
    if freq in _UNSUPPORTED_FREQS:
        raise RecurrenceError(f"FREQ={freq} is not supported; use DAILY, WEEKLY, MONTHLY or YEARLY")
    if freq not in _FREQS:
        raise RecurrenceError(f"FREQ={freq} is not valid; use DAILY, WEEKLY, MONTHLY or YEARLY")

    parsed = _Rule(
        freq=freq,
        interval=_positive(parts, "INTERVAL"),
        count=_positive(parts, "COUNT"),
        until=_until(parts["UNTIL"]) if "UNTIL" in parts else None,
        bymonth=_ints(parts, "BYMONTH", 1, 12, allow_negative=False),
        bymonthday=_ints(parts, "BYMONTHDAY", 1, 31, allow_negative=True),
        byday=_byday(parts.get("BYDAY"), freq),
        bysetpos=_ints(parts, "BYSETPOS", 1, 366, allow_negative=True),
        wkst=_weekday(parts["WKST"], "WKST") if "WKST" in parts else None,
    )
    _check_combination(parsed)
    return parsed


def _positive(parts: dict[str, str], key: str) -> int | None:
    if key not in parts:
        return None
    value = parts[key]
    if not value.isascii() or not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise RecurrenceError(f"{key} must be a positive integer, not {value!r}")
    return int(value)


def _ints(parts: dict[str, str], key: str, low: int, high: int, *, allow_negative: bool) -> tuple[int, ...]:
    """A comma list of integers with low <= |n| <= high (negative only if allowed)."""
    if key not in parts:
        return ()
    result = []
    wanted = f"{low}..{high}" + (f" or -{high}..-{low}" if allow_negative else "")
    for item in parts[key].split(","):
        if not _INT.fullmatch(item):
            raise RecurrenceError(f"{key} value {item!r} is not an integer")
        n = int(item)
        if not (low <= abs(n) <= high) or (n < 0 and not allow_negative):
            raise RecurrenceError(f"{key} value {item!r} is out of range ({wanted})")
        result.append(n)
    return tuple(result)


def _weekday(value: str, key: str) -> str:
    if value not in _WEEKDAYS:
        raise RecurrenceError(f"{key} value {value!r} is not a weekday (MO, TU, WE, TH, FR, SA, SU)")
    return value


def _byday(value: str | None, freq: str) -> tuple[tuple[int | None, str], ...]:
    if value is None:
        return ()
    result: list[tuple[int | None, str]] = []
    for item in value.split(","):
        match = _BYDAY.fullmatch(item)
        if match is None:
            raise RecurrenceError(f"BYDAY value {item!r} is not a weekday such as MO, 1MO or -1FR")
        ordinal, day = match.group(1), _weekday(match.group(2), "BYDAY")
        if ordinal is None:
            result.append((None, day))
            continue
        n = int(ordinal)
        if not 1 <= abs(n) <= 53:
            raise RecurrenceError(f"BYDAY value {item!r}: the ordinal must be 1..53 or -53..-1")
        if freq not in ("MONTHLY", "YEARLY"):
            raise RecurrenceError(
                f"BYDAY value {item!r}: an ordinal weekday needs FREQ=MONTHLY or FREQ=YEARLY (RFC 5545)"
            )
        result.append((n, day))
    return tuple(result)


def _until(value: str) -> _Until:
    try:
        if _UNTIL_DATE.fullmatch(value):
            return _Until(datetime.strptime(value, "%Y%m%d").date(), "date")
        if _UNTIL_DATETIME.fullmatch(value):
            moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
            if value.endswith("Z"):
                return _Until(moment.replace(tzinfo=UTC), "utc")
            return _Until(moment, "floating")
    except ValueError:
        pass
    raise RecurrenceError(f"UNTIL value {value!r} is not a date YYYYMMDD or a date-time YYYYMMDDTHHMMSSZ")


def _check_combination(rule: _Rule) -> None:
    """Cross-part rules of RFC 5545, and combinations that can never produce an instance."""
    if rule.count is not None and rule.until is not None:
        raise RecurrenceError("COUNT and UNTIL cannot be used together (RFC 5545)")
    if rule.bymonthday and rule.freq == "WEEKLY":
        raise RecurrenceError("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545)")
    if rule.bysetpos and not (rule.bymonth or rule.bymonthday or rule.byday):
        raise RecurrenceError("BYSETPOS needs another BY part (BYDAY, BYMONTHDAY or BYMONTH)")
    for pos in rule.bysetpos:
        if abs(pos) > _MAX_SET[rule.freq]:
            raise RecurrenceError(
                f"BYSETPOS value {pos} never matches: FREQ={rule.freq} has at most "
                f"{_MAX_SET[rule.freq]} instance(s) per period"
            )
    months = rule.bymonth or tuple(range(1, 13))
    longest = max(_MONTH_DAYS[m - 1] for m in months)
    for monthday in rule.bymonthday:
        if abs(monthday) > longest:
            raise RecurrenceError(f"BYMONTHDAY value {monthday} never occurs in the months of this rule")
    in_month = rule.freq == "MONTHLY" or (rule.freq == "YEARLY" and rule.bymonth)
    for n, day in rule.byday:
        if n is not None and in_month and abs(n) > 5:
            raise RecurrenceError(f"BYDAY value {n}{day} never occurs: a month has at most 5 of each weekday")
