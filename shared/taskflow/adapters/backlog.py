"""The outbox backlog as the relay sees it: how many rows wait and how old the oldest is (metrics)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select

from taskflow.adapters.tables import outbox


def outbox_backlog(engine: Engine, now: datetime) -> tuple[int, float]:
    """(pending rows, age in seconds of the oldest pending row; 0 when none), on the pending index."""
    pending = outbox.c.sent_at.is_(None)
    with engine.connect() as conn:
        count = int(conn.execute(select(func.count()).select_from(outbox).where(pending)).scalar_one())
        oldest = conn.execute(select(outbox.c.created_at).where(pending).order_by(outbox.c.seq).limit(1)).scalar()
    return count, max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
