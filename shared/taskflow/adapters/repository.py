"""Repositories: every SQL statement TaskFlow runs lives here (SQLAlchemy Core)."""

from __future__ import annotations

import base64
import builtins
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from taskflow.adapters import search
from taskflow.adapters.tables import (
    audit_log,
    notifications,
    outbox,
    reminders,
    task_tags,
    tasks,
    user_settings,
)
from taskflow.domain import model
from taskflow.domain.limits import Usage
from taskflow.domain.query import BadCursor, TaskQuery
from taskflow.events import Envelope
from taskflow.service_layer.unit_of_work import PendingEvent


def _dialect(conn: Connection) -> str:
    return conn.dialect.name


# --- tasks ---------------------------------------------------------------------------------


#: The aggregate's fields that are stored as columns of the same name.
_STORED = [f.name for f in dataclasses.fields(model.Task) if f.name in tasks.c]


def _row_to_task(row: Any) -> model.Task:
    m = row._mapping
    values = {name: m[name] for name in _STORED}
    values.update(
        status=model.Status(m["status"]),
        priority=model.Priority.from_rank(m["priority"]),
        tags=list(m["tags"] or []),
        recurrence=model.Recurrence.from_json(m["recurrence"]),
        reminders=[model.Reminder.from_json(r) for r in (m["reminders"] or [])],
    )
    return model.Task(**values)


def _task_values(task: model.Task) -> dict[str, Any]:
    values = {name: getattr(task, name) for name in _STORED if name != "id"}
    values.update(
        status=task.status.value,
        priority=task.priority.rank,
        tags=list(task.tags),
        recurrence=task.recurrence.to_json() if task.recurrence else None,
        reminders=[r.to_json() for r in task.reminders],
        series_start=task.series_start or (task.due_at if task.series_id else None),
    )
    return values


_TASK_COLUMNS = [c for c in tasks.c if c.name != "search_vector"]

# Hot statements, built once: executing a prebuilt statement with parameters costs SQLAlchemy a
# compiled-cache lookup, where building ``insert(...).values(...)`` per call costs the construction
# and its cache key, and a multi-row ``.values([...])`` a fresh compilation every time. Rows of a
# batch go as a list of parameter sets (one multi-row INSERT on PostgreSQL: insertmanyvalues).
_DIALECT_INSERTS = (("postgresql", pg_insert), ("sqlite", sqlite_insert))  # each has on_conflict_do_nothing
_INSERT_TASK = insert(tasks)
_INSERT_OCCURRENCE = {  # an occurrence of a series: once per (series, occurrence)
    name: dml(tasks).on_conflict_do_nothing(index_elements=[tasks.c.series_id, tasks.c.occurrence])
    for name, dml in _DIALECT_INSERTS
}
_UPDATE_TASK = update(tasks).where(tasks.c.id == bindparam("_task_id"))
_INSERT_TAGS = insert(task_tags)
_DELETE_TAGS = delete(task_tags).where(task_tags.c.task_id == bindparam("_task_id"))
_OPEN_TASKS = (
    select(func.count().label("n"))
    .select_from(tasks)
    .where(tasks.c.owner_id == bindparam("_owner"), tasks.c.status == "open", tasks.c.deleted_at.is_(None))
    .subquery()
)
_OWNED_TAGS = select(task_tags.c.tag).where(task_tags.c.owner_id == bindparam("_owner")).distinct().subquery()
#: A task's tags as ``tag<US>owner`` keys, the expression of the GIN index ``ix_tasks_tag_keys``
#: (migration 0006; PostgreSQL only, like the search vector).
_TEXTS = ARRAY(Text())
_TAG_KEYS = func.taskflow_tag_keys(tasks.c.owner_id, tasks.c.tags, type_=_TEXTS)
_USAGE = select(_OPEN_TASKS.c.n)
_USAGE_WITH_TAGS = select(_OPEN_TASKS.c.n, _OWNED_TAGS.c.tag).select_from(_OPEN_TASKS.outerjoin(_OWNED_TAGS, true()))


class TaskRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.seen: list[model.Task] = []
        self._tags: dict[str, tuple[str, ...]] = {}  # each task's tags as stored: unchanged ones are not rewritten

    def _seen(self, task: model.Task) -> model.Task:
        self.seen.append(task)
        return task

    def _load(self, task: model.Task) -> model.Task:
        self._tags[task.id] = tuple(task.tags)
        return self._seen(task)

    def add(self, task: model.Task) -> bool:
        """Insert; returns False when the series already has this occurrence (exactly-once key).

        A new task is one INSERT (its id is fresh: no savepoint, no check); an occurrence of a
        series is ``INSERT ... ON CONFLICT DO NOTHING`` on the series key, so a concurrent
        delivery that created it first is seen without an error."""
        values = _task_values(task)
        if task.series_id and task.series_start is None:
            task.series_start = values["series_start"]
        values["id"] = task.id
        if task.series_id is None:
            self.conn.execute(_INSERT_TASK, values)
        elif self.conn.execute(_INSERT_OCCURRENCE[_dialect(self.conn)], values).rowcount == 0:
            return False
        self._insert_tags(task)
        self._tags[task.id] = tuple(task.tags)
        self._seen(task)
        return True

    def add_new(self, new_tasks: Sequence[model.Task]) -> None:
        """Insert brand-new tasks (fresh ids; a new recurring task starts its own series) in one
        multi-row INSERT, then their tags in one more. An id that exists fails the INSERT."""
        rows = self._rows(new_tasks)
        if rows:
            self.conn.execute(_INSERT_TASK, rows)
        self._added(new_tasks)

    def add_occurrences(self, occurrences: Sequence[model.Task]) -> set[str]:
        """Insert occurrences of series in one multi-row ``INSERT ... ON CONFLICT DO NOTHING
        RETURNING id`` (then their tags in one more): the ids inserted; an occurrence its series
        already has is skipped, exactly once as in ``add``."""
        if not occurrences:
            return set()
        stmt = _INSERT_OCCURRENCE[_dialect(self.conn)].returning(tasks.c.id)
        added = {r[0] for r in self.conn.execute(stmt, self._rows(occurrences))}
        self._added([t for t in occurrences if t.id in added])
        return added

    @staticmethod
    def _rows(new_tasks: Sequence[model.Task]) -> builtins.list[dict[str, Any]]:
        """The rows of tasks to insert; a series without a start starts at this occurrence."""
        rows = []
        for task in new_tasks:
            values = _task_values(task)
            task.series_start = task.series_start or values["series_start"]
            values["id"] = task.id
            rows.append(values)
        return rows

    def _added(self, inserted: Sequence[model.Task]) -> None:
        """The tags of tasks just inserted, in one multi-row INSERT; the tasks are seen, their tags stored."""
        tag_rows = [{"task_id": t.id, "tag": tag, "owner_id": t.owner_id} for t in inserted for tag in t.tags]
        if tag_rows:
            self.conn.execute(_INSERT_TAGS, tag_rows)
        for task in inserted:
            self._tags[task.id] = tuple(task.tags)
            self._seen(task)

    def series_has(self, series_id: str, occurrence: int) -> bool:
        stmt = select(tasks.c.id).where(tasks.c.series_id == series_id, tasks.c.occurrence == occurrence)
        return self.conn.execute(stmt).first() is not None

    def owners(self, task_ids: Iterable[str]) -> dict[str, str]:
        ids = list(task_ids)
        if not ids:
            return {}
        stmt = select(tasks.c.id, tasks.c.owner_id).where(tasks.c.id.in_(ids))
        return {r[0]: r[1] for r in self.conn.execute(stmt)}

    def get(self, owner_id: str, task_id: str, *, for_update: bool = False) -> model.Task:
        try:
            uuid.UUID(task_id)
        except ValueError as exc:
            raise model.NotFound(task_id) from exc
        stmt = select(*_TASK_COLUMNS).where(
            tasks.c.id == task_id, tasks.c.owner_id == owner_id, tasks.c.deleted_at.is_(None)
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        if row is None:
            raise model.NotFound(task_id)
        return self._load(_row_to_task(row))

    def get_many(self, task_ids: Iterable[str]) -> dict[str, model.Task]:
        """The live (not deleted) tasks among these ids, regardless of owner, in one SELECT (consumers)."""
        ids = list(task_ids)
        if not ids:
            return {}
        stmt = select(*_TASK_COLUMNS).where(tasks.c.id.in_(ids), tasks.c.deleted_at.is_(None))
        return {t.id: self._load(t) for t in map(_row_to_task, self.conn.execute(stmt))}

    def get_any(self, task_id: str, *, include_deleted: bool = True) -> model.Task | None:
        """Load by id regardless of owner (consumers); deleted tasks only when asked for."""
        stmt = select(*_TASK_COLUMNS).where(tasks.c.id == task_id)
        if not include_deleted:
            stmt = stmt.where(tasks.c.deleted_at.is_(None))
        row = self.conn.execute(stmt).first()
        return None if row is None else self._load(_row_to_task(row))

    def save(self, task: model.Task) -> None:
        values = _task_values(task)
        values.pop("created_at")
        values.pop("owner_id")
        values["_task_id"] = task.id
        self.conn.execute(_UPDATE_TASK, values)
        if self._tags.get(task.id) != tuple(task.tags):
            self.conn.execute(_DELETE_TAGS, {"_task_id": task.id})
            self._insert_tags(task)
            self._tags[task.id] = tuple(task.tags)

    def mark_deleted(self, task: model.Task, now: datetime) -> None:
        self.conn.execute(
            update(tasks)
            .where(tasks.c.id == task.id)
            .values(deleted_at=now, version=task.version, updated_at=task.updated_at)
        )
        self.conn.execute(delete(task_tags).where(task_tags.c.task_id == task.id))

    def _insert_tags(self, task: model.Task) -> None:
        if task.tags:  # one multi-row INSERT
            rows = [{"task_id": task.id, "tag": t, "owner_id": task.owner_id} for t in task.tags]
            self.conn.execute(_INSERT_TAGS, rows)

    def tag_counts(self, owner_id: str) -> list[tuple[str, int]]:
        n = func.count().label("n")
        stmt = (
            select(task_tags.c.tag, n)
            .where(task_tags.c.owner_id == owner_id)
            .group_by(task_tags.c.tag)
            .order_by(n.desc(), task_tags.c.tag)
        )
        return [(r[0], int(r[1])) for r in self.conn.execute(stmt)]

    def usage(self, owner_id: str, *, with_tags: bool) -> Usage:
        """The user's open tasks and (``with_tags``) distinct tags, in one statement (the quotas)."""
        params = {"_owner": owner_id}
        if not with_tags:
            return Usage(int(self.conn.execute(_USAGE, params).scalar_one()), frozenset())
        found = self.conn.execute(_USAGE_WITH_TAGS, params).all()
        return Usage(int(found[0][0]), frozenset(r[1] for r in found if r[1] is not None))

    # --- listing with filters, search, sort and keyset pagination --------------------------

    def list(self, owner_id: str, query: TaskQuery, now: datetime) -> tuple[list[model.Task], str | None]:
        dialect = _dialect(self.conn)
        where: list[ColumnElement[bool]] = [tasks.c.owner_id == owner_id, tasks.c.deleted_at.is_(None)]
        if query.status != "all":
            where.append(tasks.c.status == query.status)
        if query.priority:
            where.append(tasks.c.priority.in_([model.Priority(p).rank for p in query.priority]))
        if query.tags:
            # The user's tasks with these tags, from the (owner_id, tag, task_id) index. All of several
            # tags on SQLite: one IN per tag (the GROUP BY ... HAVING count(*) = n it replaces
            # aggregated every entry of every tag).
            wanted = list(dict.fromkeys(query.tags))

            def tagged(*tags: str) -> Any:
                return select(task_tags.c.task_id).where(task_tags.c.owner_id == owner_id, task_tags.c.tag.in_(tags))

            if query.tag_mode == "any":
                where.append(tasks.c.id.in_(tagged(*wanted)))
            elif len(wanted) > 1 and dialect == "postgresql":
                # PostgreSQL: the GIN index of owner-qualified tag keys (migration 0006) intersects
                # the tags' posting lists and a bitmap heap scan reads only the tasks with all of them.
                # The IN per tag merge-joined every entry of both tags, then fetched each common task
                # by primary key (3 570 tasks: 23 ms, now 5; never together: 6.6 ms, now 2.6; bench/README.md).
                # The wanted keys come from the index's own function: one definition of a key.
                wanted_json = cast(bindparam("tag_list", json.dumps(wanted), type_=Text), JSON)
                wanted_keys = func.taskflow_tag_keys(owner_id, wanted_json, type_=_TEXTS)
                where.append(_TAG_KEYS.op("@>")(wanted_keys))
            else:
                where.extend(tasks.c.id.in_(tagged(t)) for t in wanted)
        if query.due_before is not None:
            where.append(tasks.c.due_at < query.due_before)
        if query.due_after is not None:
            where.append(tasks.c.due_at > query.due_after)
        if query.overdue is True:
            where.extend([tasks.c.due_at < now, tasks.c.status == "open"])
        elif query.overdue is False:
            where.append(or_(tasks.c.due_at.is_(None), tasks.c.due_at >= now, tasks.c.status != "open"))
        if query.has_due is not None:
            where.append(tasks.c.due_at.is_not(None) if query.has_due else tasks.c.due_at.is_(None))
        if query.recurring is not None:
            where.append(tasks.c.recurrence.is_not(None) if query.recurring else tasks.c.recurrence.is_(None))

        rank: ColumnElement[Any] | None = None
        words = query.search_words
        if words:
            where.append(search.match(dialect, words, owner_id))
            rank = search.rank(dialect, words)

        keys = _sort_keys(query.effective_sort, rank)
        signature = _signature(owner_id, query)
        after: tuple[list[Any], str] | None = None
        window: _Window | None = None
        if query.cursor:
            values, last_id, window = _decode_cursor(query.cursor, signature, keys)
            after = (values, last_id)
        if words and keys[0].name == "relevance":
            return self._ranked(dialect, words, where, keys, query.limit, signature, after, window)
        if after is not None:
            where.append(_after(keys, *after))

        order = [k.order() for k in keys] + [tasks.c.id.asc()]
        extra = [k.expr.label(f"k{i}") for i, k in enumerate(keys) if k.computed]
        page = query.limit + 1
        if query.status == "all" and dialect == "postgresql":
            # One ordered index scan per status, merged (Merge Append): an index on (owner, status,
            # sort keys) then serves "all" too, instead of sorting every task of the user.
            halves = [
                select(*_TASK_COLUMNS, *extra)
                .where(and_(*where, tasks.c.status == s.value))
                .order_by(*order)
                .limit(page)
                for s in model.Status
            ]
            merged = union_all(*halves).subquery("page")
            outer = [
                _Key(k.name, merged.c[f"k{i}"] if k.computed else merged.c[k.name], k.descending, k.nullable)
                for i, k in enumerate(keys)
            ]
            stmt = select(merged).order_by(*[k.order() for k in outer], merged.c.id.asc()).limit(page)
        else:
            stmt = select(*_TASK_COLUMNS, *extra).where(and_(*where)).order_by(*order).limit(page)
        rows = self.conn.execute(stmt).all()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [_row_to_task(r) for r in rows]
        cursor = None
        if more and rows:
            last = rows[-1]._mapping
            vals = [last[f"k{i}"] if k.computed else last[k.name] for i, k in enumerate(keys)]
            cursor = _encode_cursor(signature, vals, last["id"])
        return items, cursor

    def _ranked(
        self,
        dialect: str,
        words: builtins.list[str],
        where: builtins.list[ColumnElement[bool]],
        keys: builtins.list[_Key],
        limit: int,
        signature: str,
        after: tuple[builtins.list[Any], str] | None,
        window: _Window | None,
    ) -> tuple[builtins.list[model.Task], str | None]:
        """A page in relevance order, ranked window by window: each window is the ``search.WINDOW``
        newest matches below the previous one (an ordered index scan that stops there, or the
        full-text index when the words are rare), so a word matching 13 000 tasks ranks 500, not
        13 000. With up to ``search.WINDOW`` matches this is exactly relevance order over all of them.
        The cursor keeps its window's bound, so later pages rank the same candidates."""
        found: builtins.list[tuple[Any, _Window]] = []
        while True:
            rows, stats = self._window(dialect, words, where, keys, limit + 1 - len(found), after, window)
            if stats["w_n"] == 0:
                break
            pinned = window or _Window(stats["w_top_at"], stats["w_top_id"], inclusive=True)
            found += [(r, pinned) for r in rows]
            if len(found) > limit or stats["w_n"] < search.WINDOW:
                break
            window, after = _Window(stats["w_bottom_at"], stats["w_bottom_id"], inclusive=False), None
        more = len(found) > limit
        found = found[:limit]
        cursor = None
        if more and found:
            last, last_window = found[-1][0]._mapping, found[-1][1]
            vals = [last[f"k{i}"] if k.computed else last[k.name] for i, k in enumerate(keys)]
            cursor = _encode_cursor(signature, vals, last["id"], last_window)
        return [_row_to_task(r) for r, _ in found], cursor

    def _window(
        self,
        dialect: str,
        words: builtins.list[str],
        where: builtins.list[ColumnElement[bool]],
        keys: builtins.list[_Key],
        n: int,
        after: tuple[builtins.list[Any], str] | None,
        window: _Window | None,
    ) -> tuple[builtins.list[Any], dict[str, Any]]:
        """Up to ``n`` rows of one window in sort order after ``after``, and the window's size, newest
        and oldest candidate (one statement; the candidates are read once, as a CTE, and ranked at
        the page's level only)."""
        bounded = list(where)
        if window is not None:
            at, tid = window.created_at, window.task_id
            same = tasks.c.id <= tid if window.inclusive else tasks.c.id < tid
            bounded += [tasks.c.created_at <= at, or_(tasks.c.created_at < at, and_(tasks.c.created_at == at, same))]
        cand = (
            select(*_TASK_COLUMNS, search.row_key(dialect))
            .where(and_(*bounded))
            .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
            .limit(search.WINDOW)
            .cte("cand")
        )
        ranked_keys: builtins.list[_Key] = []
        extra = []
        for i, k in enumerate(keys):
            if k.name == "relevance":
                expr: ColumnElement[Any] = search.rank(dialect, words, cand)
            elif k.name == "title":
                expr = func.lower(cand.c.title)
            else:
                expr = cand.c[k.name]
            if k.computed:
                extra.append(expr.label(f"k{i}"))
            ranked_keys.append(_Key(k.name, expr, k.descending, k.nullable, k.computed, k.kind))

        def edge(column: Any, newest: bool) -> Any:
            order = [cand.c.created_at.desc(), cand.c.id.desc()] if newest else [cand.c.created_at, cand.c.id]
            return select(column).order_by(*order).limit(1).scalar_subquery()

        stats = [
            select(func.count()).select_from(cand).scalar_subquery().label("w_n"),
            edge(cand.c.created_at, True).label("w_top_at"),
            edge(cand.c.id, True).label("w_top_id"),
            edge(cand.c.created_at, False).label("w_bottom_at"),
            edge(cand.c.id, False).label("w_bottom_id"),
        ]
        page = select(*[cand.c[c.name] for c in _TASK_COLUMNS], *extra, *stats)
        if after is not None:
            page = page.where(_after(ranked_keys, *after, id_column=cand.c.id))
        page = page.order_by(*[k.order() for k in ranked_keys], cand.c.id.asc()).limit(n)
        rows = builtins.list(self.conn.execute(page).all())
        # the window's size and edges ride on every row; a page past the window's last row has
        # none, and reads them alone (a second statement, only then)
        first = rows[0] if rows else self.conn.execute(select(*stats)).one()
        stats_row = {c.name: first._mapping[c.name] for c in stats}
        return rows, stats_row


@dataclass(frozen=True)
class _Window:
    """The bound of a relevance window: candidates at or below (``inclusive``) or strictly below
    this (created_at, id)."""

    created_at: datetime
    task_id: str
    inclusive: bool

    def to_json(self) -> list[Any]:
        return [self.created_at.isoformat(), self.task_id, self.inclusive]

    @classmethod
    def from_json(cls, raw: Any) -> _Window:
        at, task_id, inclusive = raw
        return cls(datetime.fromisoformat(at).astimezone(UTC), str(task_id), bool(inclusive))


@dataclass
class _Key:
    name: str
    expr: ColumnElement[Any]
    descending: bool
    nullable: bool = False
    computed: bool = False
    kind: str = "plain"  # plain | time | float

    def order(self) -> Any:
        o = self.expr.desc() if self.descending else self.expr.asc()
        return o.nulls_last() if self.nullable else o


def _sort_keys(sort: Sequence[str], rank: ColumnElement[Any] | None) -> list[_Key]:
    """The ORDER BY keys; creation time (then id) breaks ties so that pages are stable."""
    keys: list[_Key] = []
    if not any(s.lstrip("-") == "created_at" for s in sort):
        sort = [*sort, "created_at"]
    for item in sort:
        desc = item.startswith("-")
        name = item.lstrip("-")
        if name == "due_at":
            keys.append(_Key("due_at", tasks.c.due_at, desc, nullable=True, kind="time"))
        elif name == "priority":
            keys.append(_Key("priority", tasks.c.priority, desc))
        elif name in ("created_at", "updated_at"):
            keys.append(_Key(name, tasks.c[name], desc, kind="time"))
        elif name == "title":
            keys.append(_Key("title", func.lower(tasks.c.title), desc, computed=True))
        elif name == "relevance" and rank is not None:
            # 'relevance' = most relevant first; '-relevance' reverses it.
            keys.append(_Key("relevance", rank, not desc, computed=True, kind="float"))
    return keys


def _after(
    keys: list[_Key], values: list[Any], last_id: str, id_column: ColumnElement[Any] | None = None
) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (keys..., id) order, with NULL due dates last."""
    task_id = tasks.c.id if id_column is None else id_column
    clauses: list[ColumnElement[bool]] = []
    for i in range(len(keys) + 1):
        parts: list[ColumnElement[bool]] = [_eq(keys[j], values[j]) for j in range(i)]
        if i < len(keys):
            parts.append(_gt(keys[i], values[i]))
        else:
            parts.append(task_id > last_id)
        clauses.append(and_(*parts))
    return or_(*clauses)


def _eq(key: _Key, value: Any) -> ColumnElement[bool]:
    if value is None:
        return key.expr.is_(None)
    eq: ColumnElement[bool] = key.expr == value
    return eq


def _gt(key: _Key, value: Any) -> ColumnElement[bool]:
    if value is None:  # NULLs sort last: nothing is after a NULL on this key
        return false()
    cmp: ColumnElement[bool] = key.expr < value if key.descending else key.expr > value
    if key.nullable:
        return or_(cmp, key.expr.is_(None))
    return cmp


def _signature(owner_id: str, query: TaskQuery) -> str:
    raw = json.dumps([owner_id, query.signature_fields()], sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _encode_cursor(signature: str, values: list[Any], last_id: str, window: _Window | None = None) -> str:
    enc = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    data: dict[str, Any] = {"s": signature, "v": enc, "id": last_id}
    if window is not None:
        data["w"] = window.to_json()
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, signature: str, keys: list[_Key]) -> tuple[list[Any], str, _Window | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        values = list(data["v"])
        last_id = str(data["id"])
        window = _Window.from_json(data["w"]) if data.get("w") is not None else None
        if data["s"] != signature:
            raise BadCursor("the cursor belongs to a different query; repeat the query without it")
        if len(values) != len(keys):
            raise BadCursor("malformed cursor")
        out: list[Any] = []
        for key, v in zip(keys, values, strict=True):
            if v is None:
                out.append(None)
            elif key.kind == "time":
                out.append(datetime.fromisoformat(v).astimezone(UTC))
            else:
                out.append(v)
        return out, last_id, window
    except BadCursor:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCursor("malformed cursor") from exc


# --- outbox --------------------------------------------------------------------------------


class OutboxRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_many(self, envelopes: Sequence[Envelope], now: datetime) -> None:
        """One multi-row INSERT (SQLAlchemy's insertmanyvalues) for a batch of events."""
        if not envelopes:
            return
        rows = [
            {
                "event_id": e.id,
                "topic": e.topic,
                "partition_key": e.partition_key,
                "event": e.to_json(),
                "created_at": now,
                "attempts": 0,
            }
            for e in envelopes
        ]
        self.conn.execute(insert(outbox), rows)

    def claim_pending(self, limit: int) -> list[PendingEvent]:
        """Oldest pending rows, locked so that concurrent relays never take the same row (SKIP LOCKED)."""
        stmt = select(outbox.c.seq, outbox.c.event_id, outbox.c.topic, outbox.c.partition_key, outbox.c.event)
        stmt = stmt.where(outbox.c.sent_at.is_(None))
        stmt = stmt.order_by(outbox.c.seq).limit(limit)
        if _dialect(self.conn) == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return [PendingEvent(*r) for r in self.conn.execute(stmt)]

    def mark_sent(self, event_ids: Iterable[str], now: datetime) -> None:
        ids = list(event_ids)
        if ids:
            self.conn.execute(
                update(outbox).where(outbox.c.event_id.in_(ids), outbox.c.sent_at.is_(None)).values(sent_at=now)
            )

    def mark_failed(self, event_id: str, error: str) -> None:
        self.conn.execute(
            update(outbox)
            .where(outbox.c.event_id == event_id)
            .values(attempts=outbox.c.attempts + 1, last_error=error[:2000])
        )


# --- reminders -----------------------------------------------------------------------------


_INSERT_REMINDERS = insert(reminders)
_DELETE_PENDING_REMINDERS = delete(reminders).where(
    reminders.c.task_id == bindparam("_task_id"), reminders.c.status == "pending"
)


class ReminderRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def armed(self, task_id: str) -> set[tuple[int, datetime]]:
        stmt = select(reminders.c.slot, reminders.c.fire_at).where(
            reminders.c.task_id == task_id, reminders.c.status != "pending"
        )
        return {(r[0], r[1]) for r in self.conn.execute(stmt)}

    def replace_pending(
        self, task: model.Task, schedule: list[tuple[int, datetime]], now: datetime, *, new: bool = False
    ) -> None:
        """Pending rows become ``schedule``; fired and missed ones stay (a ``new`` task has none)."""
        if not new:
            self.conn.execute(_DELETE_PENDING_REMINDERS, {"_task_id": task.id})
        self.add_pending([(task, schedule)], now)

    def add_pending(self, schedules: Sequence[tuple[model.Task, list[tuple[int, datetime]]]], now: datetime) -> None:
        """The reminders of new tasks (which have none yet), in one multi-row INSERT."""
        rows = [
            {
                "id": str(uuid.uuid4()),
                "task_id": task.id,
                "owner_id": task.owner_id,
                "slot": slot,
                "fire_at": fire_at,
                "status": "pending",
                "late": False,
                "created_at": now,
            }
            for task, schedule in schedules
            for slot, fire_at in schedule
        ]
        if rows:
            self.conn.execute(_INSERT_REMINDERS, rows)

    def claim_due(self, now: datetime, limit: int) -> list[model.DueReminder]:
        """Due reminders of live open tasks, locked with SKIP LOCKED so dispatchers never collide."""
        stmt = (
            select(reminders.c.id, reminders.c.task_id, reminders.c.owner_id, reminders.c.fire_at, tasks.c.title)
            .join(tasks, tasks.c.id == reminders.c.task_id)
            .where(reminders.c.status == "pending", reminders.c.fire_at <= now)
            .order_by(reminders.c.fire_at)
            .limit(limit)
        )
        if _dialect(self.conn) == "postgresql":
            stmt = stmt.with_for_update(of=reminders, skip_locked=True)
        return [model.DueReminder(*r) for r in self.conn.execute(stmt)]

    def mark(self, ids: Sequence[str], status: str, now: datetime, late: bool = False) -> None:
        if ids:
            self.conn.execute(
                update(reminders)
                .where(reminders.c.id.in_(list(ids)), reminders.c.status == "pending")
                .values(status=status, fired_at=now, late=late)
            )


# --- audit, notifications, settings --------------------------------------------------------


#: Once per event id: ``INSERT ... ON CONFLICT DO NOTHING``, per dialect.
_INSERT_AUDIT = {
    name: dml(audit_log).on_conflict_do_nothing(index_elements=[audit_log.c.event_id]) for name, dml in _DIALECT_INSERTS
}
_INSERT_NOTIFICATION = {
    name: dml(notifications).on_conflict_do_nothing(index_elements=[notifications.c.event_id])
    for name, dml in _DIALECT_INSERTS
}


class AuditRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, row: dict[str, Any]) -> bool:
        """Insert once per event id (``ON CONFLICT DO NOTHING``); False for a duplicate delivery."""
        return bool(self.conn.execute(_INSERT_AUDIT[_dialect(self.conn)], row).rowcount)

    def append_many(self, rows: list[dict[str, Any]]) -> set[str]:
        """One multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING event_id``."""
        if not rows:
            return set()
        stmt = _INSERT_AUDIT[_dialect(self.conn)].returning(audit_log.c.event_id)
        return {r[0] for r in self.conn.execute(stmt, rows)}

    def history(self, task_id: str, owner_id: str) -> list[dict[str, Any]]:
        stmt = (
            select(audit_log)
            .where(audit_log.c.task_id == task_id, audit_log.c.owner_id == owner_id)
            .order_by(audit_log.c.time, audit_log.c.recorded_at)
        )
        return [dict(r._mapping) for r in self.conn.execute(stmt)]


class NotificationRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, row: dict[str, Any]) -> bool:
        """Insert once per event id (``ON CONFLICT DO NOTHING``); False for a duplicate delivery."""
        return bool(self.conn.execute(_INSERT_NOTIFICATION[_dialect(self.conn)], row).rowcount)

    def add_many(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Insert once per event id in one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``;
        the rows inserted by event id (an event id seen before returns nothing)."""
        if not rows:
            return {}
        stmt = _INSERT_NOTIFICATION[_dialect(self.conn)].returning(*notifications.c)
        return {r.event_id: dict(r._mapping) for r in self.conn.execute(stmt, rows)}

    def get_by_events(self, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(event_ids)
        if not ids:
            return {}
        stmt = select(notifications).where(notifications.c.event_id.in_(ids))
        return {r.event_id: dict(r._mapping) for r in self.conn.execute(stmt)}

    def get_by_event(self, event_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(notifications).where(notifications.c.event_id == event_id)).first()
        return None if row is None else dict(row._mapping)

    def mark_webhook(self, notification_id: str, status: str, now: datetime) -> None:
        self.conn.execute(
            update(notifications)
            .where(notifications.c.id == notification_id)
            .values(
                webhook_status=status,
                webhook_attempts=notifications.c.webhook_attempts + 1,
                delivered_at=now if status == "delivered" else None,
            )
        )

    def mark_webhooks(self, notification_ids: Sequence[str], status: str, now: datetime) -> None:
        """``mark_webhook`` for many notifications in one UPDATE."""
        if notification_ids:
            self.conn.execute(
                update(notifications)
                .where(notifications.c.id.in_(list(notification_ids)))
                .values(
                    webhook_status=status,
                    webhook_attempts=notifications.c.webhook_attempts + 1,
                    delivered_at=now if status == "delivered" else None,
                )
            )

    def list(self, owner_id: str, limit: int = 100) -> list[dict[str, Any]]:
        stmt = (
            select(notifications)
            .where(notifications.c.owner_id == owner_id)
            .order_by(notifications.c.created_at.desc(), notifications.c.fire_at.desc())
            .limit(limit)
        )
        return [dict(r._mapping) for r in self.conn.execute(stmt)]


class SettingsRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, owner_id: str) -> str | None:
        row = self.conn.execute(select(user_settings.c.webhook_url).where(user_settings.c.owner_id == owner_id)).first()
        return None if row is None else row[0]

    def get_many(self, owner_ids: Iterable[str]) -> dict[str, str]:
        """The webhook URL of each of these users that has one, in one SELECT."""
        ids = list(owner_ids)
        if not ids:
            return {}
        stmt = select(user_settings.c.owner_id, user_settings.c.webhook_url).where(
            user_settings.c.owner_id.in_(ids), user_settings.c.webhook_url.is_not(None)
        )
        return {r[0]: r[1] for r in self.conn.execute(stmt)}

    def put(self, owner_id: str, webhook_url: str | None, now: datetime) -> None:
        updated = self.conn.execute(
            update(user_settings)
            .where(user_settings.c.owner_id == owner_id)
            .values(webhook_url=webhook_url, updated_at=now)
        )
        if updated.rowcount == 0:
            self.conn.execute(insert(user_settings).values(owner_id=owner_id, webhook_url=webhook_url, updated_at=now))


def ping(conn: Connection) -> None:
    conn.execute(select(true()))


__all__ = [
    "AuditRepository",
    "NotificationRepository",
    "OutboxRepository",
    "ReminderRepository",
    "SettingsRepository",
    "TaskRepository",
    "ping",
]
