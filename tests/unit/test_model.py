"""The Task aggregate and its value objects (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskflow.domain import model

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_titles_are_trimmed_and_bounded() -> None:
    assert model.normalize_title("  hi  ") == "hi"
    for bad in ("", "   ", "x" * 201, "a\nb", "a\x7fb"):
        with pytest.raises(ValueError):
            model.normalize_title(bad)
    assert model.normalize_title("é" * 200) == "é" * 200


def test_tags_are_lowercased_unique_and_bounded() -> None:
    assert model.normalize_tags(["Work", " work ", "Q4"]) == ["work", "q4"]
    with pytest.raises(ValueError):
        model.normalize_tags([f"t{i}" for i in range(21)])
    with pytest.raises(ValueError):
        model.normalize_tags(["x" * 41])
    with pytest.raises(ValueError):
        model.normalize_tags(["a,b"])


def test_priorities_are_ordered() -> None:
    ranks = [
        p.rank
        for p in (
            model.Priority.NONE,
            model.Priority.LOW,
            model.Priority.MEDIUM,
            model.Priority.HIGH,
            model.Priority.URGENT,
        )
    ]
    assert ranks == sorted(ranks) and len(set(ranks)) == 5


def test_time_zones_must_be_iana_names() -> None:
    assert model.validate_timezone("Europe/Berlin") == "Europe/Berlin"
    for bad in ("Mars/Base", "", "../etc/passwd", "EST5EDT/x"):
        with pytest.raises(ValueError):
            model.validate_timezone(bad)


def test_reminder_offsets_and_absolute_times() -> None:
    rel = model.Reminder(offset="-PT15M")
    assert rel.fire_at(T0) == T0 - timedelta(minutes=15)
    assert rel.fire_at(None) is None
    at = model.Reminder(at=T0)
    assert at.fire_at(None) == T0 and at.shifted(timedelta(days=1)).at == T0 + timedelta(days=1)
    for bad in ("15 minutes", "P1M", "P2Y"):
        with pytest.raises(ValueError):
            model.Reminder(offset=bad)
    with pytest.raises(ValueError):
        model.Reminder()


def test_aggregate_records_events_with_changes() -> None:
    task = model.Task.create("alice", "alice", now=T0, title="a", due_at=T0)
    assert [e.kind for e in task.events] == ["created"]
    task.events.clear()
    diff = task.update("alice", {"title": "b", "priority": model.Priority.HIGH}, now=T0)
    assert diff == {"title": ["a", "b"], "priority": ["none", "high"]}
    assert task.version == 2 and task.events[-1].changes == diff
    assert task.update("alice", {"title": "b"}) == {}  # no change, no event, no new version
    assert task.version == 2
    assert task.complete("alice", now=T0) and not task.complete("alice")
    assert [e.kind for e in task.events] == ["updated", "completed"]
    assert task.reopen("alice") and task.completed_at is None


def test_recurring_task_needs_due_and_gets_a_series() -> None:
    with pytest.raises(model.InvalidTask):
        model.Task.create("a", "a", title="x", recurrence=model.Recurrence("FREQ=DAILY"))
    task = model.Task.create("a", "a", title="x", due_at=T0, recurrence=model.Recurrence("FREQ=DAILY"))
    assert task.series_id == task.id and task.occurrence == 1
    with pytest.raises(model.InvalidTask):
        task.update("a", {"due_at": None})
    assert task.due_at == T0  # a refused update changes nothing
