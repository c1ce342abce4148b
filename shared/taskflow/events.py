"""The CloudEvent catalog: types, data models, and building/parsing envelopes (CloudEvents 1.0)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from taskflow import telemetry
from taskflow.domain import model

TASK_TOPIC = "task-events"
REMINDER_TOPIC = "reminders"
EXPORT_TOPIC = "exports"
PREFIX = "com.taskflow."

TASK_CREATED = "com.taskflow.task.created.v1"
TASK_UPDATED = "com.taskflow.task.updated.v1"
TASK_COMPLETED = "com.taskflow.task.completed.v1"
TASK_REOPENED = "com.taskflow.task.reopened.v1"
TASK_DELETED = "com.taskflow.task.deleted.v1"
REMINDER_DUE = "com.taskflow.reminder.due.v1"
EXPORT_REQUESTED = "com.taskflow.export.requested.v1"
TASK_TYPES = (TASK_CREATED, TASK_UPDATED, TASK_COMPLETED, TASK_REOPENED, TASK_DELETED)


#: The largest delivery a consumer accepts: the broker's message limit (``maxMessageBytes``).
MAX_EVENT_BYTES = 1024 * 1024


def _rfc3339(value: str) -> str:
    """A time with ``Z`` or an offset, as ``model.format_time`` writes it; anything else is poison."""
    try:
        parsed = model.parse_time(value)
    except ValueError as exc:
        raise ValueError("not an RFC 3339 date-time") from exc
    if parsed is None or parsed.tzinfo is None:
        raise ValueError("an RFC 3339 date-time needs Z or an offset")
    return value


def _rule(value: str) -> str:
    from taskflow.domain.recurrence import RecurrenceError, validate_rule

    try:
        validate_rule(value)
    except RecurrenceError as exc:
        raise ValueError(str(exc)) from exc
    return value


Rfc3339 = Annotated[str, Field(json_schema_extra={"format": "date-time"}), AfterValidator(_rfc3339)]


class RecurrenceData(BaseModel):
    rule: Annotated[str, AfterValidator(_rule)]
    anchor: Literal["due", "completion"]


class ReminderData(BaseModel):
    offset: str | None = None
    at: str | None = None


class TaskData(BaseModel):
    """A task as every event and every API answer carries it."""

    id: str
    title: str
    description: str
    status: Literal["open", "completed"]
    priority: Literal["none", "low", "medium", "high", "urgent"]
    tags: list[str]
    due_at: Rfc3339 | None
    timezone: Annotated[str, AfterValidator(model.validate_timezone)]
    recurrence: RecurrenceData | None
    reminders: list[ReminderData]
    series_id: str | None
    occurrence: int
    completed_at: Rfc3339 | None
    created_at: Rfc3339
    updated_at: Rfc3339
    version: int


class TaskEventData(BaseModel):
    """``data`` of every task event: the task after the change, who did it, what changed."""

    model_config = ConfigDict(extra="ignore")
    task: TaskData
    actor: str
    changes: dict[str, list[Any]] = {}


class ReminderDueData(BaseModel):
    """``data`` of ``reminder.due``: one reminder of one occurrence that is due now."""

    model_config = ConfigDict(extra="ignore")
    reminder_id: str
    task_id: str
    owner_id: str
    title: str
    fire_at: AwareDatetime
    late: bool = False


class ExportRequestedData(BaseModel):
    """``data`` of ``export.requested``: the exports function writes this user's export."""

    model_config = ConfigDict(extra="ignore")
    export_id: str
    owner_id: str
    format: Literal["ics", "json"]


DATA_MODELS: dict[str, type[BaseModel]] = (
    {t: TaskEventData for t in TASK_TYPES} | {REMINDER_DUE: ReminderDueData} | {EXPORT_REQUESTED: ExportRequestedData}
)


@dataclass(frozen=True)
class Envelope:
    """A CloudEvent ready for the outbox: fixed id, topic and partition key."""

    id: str
    type: str
    source: str
    subject: str
    time: str
    topic: str
    partition_key: str
    data: dict[str, Any]
    #: The writer's trace context (distributed-tracing extension), kept in the outbox row's event:
    #: the event continues the trace of the write that caused it, also when the relay sends it later.
    trace: dict[str, str] = field(default_factory=telemetry.traceparent)

    def to_json(self) -> str:
        """The structured CloudEvent as compact JSON, encoded once: the outbox row and the publish
        after commit send the same text."""
        return self._json

    @cached_property
    def _json(self) -> str:
        return json.dumps(self.structured(), separators=(",", ":"))

    def structured(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time,
            "datacontenttype": "application/json",
            "partitionkey": self.partition_key,
            **self.trace,
            "data": self.data,
        }


def task_event(event: model.TaskEvent, source: str = "/taskflow/tasks-api") -> Envelope:
    task = event.task
    data = TaskEventData(task=TaskData(**task.to_api()), actor=event.actor, changes=event.changes)
    return Envelope(
        id=str(uuid.uuid4()),
        type=f"{PREFIX}task.{event.kind}.v1",
        source=source,
        subject=task.id,
        time=model.format_time(task.updated_at) or "",
        topic=TASK_TOPIC,
        partition_key=task.id,
        data=data.model_dump(mode="json"),
    )


def reminder_due(
    reminder: model.DueReminder, late: bool, now: datetime, source: str = "/taskflow/reminder-dispatch"
) -> Envelope:
    data = ReminderDueData(
        reminder_id=reminder.id,
        task_id=reminder.task_id,
        owner_id=reminder.owner_id,
        title=reminder.title,
        fire_at=reminder.fire_at,
        late=late,
    )
    return Envelope(
        id=str(uuid.uuid4()),
        type=REMINDER_DUE,
        source=source,
        subject=data.task_id,
        time=model.format_time(now) or "",
        topic=REMINDER_TOPIC,
        partition_key=data.task_id,
        data=data.model_dump(mode="json"),
    )


def export_requested(
    export_id: str, owner_id: str, fmt: str, now: datetime, source: str = "/taskflow/tasks-api"
) -> Envelope:
    data = ExportRequestedData(export_id=export_id, owner_id=owner_id, format=fmt)  # type: ignore[arg-type]
    return Envelope(
        id=str(uuid.uuid4()),
        type=EXPORT_REQUESTED,
        source=source,
        subject=export_id,
        time=model.format_time(now) or "",
        topic=EXPORT_TOPIC,
        partition_key=export_id,
        data=data.model_dump(mode="json"),
    )


class PoisonEvent(ValueError):
    """An event that can never be processed: Dapr should drop it to the dead-letter topic."""


@dataclass(frozen=True)
class Received:
    id: str
    type: str
    subject: str | None
    data: BaseModel


def parse(headers: Mapping[str, str], body: bytes) -> Received:
    """Parse a delivery: structured or binary CloudEvent, as Dapr or KafkaSource sends it."""
    from cloudevents.http import CloudEvent, from_http  # only the consumers parse: keep it off other imports

    headers = {k.lower(): v for k, v in headers.items()}
    content_type = headers.get("content-type", "")
    if "ce-id" not in headers and "cloudevents" not in content_type:
        # KafkaSource may forward a structured event as plain application/json.
        headers["content-type"] = "application/cloudevents+json"
    try:
        event: CloudEvent = from_http(headers, body)
    except Exception as exc:  # the SDK raises several unrelated types for bad input
        raise PoisonEvent(f"not a CloudEvent: {exc}") from exc
    attrs = event.get_attributes()
    for name in ("id", "type", "source"):
        if not isinstance(attrs.get(name), str) or not attrs[name]:
            raise PoisonEvent(f"attribute {name!r} must be a non-empty string")
    etype = str(attrs.get("type", ""))
    raw = event.get_data()
    if isinstance(raw, bytes | str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            if etype in DATA_MODELS:
                raise PoisonEvent(f"data of {etype} is not JSON") from exc
    if etype not in DATA_MODELS and _is_envelope(raw):
        # KafkaSource wraps a record without CloudEvent headers in an event of its own
        # (type dev.knative.kafka.event) whose data is the record's value: our structured event.
        return parse({"content-type": "application/cloudevents+json"}, json.dumps(raw).encode())
    model_cls = DATA_MODELS.get(etype)
    if model_cls is None:
        raise PoisonEvent(f"unknown event type {etype!r}")
    try:
        data = model_cls.model_validate(raw)
    except ValidationError as exc:
        raise PoisonEvent(f"data of {etype} does not match its schema: {exc.errors()[:3]}") from exc
    return Received(id=str(attrs["id"]), type=etype, subject=attrs.get("subject"), data=data)


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get("specversion") == "1.0" and "type" in value and "id" in value


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every event's ``data``, keyed by CloudEvent type (exported to docs/events/)."""
    return {etype: cls.model_json_schema() for etype, cls in DATA_MODELS.items()}
