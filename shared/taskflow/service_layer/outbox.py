"""Publishing the outbox: at once after a commit, and by the relay (the at-least-once safety net)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from taskflow import telemetry
from taskflow.service_layer.ports import Clock, Publisher, PublishError
from taskflow.service_layer.unit_of_work import AbstractUnitOfWork, PendingEvent

log = logging.getLogger("taskflow.outbox")


def _acknowledges(publisher: Publisher) -> bool:
    """True for a publisher that marks rows sent itself once delivered (the in-process bus)."""
    return bool(getattr(publisher, "acknowledges_delivery", False))


def publish_committed(uow: AbstractUnitOfWork, publisher: Publisher | None, clock: Clock) -> int:
    """Publish what ``uow`` just committed, so delivery never waits for a relay tick.

    Anything not accepted stays pending in the outbox and the relay sends it; with no publisher
    in this process the relay sends everything."""
    envelopes = committed = uow.committed_events
    uow.committed_events = []
    if not envelopes or publisher is None:
        return 0
    sent: list[str] = []
    if len(envelopes) > 1 and len({e.partition_key for e in envelopes}) == len(envelopes):
        # One event per task (a group commit's creates): no order to keep between them, so they go
        # as one wave (one call per topic to a batching publisher); a refused one waits for the relay.
        rows = [PendingEvent(i, e.id, e.topic, e.partition_key, e.to_json()) for i, e in enumerate(envelopes)]
        try:
            outcome = _publish_wave(publisher, rows)
        except Exception:
            log.exception("immediate publish failed; the outbox relay retries")
            outcome = [(row, "failed") for row in rows]
        for row, error in outcome:
            if error is None:
                sent.append(row.event_id)
            else:
                log.warning("publish of %s deferred to the outbox relay: %s", row.event_id, error)
        envelopes = []
    for envelope in envelopes:
        try:
            publisher.publish(envelope.topic, envelope.to_json(), envelope.partition_key)
        except PublishError as exc:
            log.warning("publish of %s deferred to the outbox relay: %s", envelope.id, exc)
            break  # keep one task's events in order: the relay sends the rest
        except Exception:
            log.exception("immediate publish failed; the outbox relay retries")
            break
        sent.append(envelope.id)
    published = set(sent)
    _count_published(Counter(e.topic for e in committed if e.id in published))
    if sent and not _acknowledges(publisher):
        now = clock()
        with uow:
            uow.outbox.mark_sent(sent, now)
            uow.commit(now)
    return len(sent)


def _publish_wave(publisher: Publisher, rows: list[PendingEvent]) -> list[tuple[PendingEvent, str | None]]:
    """Publish rows (one per task); a publisher with ``publish_batch`` gets one call per topic."""
    outcome: list[tuple[PendingEvent, str | None]] = []
    batch = getattr(publisher, "publish_batch", None)
    topics: dict[str, list[PendingEvent]] = {}
    for row in rows:
        topics.setdefault(row.topic, []).append(row)
    for topic, group in topics.items():
        if batch is not None and len(group) > 1:
            errors = batch(topic, [(r.event_id, r.event, r.partition_key) for r in group])
            outcome += [(r, errors.get(r.event_id)) for r in group]
            continue
        for row in group:
            try:
                publisher.publish(topic, row.event, row.partition_key)
            except PublishError as exc:
                outcome.append((row, str(exc)))
            else:
                outcome.append((row, None))
    return outcome


@dataclass(frozen=True)
class RelayResult:
    sent: int
    failed: int


def relay_outbox(uow: AbstractUnitOfWork, publisher: Publisher, clock: Clock, batch: int = 500) -> RelayResult:
    """Relay pending outbox rows oldest first with their fixed ids; rows stay locked while in flight."""
    with uow:
        remaining = uow.outbox.claim_pending(batch)
        sent: list[str] = []
        failed = 0
        blocked: set[str] = set()
        topics: Counter[str] = Counter()
        while remaining:
            # A wave holds at most one event per task, so a failure can never let a task's later
            # event overtake an earlier one; a task whose event failed waits for the next relay.
            wave: list[PendingEvent] = []
            later: list[PendingEvent] = []
            keys: set[str] = set()
            for row in remaining:
                if row.partition_key in blocked:
                    continue
                (later if row.partition_key in keys else wave).append(row)
                keys.add(row.partition_key)
            for row, error in _publish_wave(publisher, wave):
                if error is None:
                    sent.append(row.event_id)
                    topics[row.topic] += 1
                else:
                    failed += 1
                    blocked.add(row.partition_key)
                    uow.outbox.mark_failed(row.event_id, error)
            remaining = later
        now = clock()
        if not _acknowledges(publisher):
            uow.outbox.mark_sent(sent, now)
        uow.commit(now)
    _count_published(topics)
    return RelayResult(len(sent), failed)


def _count_published(topics: Counter[str]) -> None:
    for topic, n in topics.items():
        telemetry.instruments().events_published.add(n, {"topic": telemetry.topic_label(topic)})


def mark_sent(uow: AbstractUnitOfWork, clock: Clock, *event_ids: str) -> None:
    """An acknowledging publisher (the in-process bus) settled these events: one UPDATE for all."""
    now = clock()
    with uow:
        uow.outbox.mark_sent(event_ids, now)
        uow.commit(now)
