"""Preview a recurrence rule: the next due times, computed by the code the recurrence function runs.

Each occurrence is assumed completed at its due time, and ``Task.next_occurrence`` (the domain
method that ``recurrence`` calls on ``task.completed``) gives the one after. Nothing is written.
"""

from __future__ import annotations

from typing import Annotated

from flask import Request, Response
from pydantic import Field

from taskflow.api.http import json_response, read_model
from taskflow.api.schemas import AwareDateTime, RecurrenceIn, TimeZoneName
from taskflow.domain import model


class RecurrencePreviewRequest(RecurrenceIn):
    """A rule as it would be saved on a task with this due time and zone."""

    due_at: AwareDateTime
    timezone: TimeZoneName = "UTC"
    count: Annotated[int, Field(ge=1, le=20)] = 5


class RecurrencePreview(RecurrenceIn):
    """The normalised rule and the due times of the occurrences after ``due_at`` (fewer when the series ends)."""

    occurrences: list[str]


def next_dues(req: RecurrencePreviewRequest) -> list[model.Task]:
    task = model.Task(
        id="preview",
        owner_id="preview",
        title="preview",
        due_at=req.due_at,
        timezone=req.timezone,
        recurrence=req.to_domain(),
        series_start=req.due_at,
    )
    out: list[model.Task] = []
    for _ in range(req.count):
        task.completed_at = task.due_at
        nxt = task.next_occurrence("preview", task.due_at)
        if nxt is None:
            break
        out.append(nxt)
        task = nxt
    return out


def preview(request: Request) -> Response:
    req, _ = read_model(request, RecurrencePreviewRequest)
    tasks = next_dues(req)
    body = RecurrencePreview(
        rule=req.rule,
        anchor=req.anchor,
        occurrences=[text for t in tasks if (text := model.format_time(t.due_at))],
    )
    return json_response(body.model_dump())
