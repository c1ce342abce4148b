"""Unit tests of the recurrence arithmetic (DESIGN §5).

Every expected value is worked out by hand from RFC 5545 and the calendar (weekdays and DST
transition dates noted beside each case), never by calling dateutil.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskflow.domain.recurrence import RecurrenceError, next_due, validate_rule

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def at(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    """An aware local time (fold=0)."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz))


def nxt(
    rule: str,
    *,
    start: datetime,
    prev: datetime | None = None,
    done: datetime | None = None,
    anchor: str = "due",
    tz: str = "UTC",
    occ: int = 1,
) -> datetime | None:
    """next_due with defaults: previous due = series start, completed right at the previous due."""
    prev = start if prev is None else prev
    return next_due(
        rule,
        anchor,
        series_start=start,
        previous_due=prev,
        completed_at=prev if done is None else done,
        timezone=tz,
        occurrence=occ,
    )


def chain(rule: str, start: datetime, n: int, tz: str = "UTC", anchor: str = "due") -> list[datetime]:
    """The n dues after `start`, each occurrence completed exactly at its due."""
    out: list[datetime] = []
    prev = start
    for occ in range(1, n + 1):
        due = nxt(rule, start=start, prev=prev, anchor=anchor, tz=tz, occ=occ)
        assert due is not None
        out.append(due)
        prev = due
    return out


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "normalised"),
    [
        ("FREQ=DAILY", "FREQ=DAILY"),
        ("FREQ=WEEKLY", "FREQ=WEEKLY"),
        ("FREQ=MONTHLY", "FREQ=MONTHLY"),
        ("FREQ=YEARLY", "FREQ=YEARLY"),
        ("freq=weekly;byday=mo,we", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("BYDAY=TU;FREQ=WEEKLY;INTERVAL=2", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU"),
        ("FREQ=DAILY;INTERVAL=03", "FREQ=DAILY;INTERVAL=3"),
        ("FREQ=MONTHLY;BYDAY=+1MO", "FREQ=MONTHLY;BYDAY=1MO"),
        ("FREQ=MONTHLY;BYDAY=2TU", "FREQ=MONTHLY;BYDAY=2TU"),
        ("FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=-1FR"),
        ("FREQ=YEARLY;BYDAY=20MO", "FREQ=YEARLY;BYDAY=20MO"),
        ("FREQ=YEARLY;BYDAY=-53SU", "FREQ=YEARLY;BYDAY=-53SU"),
        ("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH"),
        ("FREQ=MONTHLY;BYMONTHDAY=31", "FREQ=MONTHLY;BYMONTHDAY=31"),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHLY;BYMONTHDAY=-1"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,15,-31", "FREQ=MONTHLY;BYMONTHDAY=1,15,-31"),
        ("FREQ=DAILY;BYMONTHDAY=13;BYDAY=FR", "FREQ=DAILY;BYMONTHDAY=13;BYDAY=FR"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
        (
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        ),
        ("FREQ=YEARLY;BYMONTH=1,3;BYSETPOS=1", "FREQ=YEARLY;BYMONTH=1,3;BYSETPOS=1"),
        ("FREQ=YEARLY;BYDAY=MO;BYSETPOS=366", "FREQ=YEARLY;BYDAY=MO;BYSETPOS=366"),
        ("FREQ=DAILY;COUNT=5", "FREQ=DAILY;COUNT=5"),
        ("FREQ=DAILY;UNTIL=20250131", "FREQ=DAILY;UNTIL=20250131"),
        ("FREQ=DAILY;UNTIL=20250131T235959Z", "FREQ=DAILY;UNTIL=20250131T235959Z"),
        ("FREQ=DAILY;until=20250131t090000z", "FREQ=DAILY;UNTIL=20250131T090000Z"),
        ("FREQ=DAILY;UNTIL=20250131T090000", "FREQ=DAILY;UNTIL=20250131T090000"),
        ("WKST=SU;FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU;WKST=SU"),
        (
            "WKST=MO;BYSETPOS=2;BYDAY=MO;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10;BYMONTH=1;COUNT=2;INTERVAL=1;FREQ=YEARLY",
            "FREQ=YEARLY;INTERVAL=1;COUNT=2;BYMONTH=1;BYMONTHDAY=1,2,3,4,5,6,7,8,9,10;BYDAY=MO;BYSETPOS=2;WKST=MO",
        ),
    ],
)
def test_validate_accepts_and_normalises(rule: str, normalised: str) -> None:
    assert validate_rule(rule) == normalised
    assert validate_rule(normalised) == normalised  # idempotent: a stored rule validates to itself


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("RRULE:FREQ=DAILY", "RRULE:"),
        ("rrule:FREQ=DAILY", "RRULE:"),
        ("INTERVAL=2", "FREQ is required"),
        ("FREQ=HOURLY", "FREQ=HOURLY is not supported; use DAILY, WEEKLY, MONTHLY or YEARLY"),
        ("FREQ=MINUTELY", "FREQ=MINUTELY is not supported"),
        ("FREQ=SECONDLY", "FREQ=SECONDLY is not supported"),
        ("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY"),
        ("FREQ=DAILY;BYHOUR=9", "BYHOUR is not supported"),
        ("FREQ=DAILY;BYMINUTE=30", "BYMINUTE is not supported"),
        ("FREQ=DAILY;BYSECOND=0", "BYSECOND is not supported"),
        ("FREQ=YEARLY;BYYEARDAY=100", "BYYEARDAY is not supported"),
        ("FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO is not supported"),
        ("FREQ=DAILY;X-NAME=1", "unknown rule part X-NAME"),
        ("FREQ=DAILY;FOO=BAR", "FOO"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given more than once"),
        ("FREQ=WEEKLY;BYDAY=MO;BYDAY=TU", "BYDAY is given more than once"),
        ("FREQ=DAILY;", "not a KEY=VALUE"),
        ("FREQ", "not a KEY=VALUE"),
        ("FREQ=DAILY;;COUNT=2", "not a KEY=VALUE"),
        ("FREQ=", "FREQ has no value"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=-1", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=two", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=1.5", "INTERVAL"),
        ("FREQ=DAILY;INTERVAL=" + "9" * 5000, "INTERVAL"),
        ("FREQ=DAILY;COUNT=0", "COUNT"),
        ("FREQ=DAILY;COUNT=x", "COUNT"),
        ("FREQ=DAILY;COUNT=3;UNTIL=20250101", "COUNT and UNTIL cannot be used together"),
        ("FREQ=DAILY;UNTIL=20250230", "UNTIL"),
        ("FREQ=DAILY;UNTIL=2025-01-01", "UNTIL"),
        ("FREQ=DAILY;UNTIL=20250101T250000Z", "UNTIL"),
        ("FREQ=DAILY;UNTIL=20250101T0900Z", "UNTIL"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=-32", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=1,,2", "BYMONTHDAY"),
        ("FREQ=MONTHLY;BYMONTHDAY=last", "BYMONTHDAY"),
        ("FREQ=YEARLY;BYMONTH=0", "BYMONTH"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH"),
        ("FREQ=YEARLY;BYMONTH=-1", "BYMONTH"),
        ("FREQ=WEEKLY;BYDAY=1MO", "BYDAY value '1MO'"),
        ("FREQ=DAILY;BYDAY=-1FR", "FREQ=MONTHLY or FREQ=YEARLY"),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY value 'XX'"),
        ("FREQ=WEEKLY;BYDAY=MONDAY", "BYDAY value 'MONDAY'"),
        ("FREQ=MONTHLY;BYDAY=0MO", "BYDAY value '0MO'"),
        ("FREQ=YEARLY;BYDAY=54MO", "BYDAY value '54MO'"),
        ("FREQ=MONTHLY;BYDAY=6MO", "BYDAY value 6MO never occurs"),
        ("FREQ=YEARLY;BYMONTH=3;BYDAY=-6FR", "never occurs"),
        ("FREQ=MONTHLY;BYSETPOS=1", "BYSETPOS needs another BY part"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=0", "BYSETPOS"),
        ("FREQ=YEARLY;BYDAY=MO;BYSETPOS=367", "BYSETPOS"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=32", "BYSETPOS value 32 never matches"),
        ("FREQ=WEEKLY;BYDAY=MO;BYSETPOS=-8", "BYSETPOS value -8 never matches"),
        ("FREQ=DAILY;BYDAY=MO;BYSETPOS=2", "BYSETPOS value 2 never matches"),
        ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY cannot be used with FREQ=WEEKLY"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "BYMONTHDAY value 30 never occurs"),
        ("FREQ=YEARLY;BYMONTH=4,6;BYMONTHDAY=-31", "BYMONTHDAY value -31 never occurs"),
        ("FREQ=WEEKLY;WKST=XX", "WKST"),
        ("FREQ=WEEKLY;WKST=1", "WKST"),
    ],
)
def test_validate_rejects(rule: str, fragment: str) -> None:
    with pytest.raises(RecurrenceError) as info:
        validate_rule(rule)
    assert fragment in str(info.value)


def test_recurrence_error_is_a_value_error_and_non_strings_are_rejected() -> None:
    assert issubclass(RecurrenceError, ValueError)
    with pytest.raises(RecurrenceError):
        validate_rule(42)  # type: ignore[arg-type]


# --- daily, weekly, interval -----------------------------------------------------------------


def test_daily() -> None:
    start = utc(2025, 1, 6, 9)
    assert chain("FREQ=DAILY", start, 3) == [utc(2025, 1, 7, 9), utc(2025, 1, 8, 9), utc(2025, 1, 9, 9)]


def test_result_is_aware_utc() -> None:
    due = nxt("FREQ=DAILY", start=at(NY, 2025, 1, 6, 9), tz=NY)
    assert due is not None
    assert due.tzinfo is UTC
    assert due == utc(2025, 1, 7, 14)  # 09:00 EST = 14:00Z


def test_daily_interval() -> None:
    # Every 3rd day from Mon 2025-01-06: Jan 9, 12, 15.
    assert chain("FREQ=DAILY;INTERVAL=3", utc(2025, 1, 6, 9), 3) == [
        utc(2025, 1, 9, 9),
        utc(2025, 1, 12, 9),
        utc(2025, 1, 15, 9),
    ]


def test_weekly_defaults_to_the_start_weekday() -> None:
    # Mon 2025-01-06 -> Mondays Jan 13, 20.
    assert chain("FREQ=WEEKLY", utc(2025, 1, 6, 9), 2) == [utc(2025, 1, 13, 9), utc(2025, 1, 20, 9)]


def test_weekly_byday() -> None:
    # Mon 2025-01-06, MO/WE/FR: Wed 8, Fri 10, Mon 13, Wed 15.
    assert chain("FREQ=WEEKLY;BYDAY=MO,WE,FR", utc(2025, 1, 6, 8, 30), 4) == [
        utc(2025, 1, 8, 8, 30),
        utc(2025, 1, 10, 8, 30),
        utc(2025, 1, 13, 8, 30),
        utc(2025, 1, 15, 8, 30),
    ]


def test_biweekly() -> None:
    # Every other week on Tuesday from Tue 2025-01-07: Jan 21, Feb 4.
    assert chain("FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", utc(2025, 1, 7, 12), 2) == [
        utc(2025, 1, 21, 12),
        utc(2025, 2, 4, 12),
    ]


def test_series_start_off_the_rule_is_still_occurrence_one() -> None:
    # Occurrence 1 is due Wed 2025-01-08 (not a Monday); the next one is the first Monday after it.
    assert nxt("FREQ=WEEKLY;BYDAY=MO", start=utc(2025, 1, 8, 9)) == utc(2025, 1, 13, 9)


# --- monthly and yearly day arithmetic -------------------------------------------------------


def test_second_tuesday() -> None:
    # 2025: Jan 1 is a Wednesday -> 2nd Tuesday Jan 14; Feb 1 and Mar 1 are Saturdays -> Feb 11, Mar 11.
    assert chain("FREQ=MONTHLY;BYDAY=2TU", utc(2025, 1, 14, 10), 2) == [
        utc(2025, 2, 11, 10),
        utc(2025, 3, 11, 10),
    ]


def test_last_friday() -> None:
    # Fri 2025-01-31 is the last Friday of January; then Feb 28 and Mar 28 (4 weeks apart each).
    assert chain("FREQ=MONTHLY;BYDAY=-1FR", utc(2025, 1, 31, 16), 2) == [
        utc(2025, 2, 28, 16),
        utc(2025, 3, 28, 16),
    ]


def test_yearly_nth_weekday_in_month() -> None:
    # US Thanksgiving: Nov 1 2025 is a Saturday -> Thu 27; Nov 1 2026 is a Sunday -> Thu 26.
    start = utc(2025, 11, 27, 17)
    assert nxt("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", start=start) == utc(2026, 11, 26, 17)


def test_monthly_on_the_31st_skips_short_months() -> None:
    # RFC 5545: invalid dates (Feb 31, Apr 31, ...) are ignored, not moved.
    assert chain("FREQ=MONTHLY", utc(2025, 1, 31, 9), 5) == [
        utc(2025, 3, 31, 9),
        utc(2025, 5, 31, 9),
        utc(2025, 7, 31, 9),
        utc(2025, 8, 31, 9),
        utc(2025, 10, 31, 9),
    ]
    assert nxt("FREQ=MONTHLY;BYMONTHDAY=31", start=utc(2025, 1, 31, 9)) == utc(2025, 3, 31, 9)


def test_last_day_of_month_leap_year() -> None:
    assert chain("FREQ=MONTHLY;BYMONTHDAY=-1", utc(2024, 1, 31, 9), 3) == [
        utc(2024, 2, 29, 9),
        utc(2024, 3, 31, 9),
        utc(2024, 4, 30, 9),
    ]


def test_last_day_of_month_non_leap_years() -> None:
    assert nxt("FREQ=MONTHLY;BYMONTHDAY=-1", start=utc(2025, 1, 31, 9)) == utc(2025, 2, 28, 9)
    # 2100 is not a leap year (divisible by 100, not by 400); 2000 was.
    assert nxt("FREQ=MONTHLY;BYMONTHDAY=-1", start=utc(2100, 1, 31, 9)) == utc(2100, 2, 28, 9)
    assert nxt("FREQ=MONTHLY;BYMONTHDAY=-1", start=utc(2000, 1, 31, 9)) == utc(2000, 2, 29, 9)


def test_last_weekday_of_month_with_bysetpos() -> None:
    rule = "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
    # Mar 31 2025 is a Monday; May 31 is a Saturday -> Fri May 30; Aug 31 a Sunday -> Fri Aug 29.
    assert nxt(rule, start=utc(2025, 2, 28, 9)) == utc(2025, 3, 31, 9)
    start = utc(2025, 1, 31, 9)
    assert nxt(rule, start=start, prev=utc(2025, 4, 30, 9), occ=4) == utc(2025, 5, 30, 9)
    assert nxt(rule, start=start, prev=utc(2025, 7, 31, 9), occ=7) == utc(2025, 8, 29, 9)


def test_first_weekday_of_month_with_bysetpos() -> None:
    # Feb 1 2025 is a Saturday -> Mon Feb 3; Mar 1 is a Saturday too -> Mon Mar 3.
    rule = "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1"
    assert chain(rule, utc(2025, 1, 1, 9), 2) == [utc(2025, 2, 3, 9), utc(2025, 3, 3, 9)]


def test_yearly_feb_29_only_in_leap_years() -> None:
    start = utc(2024, 2, 29, 12)
    assert nxt("FREQ=YEARLY", start=start) == utc(2028, 2, 29, 12)
    # 2100 is not a leap year: 2096 -> 2104.
    assert nxt("FREQ=YEARLY", start=start, prev=utc(2096, 2, 29, 12), occ=19) == utc(2104, 2, 29, 12)
    assert nxt("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", start=start) == utc(2028, 2, 29, 12)


def test_yearly_last_day_of_february() -> None:
    rule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1"
    assert chain(rule, utc(2023, 2, 28, 8), 2) == [utc(2024, 2, 29, 8), utc(2025, 2, 28, 8)]


def test_rare_instance_far_ahead() -> None:
    # Feb 29 that is a Monday: 2016, then 2044.
    rule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"
    assert nxt(rule, start=utc(2016, 2, 29, 9)) == utc(2044, 2, 29, 9)


def test_rule_that_never_matches_again_ends_quickly() -> None:
    # A 5th Monday falls on the 29th..31st, never on the 1st: the series has ended.
    began = time.monotonic()
    assert nxt("FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1", start=utc(2025, 1, 1, 9)) is None
    assert time.monotonic() - began < 5


# --- time zones and DST ----------------------------------------------------------------------


def test_daily_new_york_across_spring_forward() -> None:
    # DST starts Sun 2025-03-09 02:00 EST -> 03:00 EDT: 09:00 EST is 14:00Z, 09:00 EDT is 13:00Z.
    dues = chain("FREQ=DAILY", at(NY, 2025, 3, 7, 9), 3, tz=NY)
    assert dues == [utc(2025, 3, 8, 14), utc(2025, 3, 9, 13), utc(2025, 3, 10, 13)]
    assert [d.astimezone(ZoneInfo(NY)).hour for d in dues] == [9, 9, 9]
    offsets = [d.astimezone(ZoneInfo(NY)).utcoffset() for d in dues]
    assert offsets == [timedelta(hours=-5), timedelta(hours=-4), timedelta(hours=-4)]


def test_daily_new_york_across_fall_back() -> None:
    # DST ends Sun 2025-11-02 02:00 EDT -> 01:00 EST: 09:00 EDT is 13:00Z, 09:00 EST is 14:00Z.
    dues = chain("FREQ=DAILY", at(NY, 2025, 10, 31, 9), 3, tz=NY)
    assert dues == [utc(2025, 11, 1, 13), utc(2025, 11, 2, 14), utc(2025, 11, 3, 14)]
    assert [d.astimezone(ZoneInfo(NY)).hour for d in dues] == [9, 9, 9]
    offsets = [d.astimezone(ZoneInfo(NY)).utcoffset() for d in dues]
    assert offsets == [timedelta(hours=-4), timedelta(hours=-5), timedelta(hours=-5)]


def test_daily_0230_through_the_spring_forward_gap() -> None:
    # 02:30 does not exist on 2025-03-09 in New York. RFC 5545 §3.3.5: use the offset before the
    # gap (EST, -5): 02:30 EST = 07:30Z = 03:30 EDT. The next day is 02:30 EDT again (06:30Z).
    dues = chain("FREQ=DAILY", at(NY, 2025, 3, 7, 2, 30), 3, tz=NY)
    assert dues == [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 30), utc(2025, 3, 10, 6, 30)]
    local = [d.astimezone(ZoneInfo(NY)) for d in dues]
    assert [(t.hour, t.minute) for t in local] == [(2, 30), (3, 30), (2, 30)]


def test_ambiguous_fall_back_time_takes_the_first() -> None:
    # 01:30 happens twice on 2025-11-02 in New York; the first (EDT, 05:30Z) is used.
    dues = chain("FREQ=DAILY", at(NY, 2025, 10, 31, 1, 30), 3, tz=NY)
    assert dues == [utc(2025, 11, 1, 5, 30), utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)]


def test_berlin_weekly_across_both_transitions() -> None:
    # Berlin: CEST from Sun 2025-03-30, CET again from Sun 2025-10-26. Tuesdays at 18:00.
    rule = "FREQ=WEEKLY;BYDAY=TU"
    start = at(BERLIN, 2025, 3, 25, 18)
    assert start == utc(2025, 3, 25, 17)  # CET, +1
    assert nxt(rule, start=start, tz=BERLIN) == utc(2025, 4, 1, 16)  # CEST, +2
    prev = at(BERLIN, 2025, 10, 21, 18)
    assert prev == utc(2025, 10, 21, 16)
    assert nxt(rule, start=start, prev=prev, tz=BERLIN, occ=31) == utc(2025, 10, 28, 17)


def test_day_boundaries_are_local() -> None:
    # Tokyo (+9, no DST): a daily 08:00 task is due 23:00Z the previous UTC day.
    start = at("Asia/Tokyo", 2025, 1, 6, 8)
    assert start == utc(2025, 1, 5, 23)
    # Weekly on Monday in Tokyo: the next Monday 08:00 JST is Sunday 23:00Z.
    assert nxt("FREQ=WEEKLY;BYDAY=MO", start=start, tz="Asia/Tokyo") == utc(2025, 1, 12, 23)


# --- anchors ---------------------------------------------------------------------------------


def test_anchor_due_completing_late_skips_missed_instances() -> None:
    start = utc(2025, 1, 1, 9)
    # Completed Jan 5 at noon: Jan 2..5 are skipped, no pile-up.
    assert nxt("FREQ=DAILY", start=start, done=utc(2025, 1, 5, 12)) == utc(2025, 1, 6, 9)
    # Completed Jan 5 before 09:00: Jan 5 09:00 is still ahead.
    assert nxt("FREQ=DAILY", start=start, done=utc(2025, 1, 5, 8)) == utc(2025, 1, 5, 9)
    # Weekly from Mon Jan 6, completed Wed Jan 22: Jan 13 and 20 missed -> Jan 27.
    assert nxt("FREQ=WEEKLY", start=utc(2025, 1, 6, 9), done=utc(2025, 1, 22, 9)) == utc(2025, 1, 27, 9)


def test_anchor_due_completing_early_gives_the_instance_after_previous_due() -> None:
    start = utc(2025, 1, 1, 9)
    prev = utc(2025, 1, 10, 9)
    assert nxt("FREQ=DAILY", start=start, prev=prev, done=utc(2025, 1, 8, 7), occ=10) == utc(2025, 1, 11, 9)
    # Weekly from Mon Jan 6, occurrence due Mon Jan 13 completed on Fri Jan 10 -> Jan 20.
    assert nxt(
        "FREQ=WEEKLY", start=utc(2025, 1, 6, 9), prev=utc(2025, 1, 13, 9), done=utc(2025, 1, 10, 15), occ=2
    ) == utc(2025, 1, 20, 9)


def test_anchor_due_keeps_the_series_grid() -> None:
    # Every 3 days from Jan 1 (Jan 4, 7, 10, ...): completing on Jan 8 gives Jan 10, not Jan 11.
    start = utc(2025, 1, 1, 9)
    due = nxt("FREQ=DAILY;INTERVAL=3", start=start, prev=utc(2025, 1, 4, 9), done=utc(2025, 1, 8, 12))
    assert due == utc(2025, 1, 10, 9)


def test_anchor_completion_interval_uses_the_local_completion_date() -> None:
    # Series at 09:00 New York. Completed Tue 2025-01-14 22:00 EST (= Wed 03:00Z): the local date
    # is Tuesday, so every 3 days -> Fri Jan 17 09:00 EST = 14:00Z (not Saturday).
    due = nxt(
        "FREQ=DAILY;INTERVAL=3",
        anchor="completion",
        start=at(NY, 2025, 1, 1, 9),
        prev=at(NY, 2025, 1, 10, 9),
        done=utc(2025, 1, 15, 3),
        tz=NY,
        occ=4,
    )
    assert due == utc(2025, 1, 17, 14)


def test_anchor_completion_weekly_on_the_same_weekday() -> None:
    # WEEKLY;BYDAY=MO completed on Mon Jan 13 (even before the 09:00 due) -> next Monday.
    rule = "FREQ=WEEKLY;BYDAY=MO"
    start = utc(2025, 1, 6, 9)
    for done in (utc(2025, 1, 13, 7), utc(2025, 1, 13, 20)):
        due = nxt(rule, anchor="completion", start=start, prev=utc(2025, 1, 13, 9), done=done, occ=2)
        assert due == utc(2025, 1, 20, 9)
    # Completed on Wednesday Jan 15 -> Monday Jan 20 as well.
    assert nxt(
        rule, anchor="completion", start=start, prev=utc(2025, 1, 13, 9), done=utc(2025, 1, 15, 9), occ=2
    ) == utc(2025, 1, 20, 9)


def test_anchor_completion_late_and_early() -> None:
    rule = "FREQ=DAILY;INTERVAL=2"
    start = utc(2025, 1, 1, 18)
    # Due Jan 1 18:00, completed Jan 5 10:00 -> Jan 7 18:00 (two days after the completion date).
    assert nxt(rule, anchor="completion", start=start, done=utc(2025, 1, 5, 10)) == utc(2025, 1, 7, 18)
    # Due Jan 10 18:00 but completed early on Jan 8 -> Jan 10 18:00.
    due = nxt(rule, anchor="completion", start=start, prev=utc(2025, 1, 10, 18), done=utc(2025, 1, 8, 9), occ=5)
    assert due == utc(2025, 1, 10, 18)


def test_anchor_completion_monthly_restarts_on_the_completion_day() -> None:
    # Monthly, completed Mar 15 -> Apr 15 at the series' 09:00.
    due = nxt("FREQ=MONTHLY", anchor="completion", start=utc(2025, 1, 31, 9), done=utc(2025, 3, 15, 20))
    assert due == utc(2025, 4, 15, 9)


def test_anchor_completion_uses_the_previous_due_time_of_day() -> None:
    # The previous occurrence was moved to 14:00: the series continues at 14:00.
    due = nxt(
        "FREQ=DAILY",
        anchor="completion",
        start=utc(2025, 1, 1, 9),
        prev=utc(2025, 1, 5, 14),
        done=utc(2025, 1, 5, 15),
        occ=5,
    )
    assert due == utc(2025, 1, 6, 14)


def test_anchor_completion_keeps_local_time_across_dst_and_gap() -> None:
    # Daily 02:30 New York. The 2025-03-09 occurrence fell in the gap (07:30Z = 03:30 EDT);
    # completed that day, the next is 02:30 EDT on Mar 10 = 06:30Z, not 03:30.
    due = nxt(
        "FREQ=DAILY",
        anchor="completion",
        start=at(NY, 2025, 3, 1, 2, 30),
        prev=utc(2025, 3, 9, 7, 30),
        done=utc(2025, 3, 9, 12),
        tz=NY,
        occ=9,
    )
    assert due == utc(2025, 3, 10, 6, 30)
    # 09:00 EST before the switch, completed Sat Mar 8 -> Sun Mar 9 09:00 EDT = 13:00Z.
    due = nxt(
        "FREQ=DAILY",
        anchor="completion",
        start=at(NY, 2025, 3, 1, 9),
        prev=at(NY, 2025, 3, 8, 9),
        done=at(NY, 2025, 3, 8, 10),
        tz=NY,
        occ=8,
    )
    assert due == utc(2025, 3, 9, 13)


# --- COUNT and UNTIL -------------------------------------------------------------------------


def test_count_ends_the_series() -> None:
    rule = "FREQ=DAILY;COUNT=3"
    start = utc(2025, 1, 1, 9)
    assert nxt(rule, start=start, occ=1) == utc(2025, 1, 2, 9)
    assert nxt(rule, start=start, prev=utc(2025, 1, 2, 9), occ=2) == utc(2025, 1, 3, 9)
    assert nxt(rule, start=start, prev=utc(2025, 1, 3, 9), occ=3) is None
    assert nxt(rule, start=start, prev=utc(2025, 1, 9, 9), occ=7) is None
    assert nxt("FREQ=DAILY;COUNT=1", start=start) is None
    # COUNT counts occurrences (tasks), also with anchor completion and when instances are skipped.
    assert nxt(rule, anchor="completion", start=start, prev=utc(2025, 1, 3, 9), occ=3) is None
    assert nxt(rule, start=start, done=utc(2025, 1, 20, 12), occ=2) == utc(2025, 1, 21, 9)


def test_until_date_is_inclusive_in_local_time() -> None:
    rule = "FREQ=DAILY;UNTIL=20250110"
    start = at(NY, 2025, 1, 1, 21)  # 21:00 EST = 02:00Z next day
    assert nxt(rule, start=start, prev=at(NY, 2025, 1, 9, 21), tz=NY, occ=9) == utc(2025, 1, 11, 2)
    assert nxt(rule, start=start, prev=at(NY, 2025, 1, 10, 21), tz=NY, occ=10) is None


def test_until_utc_date_time() -> None:
    start = at(NY, 2025, 1, 1, 9)
    prev = at(NY, 2025, 1, 9, 9)
    # Jan 10 09:00 EST = 14:00Z: an UNTIL exactly then includes it, one second earlier ends the series.
    assert nxt("FREQ=DAILY;UNTIL=20250110T140000Z", start=start, prev=prev, tz=NY, occ=9) == utc(2025, 1, 10, 14)
    assert nxt("FREQ=DAILY;UNTIL=20250110T135959Z", start=start, prev=prev, tz=NY, occ=9) is None


def test_until_floating_date_time_is_local() -> None:
    start = at(NY, 2025, 1, 1, 9)
    prev = at(NY, 2025, 1, 9, 9)
    assert nxt("FREQ=DAILY;UNTIL=20250110T090000", start=start, prev=prev, tz=NY, occ=9) == utc(2025, 1, 10, 14)
    assert nxt("FREQ=DAILY;UNTIL=20250110T085959", start=start, prev=prev, tz=NY, occ=9) is None


def test_until_ends_a_series_completed_late() -> None:
    # Weekly until Jan 31; completed on Feb 2 -> nothing left.
    rule = "FREQ=WEEKLY;UNTIL=20250131"
    assert nxt(rule, start=utc(2025, 1, 6, 9), prev=utc(2025, 1, 27, 9), done=utc(2025, 2, 2, 9)) is None
    assert nxt("FREQ=DAILY;UNTIL=20200101", start=utc(2025, 1, 1, 9)) is None


# --- WKST ------------------------------------------------------------------------------------


def test_wkst_changes_a_biweekly_byday_rule() -> None:
    # RFC 5545 §3.8.5.3 example, DTSTART 1997-08-05 09:00 America/New_York (EDT, 13:00Z):
    # WKST=MO -> Aug 5, 10, 19, 24; WKST=SU -> Aug 5, 17, 19, 31.
    start = at(NY, 1997, 8, 5, 9)
    base = "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,SU"
    assert chain(base + ";WKST=MO", start, 3, tz=NY) == [
        utc(1997, 8, 10, 13),
        utc(1997, 8, 19, 13),
        utc(1997, 8, 24, 13),
    ]
    assert chain(base + ";WKST=SU", start, 3, tz=NY) == [
        utc(1997, 8, 17, 13),
        utc(1997, 8, 19, 13),
        utc(1997, 8, 31, 13),
    ]
    # The default week start is Monday.
    assert chain(base, start, 3, tz=NY) == chain(base + ";WKST=MO", start, 3, tz=NY)


# --- bad arguments ---------------------------------------------------------------------------


def test_bad_arguments() -> None:
    start = utc(2025, 1, 1, 9)
    with pytest.raises(RecurrenceError, match="anchor"):
        nxt("FREQ=DAILY", start=start, anchor="start")
    with pytest.raises(RecurrenceError, match="time zone"):
        nxt("FREQ=DAILY", start=start, tz="Mars/Olympus_Mons")
    with pytest.raises(RecurrenceError, match="FREQ=HOURLY"):
        nxt("FREQ=HOURLY", start=start)
    with pytest.raises(ValueError, match="timezone-aware"):
        nxt("FREQ=DAILY", start=datetime(2025, 1, 1, 9))
    # A rule that was not normalised is accepted too.
    assert nxt("freq=daily;interval=2", start=start) == utc(2025, 1, 3, 9)
