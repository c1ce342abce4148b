"""Pydantic models of the REST API. They validate requests and generate the OpenAPI document."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from werkzeug.datastructures import MultiDict

from taskflow.api.http import HttpError, invalid, over_limit, unprocessable
from taskflow.domain import limits, model
from taskflow.domain import recurrence as rrules
from taskflow.domain.query import TaskQuery, check_sort, query_words
from taskflow.events import TaskData
from taskflow.service_layer.notifications import Notification

Title = Annotated[str, Field(min_length=1, max_length=400), AfterValidator(model.normalize_title)]
Description = Annotated[str, Field(max_length=model.DESCRIPTION_MAX), AfterValidator(model.normalize_description)]
Tags = Annotated[
    list[Annotated[str, Field(max_length=200)]], Field(max_length=200), AfterValidator(model.normalize_tags)
]
TimeZoneName = Annotated[str, Field(max_length=64), AfterValidator(model.validate_timezone)]
PriorityName = Literal["none", "low", "medium", "high", "urgent"]


def _aware(value: datetime) -> datetime:
    return model.as_utc(value)


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339_text(value: Any) -> Any:
    """Times are RFC 3339 date-time strings, as documented: a number (or "0.5") is not a Unix time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time such as 2030-01-31T09:00:00Z")
    return value


AwareDateTime = Annotated[datetime, BeforeValidator(_rfc3339_text), AfterValidator(_aware)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RecurrenceIn(Strict):
    """An RFC 5545 RRULE body (no ``RRULE:`` prefix) and what the next occurrence counts from."""

    rule: Annotated[str, Field(min_length=1, max_length=500, examples=["FREQ=WEEKLY;BYDAY=MO,WE"])]
    anchor: Literal["due", "completion"] = "due"

    @field_validator("rule")
    @classmethod
    def _rule(cls, value: str) -> str:
        try:
            return rrules.validate_rule(value)
        except rrules.RecurrenceError as exc:
            raise ValueError(str(exc)) from exc

    def to_domain(self) -> model.Recurrence:
        return model.Recurrence(self.rule, model.Anchor(self.anchor))


class ReminderIn(Strict):
    """Relative to ``due_at`` (``offset``, ISO 8601 duration such as ``-PT15M``) or absolute (``at``)."""

    offset: Annotated[str, Field(max_length=40, examples=["-PT15M"])] | None = None
    at: AwareDateTime | None = None

    @model_validator(mode="after")
    def _valid(self) -> ReminderIn:
        self.to_domain()  # the domain's rules (exactly one of offset/at, a usable offset) raise ValueError
        return self

    def to_domain(self) -> model.Reminder:
        return model.Reminder(offset=self.offset, at=self.at)


class TaskCreate(Strict):
    title: Title
    description: Description = ""
    priority: PriorityName = "none"
    tags: Tags = Field(default_factory=list)
    due_at: AwareDateTime | None = None
    timezone: TimeZoneName = "UTC"
    recurrence: RecurrenceIn | None = None
    reminders: Annotated[list[ReminderIn], Field(max_length=model.REMINDERS_MAX)] = Field(default_factory=list)

    def to_fields(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "priority": model.Priority(self.priority),
            "tags": self.tags,
            "due_at": self.due_at,
            "timezone": self.timezone,
            "recurrence": self.recurrence.to_domain() if self.recurrence else None,
            "reminders": [r.to_domain() for r in self.reminders],
        }


def _not_clearable(schema: dict[str, Any]) -> None:
    """title, priority and timezone may be left out but not cleared: no null, no null default."""
    for name in ("title", "priority", "timezone"):
        schema["properties"][name].pop("default", None)


class TaskPatch(Strict):
    """Partial update: absent fields are kept, ``null`` clears a clearable field."""

    model_config = ConfigDict(json_schema_extra=_not_clearable)

    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None
    priority: PriorityName | SkipJsonSchema[None] = None
    tags: Tags | None = None
    due_at: AwareDateTime | None = None
    timezone: TimeZoneName | SkipJsonSchema[None] = None
    recurrence: RecurrenceIn | None = None
    reminders: Annotated[list[ReminderIn], Field(max_length=model.REMINDERS_MAX)] | None = None

    @model_validator(mode="after")
    def _not_null(self) -> TaskPatch:
        for name in ("title", "priority", "timezone"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def to_changes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "priority":
                value = model.Priority(value)
            elif name == "description" and value is None:
                value = ""
            elif name == "tags" and value is None:
                value = []
            elif name == "reminders":
                value = [r.to_domain() for r in value or []]
            elif name == "recurrence" and value is not None:
                value = value.to_domain()
            out[name] = value
        return out


class TaskOut(TaskData):
    """A task as every endpoint and every event carries it."""


class TaskList(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class TagCount(BaseModel):
    name: str
    count: int


class TagList(BaseModel):
    items: list[TagCount]


class HistoryEntry(BaseModel):
    event_id: str
    type: str
    time: str
    actor: str
    changes: dict[str, list[Any]]


class History(BaseModel):
    items: list[HistoryEntry]


class NotificationList(BaseModel):
    items: list[Notification]


class UserSettings(Strict):
    webhook_url: Annotated[str, Field(max_length=2000)] | None = None


class ProblemLimit(BaseModel):
    """The limit a request hit (docs/limits.md): its name, the value in force and its unit."""

    name: str
    max: int
    unit: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    limit: ProblemLimit | None = None


def _check_limit(name: str, value: str) -> None:
    """The search length and the page size are limits of the service: a 422 that names them."""
    if name == "q" and len(value) > limits.SEARCH.max:
        message = f"q must be at most {limits.SEARCH.max} characters"
        raise over_limit(limits.SEARCH, limits.SEARCH.max, message, field="q")
    if name == "limit" and value.isdigit() and int(value) > limits.PAGE.max:
        message = f"limit must be at most {limits.PAGE.max}"
        raise over_limit(limits.PAGE, limits.PAGE.max, message, field="limit")


class ListQuery(Strict):
    """Query parameters of ``GET /v1/tasks``."""

    q: Annotated[str, Field(max_length=limits.SEARCH.max)] | None = None
    status: Literal["open", "completed", "all"] = "open"
    priority: list[PriorityName] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = None
    tag_mode: Literal["all", "any"] = "all"
    due_before: AwareDateTime | None = None
    due_after: AwareDateTime | None = None
    overdue: bool | None = None
    has_due: bool | None = None
    recurring: bool | None = None
    sort: list[str] | None = None
    limit: Annotated[int, Field(ge=1, le=limits.PAGE.max)] = 50
    cursor: Annotated[str, Field(max_length=2000)] | None = None

    @field_validator("sort")
    @classmethod
    def _sort(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_sort(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [t.strip().lower() for t in value]

    @model_validator(mode="after")
    def _relevance_needs_q(self) -> ListQuery:
        if self.sort and any(s.lstrip("-") == "relevance" for s in self.sort) and not self.search_words:
            raise ValueError("sort=relevance needs a search query q")
        return self

    @property
    def search_words(self) -> list[str]:
        return query_words(self.q or "")

    @classmethod
    def parse(cls, args: MultiDict[str, str]) -> TaskQuery:
        """The query string of ``GET /v1/tasks`` (comma lists for priority, tags and sort), checked;
        a 422 naming each bad parameter otherwise."""
        raw: dict[str, Any] = {}
        for name in args:
            values = args.getlist(name)
            if len(values) > 1:
                raise invalid(name, "given more than once", "Invalid query parameter", "duplicate")
            value = values[0]
            _check_limit(name, value)
            if name in ("priority", "tags", "sort"):
                raw[name] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raw[name] = value
        try:
            return cls.model_validate(raw).to_query()
        except ValidationError as exc:
            raise HttpError(
                422,
                "Invalid query parameter",
                "the query has invalid parameters",
                slug="validation",
                errors=unprocessable(exc).errors,
            ) from exc

    def to_query(self) -> TaskQuery:
        fields = self.model_dump()
        for name in ("priority", "tags", "sort"):
            if fields[name] is not None:
                fields[name] = tuple(fields[name])
        return TaskQuery(**fields)
