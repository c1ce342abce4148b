"""The audit archive in embedded mode: the exports function's cron moves audit rows older than the
retention period to the object store (a local folder here) as gzip JSON lines, verified and
recorded in the manifest before they are deleted; /history says archived_before; the JSON export
still holds every entry; a failing store loses and duplicates nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from taskflow.adapters import tables
from taskflow.service_layer import archive
from tests.conftest import auth


def _tasks(app: Any, client: Any, n: int, user: str = "alice") -> list[str]:
    ids = []
    for i in range(n):
        task = client.post("/v1/tasks", json={"title": f"old {i}"}, headers=auth(user)).get_json()
        client.post(f"/v1/tasks/{task['id']}/complete", headers=auth(user))
        ids.append(task["id"])
    app.bus.drain(10)
    return ids


def _count(app: Any, table: Any) -> int:
    with app.root.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _event_ids(app: Any) -> set[str]:
    with app.root.engine.connect() as conn:
        return set(conn.execute(select(tables.audit_log.c.event_id)).scalars())


def _archived(app: Any) -> list[dict[str, Any]]:
    """Every row of every object in the manifest, each object checked against its manifest row."""
    with app.root.engine.connect() as conn:
        manifest = [dict(r._mapping) for r in conn.execute(select(tables.audit_archive))]
    return [row for m in manifest for row in archive.verify_object(app.root.object_store, m)]


def test_old_audit_rows_move_to_the_archive(app: Any, client: Any, clock: Any, tmp_path: Path) -> None:
    ids = _tasks(app, client, 3)
    before = _event_ids(app)
    assert len(before) == 6
    assert app.tick("exports", archive.CRON_ROUTE)["archived_rows"] == 0  # nothing is 90 days old yet
    clock.advance(days=91)
    result = app.tick("exports", archive.CRON_ROUTE)
    assert (result["archived_rows"], result["archived_objects"]) == (6, 1)
    assert _count(app, tables.audit_log) == 0
    [obj] = [p for p in (tmp_path / "exports" / "audit").rglob("*.jsonl.gz")]
    with app.root.engine.connect() as conn:
        manifest = dict(conn.execute(select(tables.audit_archive)).one()._mapping)
    assert manifest["rows"] == 6 and manifest["sha256"] == hashlib.sha256(obj.read_bytes()).hexdigest()
    assert obj.relative_to(tmp_path / "exports").as_posix() == manifest["object_key"]
    assert {r["event_id"] for r in archive.decode(obj.read_bytes())} == before

    history = client.get(f"/v1/tasks/{ids[0]}/history", headers=auth()).get_json()
    assert history["items"] == []
    assert history["archived_before"] is not None
    export = client.post("/v1/exports", json={"format": "json"}, headers=auth()).get_json()
    app.bus.drain(10)
    done = client.get(f"/v1/exports/{export['id']}", headers=auth()).get_json()
    url = done["download_url"].replace("http://localhost", "")
    doc = json.loads(client.get(url).get_data())
    assert {e["event_id"] for e in doc["history"]} == before
    assert all(e["archived"] for e in doc["history"])
    other = client.post("/v1/exports", json={"format": "json"}, headers=auth("mallory")).get_json()
    app.bus.drain(10)
    url = client.get(f"/v1/exports/{other['id']}", headers=auth("mallory")).get_json()["download_url"]
    assert json.loads(client.get(url.replace("http://localhost", "")).get_data())["history"] == []


def test_the_retention_period_comes_from_the_configuration_store(app: Any, client: Any, clock: Any) -> None:
    _tasks(app, client, 1)
    with app.root.engine.begin() as conn:
        conn.execute(tables.taskflow_config.insert().values(key="audit_retention_days", value="200", version="1"))
    clock.advance(days=91)
    assert app.tick("exports", archive.CRON_ROUTE)["archived_rows"] == 0
    clock.advance(days=110)
    assert app.tick("exports", archive.CRON_ROUTE)["archived_rows"] == 2


class FailingStore:
    """The object store port, failing from the ``fail_at``-th write on (the store is down)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner, self.fail_at, self.writes = inner, fail_at, 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.writes += 1
        if self.writes >= self.fail_at:
            raise ConnectionError("object store down")
        self.inner.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        return bytes(self.inner.get(key))


class CorruptingStore(FailingStore):
    def get(self, key: str) -> bytes:
        return bytes(self.inner.get(key))[:-1]


def test_a_failure_in_the_middle_loses_and_duplicates_nothing(app: Any, client: Any, clock: Any) -> None:
    _tasks(app, client, 5)
    before = _event_ids(app)
    clock.advance(days=91)
    store = FailingStore(app.root.object_store, fail_at=3)
    with pytest.raises(ConnectionError):
        archive.archive_audit(app.root.uow(), clock, store, 90, batch=2, max_objects=10)
    # two objects written, verified, recorded and their rows deleted; the rest untouched
    assert _count(app, tables.audit_archive) == 2
    assert _count(app, tables.audit_log) == len(before) - 4
    archived = [r["event_id"] for r in _archived(app)]
    assert len(archived) == 4 and set(archived) | _event_ids(app) == before

    bad = CorruptingStore(app.root.object_store, fail_at=99)
    with pytest.raises(archive.ArchiveError):
        archive.archive_audit(app.root.uow(), clock, bad, 90, batch=2, max_objects=10)
    assert _count(app, tables.audit_log) == len(before) - 4  # a bad read-back deletes nothing

    result = archive.archive_audit(app.root.uow(), clock, app.root.object_store, 90, batch=2, max_objects=10)
    assert result.rows == len(before) - 4
    archived = [r["event_id"] for r in _archived(app)]
    assert sorted(archived) == sorted(before)  # every row exactly once
    assert _count(app, tables.audit_log) == 0
    again = archive.archive_audit(app.root.uow(), clock, app.root.object_store, 90, batch=2, max_objects=10)
    assert again.objects == 0


def test_the_archive_runs_daily_on_its_own_trigger_in_embedded_mode_and_the_stack(app: Any, tmp_path: Path) -> None:
    """Embedded mode's timers and the stack's cron bindings both post /cron/archive to exports once a
    day; the exports' housekeeping (/cron) runs every five minutes and archives nothing."""
    schedules = app.cron_schedules()
    assert ("exports", archive.CRON_ROUTE, 86400.0) in schedules
    assert ("exports", "/cron", 300.0) in schedules
    assert "archived_rows" not in app.tick("exports")

    import yaml

    from tests.toolmodules import load_tool

    stack = load_tool("stack")
    resources, _ = stack.render_dapr({}, dest=tmp_path)
    crons = {
        d["metadata"]["name"]: ({m["name"]: m["value"] for m in d["spec"]["metadata"]}, d["scopes"])
        for d in yaml.safe_load_all((resources / "bindings.yaml").read_text())
        if d and d["spec"]["type"] == "bindings.cron"
    }
    assert crons["archive-cron"] == (
        {"schedule": "@every 86400s", "direction": "input", "route": archive.CRON_ROUTE},
        ["exports"],
    )
    assert crons["exports-cron"][0]["schedule"] == "@every 300s"
