"""Tasks to iCalendar VTODOs and back (pure: taskflow.domain.ical on the icalendar library)."""

from __future__ import annotations

from datetime import UTC, datetime

from icalendar import Calendar

from taskflow.domain import ical, model

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _task(**fields: object) -> model.Task:
    return model.Task.create("alice", "alice", now=NOW, **fields)  # type: ignore[arg-type]


def test_a_full_task_survives_the_round_trip() -> None:
    task = _task(
        title="Water the plants",
        description="Balcony; then the kitchen, too\nand the hall",
        priority=model.Priority.HIGH,
        tags=["home", "garden"],
        due_at=datetime(2030, 3, 9, 19, 0, tzinfo=UTC),
        timezone="America/New_York",
        recurrence=model.Recurrence(
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=1MO,-1FR;UNTIL=20311231T000000Z", model.Anchor.COMPLETION
        ),
        reminders=[model.Reminder(offset="-PT15M"), model.Reminder(at=datetime(2030, 3, 8, 9, 30, tzinfo=UTC))],
    )
    data = ical.to_calendar([task], NOW)
    [item] = ical.parse_calendar(data)
    assert isinstance(item, ical.ImportedTodo)
    assert item.uid == task.id
    assert item.completed_at is None
    for name in model.MUTABLE_FIELDS:
        assert item.fields[name] == getattr(task, name), name


def test_the_vtodo_follows_rfc_5545() -> None:
    task = _task(
        title="Report",
        priority=model.Priority.URGENT,
        due_at=datetime(2030, 7, 1, 15, 0, tzinfo=UTC),
        timezone="Europe/Berlin",
        recurrence=model.Recurrence("FREQ=WEEKLY;BYDAY=MO,TH"),
        reminders=[model.Reminder(offset="-PT1H")],
    )
    task.complete("alice", NOW)
    text = ical.to_calendar([task], NOW).decode()
    assert "DUE;TZID=Europe/Berlin:20300701T170000" in text
    assert "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin" in text
    assert "RRULE:FREQ=WEEKLY;BYDAY=MO,TH\r\n" in text  # exactly as stored
    assert "STATUS:COMPLETED" in text and "COMPLETED:20261202T120000Z" in text
    assert "PRIORITY:1" in text
    assert "SEQUENCE:2" in text
    assert "TRIGGER;RELATED=END:-PT1H" in text
    cal = Calendar.from_ical(text)
    [todo] = cal.walk("VTODO")
    assert str(todo["uid"]) == task.id
    assert {"DTSTAMP", "CREATED", "LAST-MODIFIED"} <= set(todo.keys())


def test_absolute_alarms_are_date_times_and_a_series_is_related() -> None:
    first = _task(
        title="Stand-up", due_at=datetime(2030, 1, 1, 9, tzinfo=UTC), recurrence=model.Recurrence("FREQ=DAILY")
    )
    first.complete("alice", NOW)
    nxt = first.next_occurrence("alice", NOW)
    assert nxt is not None
    nxt.reminders = [model.Reminder(at=datetime(2030, 1, 2, 8, 30, tzinfo=UTC))]
    text = ical.to_calendar([first, nxt], NOW).decode()
    assert f"RELATED-TO;RELTYPE=SIBLING:{first.id}" in text
    assert "TRIGGER;VALUE=DATE-TIME:20300102T083000Z" in text
    assert "X-TASKFLOW-OCCURRENCE:2" in text
    items = ical.parse_calendar(text.encode())
    assert [i.completed_at is not None for i in items if isinstance(i, ical.ImportedTodo)] == [True, False]
    assert [(i.series_of, i.occurrence) for i in items if isinstance(i, ical.ImportedTodo)] == [
        (None, 1),
        (first.id, 2),
    ]


def test_a_bad_occurrence_number_skips_only_that_item() -> None:
    body = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:a\r\nSUMMARY:A\r\n"
        "DUE:20300101T090000Z\r\nRRULE:FREQ=DAILY\r\nRELATED-TO;RELTYPE=SIBLING:z\r\n"
        "X-TASKFLOW-OCCURRENCE:-3\r\nEND:VTODO\r\nBEGIN:VTODO\r\nUID:b\r\nSUMMARY:B\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n"
    )
    items = ical.parse_calendar(body.encode())
    assert [type(i).__name__ for i in items] == ["SkippedTodo", "ImportedTodo"]
    assert "X-TASKFLOW-OCCURRENCE" in items[0].reason  # type: ignore[union-attr]


def test_priorities_map_both_ways() -> None:
    assert [ical.priority_to_ical(p) for p in model.Priority] == [None, 9, 5, 3, 1]
    assert [ical.priority_from_ical(n).value for n in range(10)] == [
        "none",
        "urgent",
        "high",
        "high",
        "high",
        "medium",
        "low",
        "low",
        "low",
        "low",
    ]
    for priority in model.Priority:
        value = ical.priority_to_ical(priority)
        assert ical.priority_from_ical(value or 0) is priority


def test_not_a_calendar_is_an_error() -> None:
    import pytest

    with pytest.raises(ical.CalendarError):
        ical.parse_calendar(b"hello")
    with pytest.raises(ical.CalendarError):
        ical.parse_calendar(b"BEGIN:VEVENT\r\nEND:VEVENT\r\n")
