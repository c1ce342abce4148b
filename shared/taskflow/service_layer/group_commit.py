"""Group commit of creates: the creates that arrive in one process while another group is being
written wait for it to finish, then go to the database together, in one transaction with one
commit (``tasks.create_tasks``), and their events are published in one pass.

Leader and followers, no timer: a create that finds no group in flight writes alone at once (a
group of one, no added latency); the creates that queue meanwhile form the next group, which the
first of them writes when the one before commits. A group whose transaction fails as a whole (the
database, not one request's quota or invariant) is not retried together: each of its creates runs
alone, the ordinary way, so every request gets its own answer and its own error (a group of one
gets its error at once, as without grouping).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from taskflow.domain import limits, model
from taskflow.service_layer import tasks
from taskflow.service_layer.ports import Clock
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork

log = logging.getLogger(__name__)


class _Create:
    __slots__ = ("alone", "fields", "lead", "outcome", "owner_id", "ready")

    def __init__(self, owner_id: str, fields: dict[str, Any]) -> None:
        self.owner_id = owner_id
        self.fields = fields
        self.outcome: model.Task | Exception | None = None
        self.alone = False  # the group failed: write this create by itself
        self.lead = False  # write the next group
        self.ready = threading.Event()


class GroupCommit:
    """One per process (``Root.component``): ``create`` is ``tasks.create_task`` with concurrent
    callers sharing transactions."""

    def __init__(
        self,
        uow: Callable[[], AbstractUnitOfWork],
        clock: Clock,
        publish: Callable[[AbstractUnitOfWork], Any],
        quotas: limits.Quotas | None = None,
        max_group: int = 64,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._publish = publish
        self._quotas = quotas
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Create] = []
        self._writing = False  # a group is in flight; the queue is the next one
        self.groups = 0  # groups written together (tests read these two)
        self.grouped = 0  # creates written in them

    @property
    def waiting(self) -> int:
        """Creates queued for the next group."""
        with self._lock:
            return len(self._queue) if self._writing else 0

    def create(self, owner_id: str, fields: dict[str, Any]) -> model.Task:
        me = _Create(owner_id, fields)
        with self._lock:
            self._queue.append(me)
            me.lead = not self._writing
            self._writing = True
        if not me.lead:
            me.ready.wait()
        if me.lead:
            self._write_next_group()
        if me.alone:
            uow = self._uow()
            task = tasks.create_task(uow, self._clock, owner_id, fields, self._quotas)
            self._publish(uow)
            return task
        if isinstance(me.outcome, Exception):
            raise me.outcome
        assert me.outcome is not None
        return me.outcome

    def _write_next_group(self) -> None:
        with self._lock:
            group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
        try:
            uow = self._uow()
            outcome = tasks.create_tasks(uow, self._clock, [(c.owner_id, c.fields) for c in group], self._quotas)
        except Exception as exc:
            if len(group) == 1:
                group[0].outcome = exc  # what the ordinary path would have raised
            else:
                log.warning("a group of %d creates failed (%s); each is written alone", len(group), type(exc).__name__)
                for c in group:
                    c.alone = True
        else:
            self.groups += 1
            self.grouped += len(group)
            for c, result in zip(group, outcome, strict=True):
                c.outcome = result
            self._publish(uow)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].ready.set()
                else:
                    self._writing = False
            for c in group:
                c.ready.set()
