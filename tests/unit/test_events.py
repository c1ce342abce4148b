"""Event envelopes: building, parsing in every content mode, poison detection, published schemas."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskflow import events
from taskflow.domain import model

ROOT = Path(__file__).resolve().parents[2]


def _envelope() -> events.Envelope:
    task = model.Task.create("alice", "alice", title="t", now=datetime(2030, 1, 1, tzinfo=UTC))
    return events.task_event(task.events[0])


def test_envelope_fixes_id_subject_partition_key_and_type() -> None:
    env = _envelope()
    body = json.loads(env.to_json())
    assert body["specversion"] == "1.0" and body["type"] == events.TASK_CREATED
    assert body["id"] == env.id and body["subject"] == env.partition_key == body["data"]["task"]["id"]
    assert env.to_json() == env.to_json()  # re-serialising keeps the id


def test_parse_structured_binary_and_kafkasource_json() -> None:
    env = _envelope()
    structured = events.parse({"Content-Type": "application/cloudevents+json"}, env.to_json().encode())
    as_json = events.parse({"content-type": "application/json"}, env.to_json().encode())
    headers = {f"ce-{k}": str(v) for k, v in env.structured().items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = "application/json"
    binary = events.parse(headers, json.dumps(env.data).encode())
    for got in (structured, as_json, binary):
        assert got.id == env.id and got.type == events.TASK_CREATED
        assert isinstance(got.data, events.TaskEventData) and got.data.task.title == "t"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"specversion":"1.0"}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"com.taskflow.task.created.v1","data":"x"}',
        b'{"specversion":"1.0","id":"1","source":"/s","type":"com.other.v1","data":{}}',
    ],
)
def test_unprocessable_deliveries_are_poison(body: bytes) -> None:
    with pytest.raises(events.PoisonEvent):
        events.parse({"content-type": "application/cloudevents+json"}, body)


def test_published_json_schemas_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export_event_schemas.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_a_kafkasource_wrapped_record_is_unwrapped() -> None:
    """KafkaSource turns a record without CloudEvent headers into its own event; ours is the data."""
    env = _envelope()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "partition:0/offset:42",
        "ce-type": "dev.knative.kafka.event",
        "ce-source": "/apis/v1/namespaces/taskflow/kafkasources/audit#task-events",
        "ce-subject": "partition:0#42",
        "content-type": "application/json",
    }
    got = events.parse(headers, env.to_json().encode())
    assert got.id == env.id and got.type == events.TASK_CREATED
    with pytest.raises(events.PoisonEvent):
        events.parse({**headers}, b'{"not": "an event"}')
