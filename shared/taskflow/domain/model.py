"""The Task aggregate, its value objects and the domain events it records.

Pure Python: no database, HTTP or Dapr. Validation helpers raise ``ValueError`` with a
user-facing message so the API layer can report them per field.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import isodate

from taskflow.domain import recurrence as rrules

TITLE_MAX = 200
DESCRIPTION_MAX = 10_000
TAGS_MAX = 20
TAG_LEN_MAX = 40
REMINDERS_MAX = 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DESCRIPTION_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Status(enum.StrEnum):
    OPEN = "open"
    COMPLETED = "completed"


class Priority(enum.StrEnum):
    """Ordered none < low < medium < high < urgent; ``rank`` is what the database sorts on."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return _PRIORITIES[rank]


# in declaration order (every list row and every event reads them: no list built per call)
_PRIORITIES: tuple[Priority, ...] = tuple(Priority)
_PRIORITY_RANKS: dict[Priority, int] = {p: i for i, p in enumerate(_PRIORITIES)}


class Anchor(enum.StrEnum):
    DUE = "due"
    COMPLETION = "completion"


class NotFound(Exception):
    """The object does not exist for this user (another user's object is 'not found' too)."""


class PreconditionFailed(Exception):
    """An ``If-Match`` ETag did not match the current version."""


class InvalidTask(ValueError):
    """A field-level invariant failed; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- value validation (used by the API schemas and the aggregate) -----------------------


def normalize_title(value: str) -> str:
    title = value.strip()
    if not title:
        raise ValueError("title must not be empty")
    if len(title) > TITLE_MAX:
        raise ValueError(f"title must be at most {TITLE_MAX} characters")
    if _CONTROL.search(title):
        raise ValueError("title must not contain control characters")
    return title


def normalize_description(value: str) -> str:
    if len(value) > DESCRIPTION_MAX:
        raise ValueError(f"description must be at most {DESCRIPTION_MAX} characters")
    if _DESCRIPTION_CONTROL.search(value):
        raise ValueError("description must not contain control characters other than tab and newlines")
    return value


def normalize_tags(values: list[str]) -> list[str]:
    """Lower-case, strip and de-duplicate (first occurrence wins); at most 20 of 1..40 chars."""
    seen: list[str] = []
    for raw in values:
        tag = raw.strip().lower()
        if not tag:
            raise ValueError("tags must not be empty")
        if len(tag) > TAG_LEN_MAX:
            raise ValueError(f"each tag must be at most {TAG_LEN_MAX} characters")
        if _CONTROL.search(tag) or "," in tag:
            raise ValueError("tags must not contain commas or control characters")
        if tag not in seen:
            seen.append(tag)
    if len(seen) > TAGS_MAX:
        raise ValueError(f"at most {TAGS_MAX} tags")
    return seen


def validate_timezone(name: str) -> str:
    if not name or name not in _zone_names():
        raise ValueError(f"unknown IANA time zone {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("date-times must carry a UTC offset (RFC 3339)")
    return value.astimezone(UTC)


def parse_offset(value: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours, minutes and seconds (months are ambiguous)."""
    try:
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise ValueError(f"offset {value!r} is not an ISO 8601 duration such as -PT15M") from exc
    if not isinstance(parsed, timedelta):
        raise ValueError("offset must not use years or months; use weeks, days, hours or minutes")
    if abs(parsed) > timedelta(days=366):
        raise ValueError("offset must be within one year of the due date")
    return parsed


@dataclass(frozen=True)
class Reminder:
    """Either relative to ``due_at`` (``offset``) or absolute (``at``)."""

    offset: str | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.offset is None) == (self.at is None):
            raise ValueError("a reminder has exactly one of 'offset' or 'at'")
        if self.offset is not None:
            parse_offset(self.offset)
        if self.at is not None:
            object.__setattr__(self, "at", as_utc(self.at))

    def fire_at(self, due_at: datetime | None) -> datetime | None:
        if self.at is not None:
            return self.at
        if due_at is None or self.offset is None:
            return None
        return due_at + parse_offset(self.offset)

    def shifted(self, delta: timedelta) -> Reminder:
        """The same reminder for a later occurrence: absolute times move by the due delta."""
        if self.at is None:
            return self
        return Reminder(at=self.at + delta)

    def to_json(self) -> dict[str, str]:
        if self.offset is not None:
            return {"offset": self.offset}
        assert self.at is not None
        return {"at": format_time(self.at) or ""}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reminder:
        if "at" in data and data["at"] is not None:
            at = data["at"]
            return cls(at=datetime.fromisoformat(at) if isinstance(at, str) else at)
        return cls(offset=data.get("offset"))


@dataclass(frozen=True)
class Recurrence:
    rule: str
    anchor: Anchor = Anchor.DUE

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", rrules.validate_rule(self.rule))
        object.__setattr__(self, "anchor", Anchor(self.anchor))

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "anchor": self.anchor.value}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Recurrence | None:
        if data is None:
            return None
        return cls(rule=data["rule"], anchor=Anchor(data.get("anchor", "due")))


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time as ``format_time`` writes it (``Z`` or an offset)."""
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"  # an aware UTC time's isoformat ends with +00:00


# --- domain events -------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskEvent:
    """Something that happened to a task; the outbox turns it into a CloudEvent."""

    kind: str  # created | updated | completed | reopened | deleted
    task: Task
    actor: str
    changes: dict[str, list[Any]] = field(default_factory=dict)


# --- the aggregate -------------------------------------------------------------------------

MUTABLE_FIELDS = (
    "title",
    "description",
    "priority",
    "tags",
    "due_at",
    "timezone",
    "recurrence",
    "reminders",
)


@dataclass
class Task:
    id: str
    owner_id: str
    title: str
    description: str = ""
    status: Status = Status.OPEN
    priority: Priority = Priority.NONE
    tags: list[str] = field(default_factory=list)
    due_at: datetime | None = None
    timezone: str = "UTC"
    recurrence: Recurrence | None = None
    reminders: list[Reminder] = field(default_factory=list)
    series_id: str | None = None
    occurrence: int = 1
    completed_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    version: int = 1
    events: list[TaskEvent] = field(default_factory=list, repr=False, compare=False)
    # Occurrence 1's due, loaded by the repository: the anchor of a series' rule.
    series_start: datetime | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(
        cls, owner_id: str, actor: str, now: datetime | None = None, task_id: str | None = None, **fields: Any
    ) -> Task:
        now = now or utcnow()
        task = cls(id=task_id or str(uuid.uuid4()), owner_id=owner_id, created_at=now, updated_at=now, **fields)
        task.check_invariants()
        if task.recurrence is not None and task.series_id is None:
            task.series_id = task.id
        task.events.append(TaskEvent("created", task.snapshot(), actor))
        return task

    def check_invariants(self) -> None:
        if self.recurrence is not None and self.due_at is None:
            raise InvalidTask("recurrence", "recurrence requires due_at")
        if len(self.reminders) > REMINDERS_MAX:
            raise InvalidTask("reminders", f"at most {REMINDERS_MAX} reminders")
        if any(r.offset is not None for r in self.reminders) and self.due_at is None:
            raise InvalidTask("reminders", "a reminder with an offset requires due_at")

    def snapshot(self) -> Task:
        return dataclasses.replace(self, tags=list(self.tags), reminders=list(self.reminders), events=[])

    @property
    def etag(self) -> str:
        return f'"{self.id}-v{self.version}"'

    def _touch(self, now: datetime | None) -> None:
        self.version += 1
        self.updated_at = now or utcnow()

    def update(self, actor: str, changes: dict[str, Any], now: datetime | None = None) -> dict[str, list[Any]]:
        """Apply a partial update; returns ``{field: [old, new]}`` in API form (empty when nothing changed)."""
        diff: dict[str, list[Any]] = {}
        before = self.snapshot()
        for name, value in changes.items():
            if name not in MUTABLE_FIELDS:
                raise InvalidTask(name, "unknown field")
            if getattr(self, name) != value:
                setattr(self, name, value)
                diff[name] = [_api_value(name, getattr(before, name)), _api_value(name, value)]
        if not diff:
            return diff
        try:
            self.check_invariants()
        except InvalidTask:
            for name in diff:
                setattr(self, name, getattr(before, name))
            raise
        if self.recurrence is not None and self.series_id is None:
            self.series_id = self.id
        self._touch(now)
        self.events.append(TaskEvent("updated", self.snapshot(), actor, diff))
        return diff

    def complete(self, actor: str, now: datetime | None = None) -> bool:
        """Mark completed; completing a completed task is a no-op (returns False, no event)."""
        if self.status is Status.COMPLETED:
            return False
        now = now or utcnow()
        self.status = Status.COMPLETED
        self.completed_at = now
        self._touch(now)
        self.events.append(TaskEvent("completed", self.snapshot(), actor, {"status": ["open", "completed"]}))
        return True

    def reopen(self, actor: str, now: datetime | None = None) -> bool:
        if self.status is Status.OPEN:
            return False
        self.status = Status.OPEN
        self.completed_at = None
        self._touch(now)
        self.events.append(TaskEvent("reopened", self.snapshot(), actor, {"status": ["completed", "open"]}))
        return True

    def delete(self, actor: str, now: datetime | None = None) -> None:
        self._touch(now)
        self.events.append(TaskEvent("deleted", self.snapshot(), actor))

    def next_occurrence(self, actor: str, now: datetime | None = None) -> Task | None:
        """The series' next task after this completed one (recording its ``created`` event), or None
        when the series has ended."""
        if self.recurrence is None or self.due_at is None or self.completed_at is None:
            return None
        series_start = self.due_at if self.occurrence == 1 else (self.series_start or self.due_at)
        return_due = rrules.next_due(
            self.recurrence.rule,
            self.recurrence.anchor.value,
            series_start=series_start,
            previous_due=self.due_at,
            completed_at=self.completed_at,
            timezone=self.timezone,
            occurrence=self.occurrence,
        )
        if return_due is None:
            return None
        delta = return_due - self.due_at
        now = now or utcnow()
        nxt = Task(
            id=str(uuid.uuid4()),
            owner_id=self.owner_id,
            title=self.title,
            description=self.description,
            priority=self.priority,
            tags=list(self.tags),
            due_at=return_due,
            timezone=self.timezone,
            recurrence=self.recurrence,
            reminders=[r.shifted(delta) for r in self.reminders],
            series_id=self.series_id or self.id,
            occurrence=self.occurrence + 1,
            created_at=now,
            updated_at=now,
            series_start=series_start,
        )
        nxt.events.append(TaskEvent("created", nxt.snapshot(), actor))
        return nxt

    def to_api(self) -> dict[str, Any]:
        """The task as the API and every event carry it (the one serialisation)."""
        return {name: _api_value(name, getattr(self, name)) for name in API_FIELDS}

    def reminder_schedule(
        self, now: datetime, done: Callable[[], set[tuple[int, datetime]]]
    ) -> list[tuple[int, datetime]]:
        """The (slot, fire_at) reminders to arm after any change.

        A reminder whose time is already past when set does not fire, one that already fired
        (``done()``, asked only for an open task) does not fire again, and a completed task has none.
        """
        if self.status is not Status.OPEN:
            return []
        fired = done()
        schedule = []
        for slot, reminder in enumerate(self.reminders):
            fire_at = reminder.fire_at(self.due_at)
            if fire_at is not None and fire_at > now and (slot, fire_at) not in fired:
                schedule.append((slot, fire_at))
        return schedule


#: The task's fields as the API shows them, in order (everything but internal bookkeeping).
API_FIELDS = tuple(f.name for f in dataclasses.fields(Task) if f.name not in ("owner_id", "events", "series_start"))


@dataclass(frozen=True)
class DueReminder:
    """A reminder whose time has come, with what its notification shows."""

    id: str
    task_id: str
    owner_id: str
    fire_at: datetime
    title: str


_PLAIN = (str, int, bool)


def _api_value(name: str, value: Any) -> Any:
    if value is None or type(value) in _PLAIN:  # most fields of most rows
        return value
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Recurrence):
        return value.to_json()
    if name == "reminders":
        return [r.to_json() for r in value]
    if isinstance(value, list):
        return list(value)
    return value
