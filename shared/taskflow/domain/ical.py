"""Tasks as iCalendar (RFC 5545) VTODOs and back, with the ``icalendar`` library.

Pure conversion, no I/O. ``to_calendar`` writes one VTODO per task (and the VTIMEZONEs their due
times need); ``parse_calendar`` reads every VTODO of a file into the fields a task is created or
updated with, or into a reason why it cannot be imported. Unsupported properties are ignored;
an unsupported rule or a broken component makes only that item skipped.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import isodate
from icalendar import Alarm, Calendar, Component, Todo
from icalendar.parser import Parameters

from taskflow.domain import model
from taskflow.domain import recurrence as rrules

PRODID = "-//TaskFlow//TaskFlow tasks//EN"
#: A TaskFlow-only property: whether a series repeats from the due date or from the completion.
ANCHOR_PROPERTY = "X-TASKFLOW-RECURRENCE-ANCHOR"
#: A TaskFlow-only property: the task's place in its series (1 for the first occurrence).
OCCURRENCE_PROPERTY = "X-TASKFLOW-OCCURRENCE"
#: RFC 5545 PRIORITY: 1 is the highest, 9 the lowest, 0 or absent undefined.
_TO_ICAL_PRIORITY = {
    model.Priority.URGENT: 1,
    model.Priority.HIGH: 3,
    model.Priority.MEDIUM: 5,
    model.Priority.LOW: 9,
}


class CalendarError(ValueError):
    """The body is not an iCalendar object at all (nothing can be imported)."""


@dataclass(frozen=True)
class ImportedTodo:
    """One VTODO as task fields (``model.MUTABLE_FIELDS``) and its completion time (None = open).

    ``series_of`` is the UID of the series' first occurrence (``RELATED-TO;RELTYPE=SIBLING`` on a
    recurring item, as the export writes it on later occurrences) and ``occurrence`` its place in
    that series (``X-TASKFLOW-OCCURRENCE``, else numbered by due time among the file's siblings)."""

    uid: str
    fields: dict[str, Any]
    completed_at: datetime | None = None
    series_of: str | None = None
    occurrence: int | None = None


@dataclass(frozen=True)
class SkippedTodo:
    uid: str | None
    reason: str


@dataclass
class _Raw:
    """A property value written exactly as given (the stored RRULE)."""

    text: str
    params: Parameters = field(default_factory=Parameters)

    def to_ical(self) -> bytes:
        return self.text.encode()


def priority_to_ical(priority: model.Priority) -> int | None:
    return _TO_ICAL_PRIORITY.get(priority)


def priority_from_ical(value: int) -> model.Priority:
    """1 urgent, 2-4 high, 5 medium, 6-9 low, 0 (undefined) none."""
    if value <= 0:
        return model.Priority.NONE
    if value == 1:
        return model.Priority.URGENT
    if value <= 4:
        return model.Priority.HIGH
    if value == 5:
        return model.Priority.MEDIUM
    return model.Priority.LOW


# --- export --------------------------------------------------------------------------------


def to_calendar(tasks: Iterable[model.Task], now: datetime) -> bytes:
    """A VCALENDAR with one VTODO per task, plus the VTIMEZONE of every zone a due time uses."""
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    for task in tasks:
        cal.add_component(to_todo(task, now))
    cal.add_missing_timezones()
    return bytes(cal.to_ical())


def to_todo(task: model.Task, now: datetime) -> Todo:
    todo = Todo()
    todo.add("uid", task.id)
    todo.add("dtstamp", now.astimezone(UTC))
    todo.add("summary", task.title)
    if task.description:
        todo.add("description", task.description)
    if task.due_at is not None:
        zone = UTC if task.timezone == "UTC" else ZoneInfo(task.timezone)
        todo.add("due", task.due_at.astimezone(zone))
    todo.add("status", "COMPLETED" if task.status is model.Status.COMPLETED else "NEEDS-ACTION")
    if task.completed_at is not None:
        todo.add("completed", task.completed_at.astimezone(UTC))
    ical_priority = priority_to_ical(task.priority)
    if ical_priority is not None:
        todo.add("priority", ical_priority)
    if task.tags:
        todo.add("categories", list(task.tags))
    if task.recurrence is not None:
        todo.add("rrule", _Raw(task.recurrence.rule), encode=False)
        todo.add(ANCHOR_PROPERTY, task.recurrence.anchor.value)
    if task.series_id is not None and task.series_id != task.id:
        todo.add("related-to", task.series_id, parameters={"RELTYPE": "SIBLING"})
    if task.series_id is not None:
        todo.add(OCCURRENCE_PROPERTY, str(task.occurrence))
    todo.add("created", task.created_at.astimezone(UTC))
    todo.add("last-modified", task.updated_at.astimezone(UTC))
    todo.add("sequence", task.version)
    for reminder in task.reminders:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", task.title)
        if reminder.offset is not None:
            alarm.add("trigger", model.parse_offset(reminder.offset), parameters={"RELATED": "END"})
        else:
            assert reminder.at is not None
            alarm.add("trigger", reminder.at.astimezone(UTC), parameters={"VALUE": "DATE-TIME"})
        todo.add_component(alarm)
    return todo


# --- import --------------------------------------------------------------------------------


def parse_calendar(data: bytes) -> list[ImportedTodo | SkippedTodo]:
    """Every VTODO of ``data`` (one or more VCALENDARs), converted or skipped with a reason."""
    try:
        calendars = Calendar.from_ical(data, multiple=True)
    except _PARSE_ERRORS as exc:
        return _parse_one_by_one(data, exc)
    if not calendars or not all(c.name == "VCALENDAR" for c in calendars):
        raise CalendarError("the body must be one or more VCALENDAR objects")
    return number_series(_convert(calendars))


_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError)
_BLOCK = re.compile(r"^BEGIN:(VTODO|VTIMEZONE)\r?$.*?^END:\1\r?$", re.MULTILINE | re.DOTALL | re.IGNORECASE)
_UID = re.compile(r"^UID[;:](?:[^:\r\n]*:)?(.*?)\r?$", re.MULTILINE | re.IGNORECASE)


def _parse_one_by_one(data: bytes, error: Exception) -> list[ImportedTodo | SkippedTodo]:
    """A component the library refuses breaks the whole file: parse each VTODO on its own then
    (with the file's VTIMEZONEs), so only the broken ones are skipped."""
    text = data.decode("utf-8", errors="replace").replace("\r\n ", "").replace("\r\n\t", "").replace("\n ", "")
    if not re.match(r"\s*BEGIN:VCALENDAR", text, re.IGNORECASE):
        raise CalendarError(f"not an iCalendar object: {error}")
    blocks = [m.group(0) for m in _BLOCK.finditer(text)]
    zones = "\r\n".join(b for b in blocks if b.upper().startswith("BEGIN:VTIMEZONE"))
    todos = [b for b in blocks if b.upper().startswith("BEGIN:VTODO")]
    if not todos:
        raise CalendarError(f"not an iCalendar object: {error}")
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:" + PRODID + "\r\n"
    zone_match = re.search(r"^X-WR-TIMEZONE:(.*?)\r?$", text, re.MULTILINE | re.IGNORECASE)
    if zone_match:
        head += "X-WR-TIMEZONE:" + zone_match.group(1) + "\r\n"
    out: list[ImportedTodo | SkippedTodo] = []
    for todo in todos:
        one = head + (zones + "\r\n" if zones else "") + todo + "\r\nEND:VCALENDAR\r\n"
        try:
            out += _convert([Calendar.from_ical(one)])
        except _PARSE_ERRORS as exc:
            uid = _UID.search(todo)
            out.append(SkippedTodo(uid.group(1).strip() if uid else None, f"broken component: {exc}"))
    return number_series(out)


def number_series(items: list[ImportedTodo | SkippedTodo]) -> list[ImportedTodo | SkippedTodo]:
    """Later occurrences without ``X-TASKFLOW-OCCURRENCE`` get 2, 3, ... by due time (their series'
    first occurrence is 1), and every item other items name as their series comes first, so an
    import creates a series' first occurrence before the rest."""
    heads = {i.series_of for i in items if isinstance(i, ImportedTodo) and i.series_of}
    groups: dict[str, list[ImportedTodo]] = {}
    for item in items:
        if isinstance(item, ImportedTodo) and item.series_of and item.occurrence is None:
            groups.setdefault(item.series_of, []).append(item)
    numbered: dict[int, ImportedTodo] = {}
    for members in groups.values():
        members.sort(key=lambda i: (i.fields.get("due_at") or datetime.max.replace(tzinfo=UTC), i.uid))
        for n, member in enumerate(members, start=2):
            numbered[id(member)] = dataclasses.replace(member, occurrence=n)
    out = [numbered.get(id(i), i) for i in items]
    return sorted(out, key=lambda i: 0 if isinstance(i, ImportedTodo) and i.uid in heads else 1)


def _convert(calendars: list[Component]) -> list[ImportedTodo | SkippedTodo]:
    out: list[ImportedTodo | SkippedTodo] = []
    for cal in calendars:
        default_zone = _calendar_zone(cal)
        for todo in cal.walk("VTODO"):
            uid = _text(todo, "uid")
            try:
                out.append(_todo(todo, uid, default_zone))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                out.append(SkippedTodo(uid, str(exc) or type(exc).__name__))
    return out


def _calendar_zone(cal: Component) -> str:
    """The calendar's own zone (X-WR-TIMEZONE) for floating times and dates, else UTC."""
    name = _text(cal, "x-wr-timezone")
    if name:
        try:
            return model.validate_timezone(name)
        except ValueError:
            pass
    return "UTC"


def _text(component: Component, name: str) -> str | None:
    value = component.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        raise ValueError(f"{name.upper()} appears more than once")
    return str(value)


def _todo(todo: Component, uid: str | None, default_zone: str) -> ImportedTodo:
    if getattr(todo, "errors", None):
        prop, message = todo.errors[0]
        raise ValueError(f"broken property {prop}: {message}")
    if not uid:
        raise ValueError("the VTODO has no UID")
    status = (_text(todo, "status") or "NEEDS-ACTION").upper()
    if status == "CANCELLED":
        raise ValueError("STATUS:CANCELLED tasks are not imported")
    summary = _text(todo, "summary")
    if summary is None or not summary.strip():
        raise ValueError("the VTODO has no SUMMARY")
    fields: dict[str, Any] = {
        "title": model.normalize_title(summary),
        "description": model.normalize_description(_text(todo, "description") or ""),
        "priority": priority_from_ical(int(todo.get("priority", 0))),
        "tags": model.normalize_tags(_categories(todo)),
    }
    due, zone = _moment(todo, "due", default_zone)
    start, _ = _moment(todo, "dtstart", default_zone)
    rules = todo.get("rrule")
    if isinstance(rules, list):
        raise ValueError("more than one RRULE")
    recurrence = None
    if rules is not None:
        if due is None:
            due, zone = _moment(todo, "dtstart", default_zone)
        if due is None:
            raise ValueError("RRULE needs DUE or DTSTART")
        rule = rules.to_ical().decode()
        try:
            recurrence = model.Recurrence(rule, model.Anchor(_text(todo, ANCHOR_PROPERTY) or "due"))
        except rrules.RecurrenceError as exc:
            raise ValueError(f"RRULE {rule}: {exc}") from exc
    fields.update(
        due_at=due,
        timezone=zone if due is not None else "UTC",
        recurrence=recurrence,
        reminders=_reminders(todo, due, start),
    )
    completed_at = None
    if status == "COMPLETED" or todo.get("completed") is not None:
        done, _ = _moment(todo, "completed", "UTC")
        completed_at = done or _moment(todo, "last-modified", "UTC")[0] or datetime.now(UTC)
    series_of, occurrence = _series(todo, uid) if recurrence is not None else (None, None)
    return ImportedTodo(uid, fields, completed_at, series_of, occurrence)


def _series(todo: Component, uid: str) -> tuple[str | None, int | None]:
    """The recurring item's series: the UID of ``RELATED-TO;RELTYPE=SIBLING`` (a parent/child
    ``RELATED-TO``, e.g. subtasks, is ignored) and ``X-TASKFLOW-OCCURRENCE``."""
    related = todo.get("related-to")
    values = related if isinstance(related, list) else [related] if related is not None else []
    siblings = [str(v) for v in values if str(getattr(v, "params", {}).get("RELTYPE", "PARENT")).upper() == "SIBLING"]
    series_of = siblings[0].strip() if siblings and siblings[0].strip() != uid else None
    raw = _text(todo, OCCURRENCE_PROPERTY)
    occurrence = None
    if raw is not None:
        if not raw.strip().isdigit() or not 1 <= int(raw) <= 1_000_000:
            raise ValueError(f"{OCCURRENCE_PROPERTY} must be a positive integer")
        occurrence = int(raw)
    if series_of is None and occurrence not in (None, 1):
        occurrence = None  # a later occurrence whose series is not named: it starts a series of its own
    return series_of, occurrence


def _categories(todo: Component) -> list[str]:
    value = todo.get("categories")
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(cat) for v in values for cat in v.cats]


def _moment(component: Component, name: str, default_zone: str) -> tuple[datetime | None, str]:
    """A DATE-TIME or DATE property as an aware UTC time and the IANA zone it was written in."""
    prop = component.get(name)
    if prop is None:
        return None, default_zone
    if isinstance(prop, list):
        raise ValueError(f"{name.upper()} appears more than once")
    value = prop.dt
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating: the calendar's zone
            return value.replace(tzinfo=ZoneInfo(default_zone)).astimezone(UTC), default_zone
        return value.astimezone(UTC), _zone_name(value.tzinfo, prop.params.get("TZID"))
    if isinstance(value, date):  # a whole day: its start in the calendar's zone
        return datetime.combine(value, time(0), ZoneInfo(default_zone)).astimezone(UTC), default_zone
    raise ValueError(f"{name.upper()} is not a date or date-time")


def _zone_name(tz: tzinfo, tzid: str | None) -> str:
    """The IANA name of a zone; a zone known only by its VTIMEZONE (Outlook names) becomes UTC."""
    for candidate in (getattr(tz, "key", None), getattr(tz, "zone", None), tzid):
        if isinstance(candidate, str):
            try:
                return model.validate_timezone(candidate)
            except ValueError:
                continue
    return "UTC"


def _reminders(todo: Component, due: datetime | None, start: datetime | None) -> list[model.Reminder]:
    out: list[model.Reminder] = []
    for alarm in todo.walk("VALARM"):
        if str(alarm.get("action", "DISPLAY")).upper() == "NONE":
            continue  # Apple's placeholder alarm
        trigger = alarm.get("trigger")
        if trigger is None:
            continue
        value = trigger.dt
        if isinstance(value, datetime):
            out.append(model.Reminder(at=value if value.tzinfo else value.replace(tzinfo=UTC)))
            continue
        if not isinstance(value, timedelta):
            continue
        related_end = str(trigger.params.get("RELATED", "START")).upper() == "END"
        anchor = due if related_end or start is None else start
        if anchor is None:
            continue  # relative to nothing: no fire time
        if due is None:
            out.append(model.Reminder(at=anchor + value))
        else:
            out.append(model.Reminder(offset=isodate.duration_isoformat(anchor + value - due)))
    return out
