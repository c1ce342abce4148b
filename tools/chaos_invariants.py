"""The chaos suite's verdict (tools/chaos.py): what must hold once the stack has drained, read from the
database, the public API, Kafka's dead-letter topics and the webhook receiver.

``pending(db)`` says what the stack still owes (the drain waits until it is empty); ``check(...)``
returns the violations (an empty list is a pass) and the figures for the table.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from chaos_load import Receiver, Record
from sqlalchemy import Engine, text


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0

    def lose(self, what: str) -> None:
        self.lost += 1
        self.violations.append(f"lost: {what}")

    def duplicate(self, what: str) -> None:
        self.duplicated += 1
        self.violations.append(f"duplicated: {what}")


def _count(rule: str) -> int | None:
    m = re.search(r"COUNT=(\d+)", rule)
    return int(m.group(1)) if m else None


def _rows(db: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connect() as c:
        return [dict(r._mapping) for r in c.execute(text(sql), params)]


def pending(db: Engine, receiver: Receiver) -> dict[str, int]:
    """What the stack still has to do; the drain is over when every value is 0."""
    missing_next = 0
    for t in _rows(
        db, "SELECT series_id, occurrence, recurrence FROM tasks WHERE status = 'completed' AND recurrence IS NOT NULL"
    ):
        count = _count(
            json.loads(t["recurrence"])["rule"] if isinstance(t["recurrence"], str) else t["recurrence"]["rule"]
        )
        if count is None or t["occurrence"] < count:
            missing_next += 1
    have_next = _rows(
        db,
        "SELECT count(*) AS n FROM tasks a JOIN tasks b"
        " ON b.series_id = a.series_id AND b.occurrence = a.occurrence + 1"
        " WHERE a.status = 'completed' AND a.recurrence IS NOT NULL",
    )[0]["n"]
    delivered = {
        r["event_id"]
        for r in _rows(
            db,
            "SELECT event_id FROM notifications n JOIN user_settings s "
            "ON s.owner_id = n.owner_id WHERE s.webhook_url IS NOT NULL",
        )
    }
    with receiver.lock:
        unreceived = len(delivered - set(receiver.received))
    return {
        "unsent outbox rows": _rows(db, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"],
        "events not yet audited": _rows(
            db,
            "SELECT count(*) AS n FROM outbox o LEFT JOIN audit_log a ON a.event_id = o.event_id "
            "WHERE o.topic = 'task-events' AND a.event_id IS NULL",
        )[0]["n"],
        "reminders due, not fired": _rows(
            db,
            "SELECT count(*) AS n FROM reminders WHERE status = 'pending' AND fire_at < now() - interval '3 seconds'",
        )[0]["n"],
        "fired reminders without notification": _rows(
            db,
            "SELECT count(*) AS n FROM reminders r LEFT JOIN notifications n ON n.reminder_id = r.id "
            "WHERE r.status = 'fired' AND n.id IS NULL",
        )[0]["n"],
        "webhooks not received": unreceived,
        "next occurrences missing": max(0, missing_next - have_next),
    }


def check(db: Engine, record: Record, receiver: Receiver, api_url: str, dead_letters: dict[str, list[dict]],
          history_sample: list[str]) -> Verdict:  # fmt: skip
    v = Verdict()
    tasks = {t["id"]: t for t in _rows(db, "SELECT id, owner_id, title, status, deleted_at, recurrence, series_id, "
                                           "occurrence FROM tasks")}  # fmt: skip

    # 1. every acknowledged write is in the database; one task per Idempotency-Key
    per_key: Counter[str] = Counter()
    for t in tasks.values():
        m = re.match(r"chaos ([0-9a-f]{32})", t["title"])
        if m and t["occurrence"] == 1:
            per_key[m.group(1)] += 1
    for key, task_id in record.creates.items():
        if per_key[key] > 1:
            v.duplicate(f"Idempotency-Key {key} created {per_key[key]} tasks")
        if task_id is not None and task_id not in tasks:
            v.lose(f"acknowledged create {task_id} (key {key}) is not in the database")
    for known in record.tasks.values():
        row = tasks.get(known.id)
        if row is None:
            continue
        if known.deleted and row["deleted_at"] is None:
            v.lose(f"acknowledged delete of {known.id}: the task is still live")
        elif not known.deleted and row["deleted_at"] is not None and not known.uncertain:
            v.violations.append(f"task {known.id} deleted without an acknowledged delete")
        elif not known.deleted and row["title"] != known.title and not known.uncertain:
            v.lose(f"acknowledged update of {known.id}: title {row['title']!r}, acknowledged {known.title!r}")
        elif not known.deleted and row["status"] != known.status and not known.uncertain:
            v.lose(f"acknowledged {known.status} of {known.id}: the database says {row['status']}")
    v.figures["tasks in the database"] = len(tasks)

    # 2. every outbox event delivered: one audit row per event id, history complete and in order
    outbox = _rows(db, "SELECT seq, event_id, topic, partition_key, sent_at FROM outbox ORDER BY seq")
    unsent = [o["event_id"] for o in outbox if o["sent_at"] is None]
    for e in unsent:
        v.lose(f"outbox event {e} never sent")
    audit = _rows(db, "SELECT event_id, task_id, type, time FROM audit_log ORDER BY time, recorded_at")
    audited = {a["event_id"] for a in audit}
    task_events = [o for o in outbox if o["topic"] == "task-events"]
    ids = {o["event_id"] for o in task_events}
    for o in task_events:
        if o["event_id"] not in audited:
            v.lose(f"event {o['event_id']} (task {o['partition_key']}) has no audit row")
    for a in audit:
        if a["event_id"] not in ids:
            v.duplicate(f"audit row {a['event_id']} for an event id that was never written (a re-enveloped event?)")
    by_task_outbox: dict[str, list[str]] = defaultdict(list)
    for o in task_events:
        by_task_outbox[o["partition_key"]].append(o["event_id"])
    by_task_audit: dict[str, list[str]] = defaultdict(list)
    for a in audit:
        by_task_audit[a["task_id"]].append(a["event_id"])
    out_of_order = [
        t
        for t, evs in by_task_outbox.items()
        if by_task_audit.get(t, []) != evs and set(by_task_audit.get(t, [])) == set(evs)
    ]
    for t in out_of_order:
        v.violations.append(f"history of {t} out of order: audit {by_task_audit[t]} vs written {by_task_outbox[t]}")
    v.figures["events written (outbox)"] = len(outbox)
    v.figures["audit rows"] = len(audit)

    # the same through the public API (tasks-api -> audit by service invocation), for a sample
    owners = {t["id"]: t["owner_id"] for t in tasks.values()}
    checked = 0
    for task_id in history_sample:
        if task_id not in tasks or tasks[task_id]["deleted_at"] is not None:
            continue
        tok = record.users.get(owners[task_id])
        if tok is None:
            continue
        resp = httpx.get(
            f"{api_url}/v1/tasks/{task_id}/history", headers={"Authorization": f"Bearer {tok}"}, timeout=30
        )
        if resp.status_code != 200:
            v.violations.append(f"GET history of {task_id}: {resp.status_code} {resp.text[:200]}")
            continue
        got = [h["event_id"] for h in resp.json()["items"]]
        if got != by_task_outbox[task_id]:
            v.violations.append(f"API history of {task_id} is {got}, written {by_task_outbox[task_id]}")
        checked += 1
    v.figures["histories read through the API"] = checked

    # 3. recurrence: one next occurrence per completed occurrence, none after COUNT
    by_series: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for t in tasks.values():
        if t["series_id"]:
            by_series[t["series_id"]][t["occurrence"]].append(t)
    completed_occ = 0
    for series, occ in by_series.items():
        for n, ts in occ.items():
            if len(ts) > 1:
                v.duplicate(f"series {series} has {len(ts)} tasks for occurrence {n}")
            for t in ts:
                if t["status"] != "completed" or t["recurrence"] is None:
                    continue
                completed_occ += 1
                rec = t["recurrence"] if isinstance(t["recurrence"], dict) else json.loads(t["recurrence"])
                count = _count(rec["rule"])
                nxt = occ.get(n + 1, [])
                if count is not None and n >= count:
                    if nxt:
                        v.duplicate(f"series {series}: occurrence {n + 1} after COUNT={count}")
                elif not nxt:
                    v.lose(f"series {series}: completed occurrence {n} has no next occurrence")
    v.figures["completed occurrences"] = completed_occ
    v.figures["next occurrences created"] = sum(len(ts) for occ in by_series.values() for n, ts in occ.items() if n > 1)

    # 4. reminders: one inbox notification per fired reminder; each webhook id received, applied once
    reminders = _rows(db, "SELECT id, status, fire_at FROM reminders")
    notes = _rows(db, "SELECT n.event_id, n.reminder_id, n.webhook_status, s.webhook_url FROM notifications n "
                      "LEFT JOIN user_settings s ON s.owner_id = n.owner_id")  # fmt: skip
    per_reminder = Counter(n["reminder_id"] for n in notes)
    fired = [r for r in reminders if r["status"] == "fired"]
    for r in reminders:
        if r["status"] == "pending" and r["fire_at"] < _now(db):
            v.lose(f"reminder {r['id']} fell due at {r['fire_at']} and never fired")
        elif r["status"] == "missed":
            v.lose(f"reminder {r['id']} was marked missed")
    for r in fired:
        if per_reminder[r["id"]] == 0:
            v.lose(f"fired reminder {r['id']} has no inbox notification")
        elif per_reminder[r["id"]] > 1:
            v.duplicate(f"reminder {r['id']} has {per_reminder[r['id']]} inbox notifications")
    with receiver.lock:
        received, applied, bad_sig = Counter(receiver.received), dict(receiver.applied), receiver.bad_signatures
    note_ids = {n["event_id"] for n in notes}
    for n in notes:
        if n["webhook_url"] and received[n["event_id"]] == 0:
            v.lose(f"webhook for notification event {n['event_id']} never reached the receiver")
    for event_id in received:
        if event_id not in note_ids:
            v.duplicate(f"the receiver got delivery id {event_id}, which is no inbox notification")
    if bad_sig:
        v.violations.append(f"{bad_sig} webhook deliveries with a bad signature")
    v.figures["reminders set"] = record.reminders_set
    v.figures["reminders fired"] = len(fired)
    v.figures["inbox notifications"] = len(notes)
    v.figures["webhook deliveries received"] = sum(received.values())
    v.figures["webhook ids applied (once each)"] = len(applied)

    # 5. dead letters: nothing but poison (the suite sends none), no 5xx but 503 + Retry-After
    for topic, recs in dead_letters.items():
        for r in recs:
            v.violations.append(f"dead letter on {topic}: {str(r.get('value'))[:200]}")
        v.figures[f"dead letters on {topic}"] = len(recs)
    for line in record.bad_5xx:
        v.violations.append(f"5xx other than 503 + Retry-After: {line}")
    for line in record.unacknowledged:
        v.violations.append(f"no answer within the client's patience: {line}")
    return v


def _now(db: Engine) -> Any:
    return _rows(db, "SELECT now() AS t")[0]["t"]
