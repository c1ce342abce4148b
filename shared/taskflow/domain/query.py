"""What a task list asks for: filters, full-text words, sort keys and a page (parsed by the API)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SORT_KEYS = ("due_at", "priority", "created_at", "updated_at", "title", "relevance")
DEFAULT_SORT = ("due_at", "-priority", "created_at")
MAX_WORDS = 16
_WORD = re.compile(r"\w+", re.UNICODE)


class BadCursor(ValueError):
    """The cursor is malformed or belongs to another query."""


def query_words(q: str) -> list[str]:
    """The words of a search query, lower-cased (punctuation separates words, as in the index)."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_WORDS]


@dataclass(frozen=True)
class TaskQuery:
    q: str | None = None
    status: str = "open"  # open | completed | all
    priority: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    tag_mode: str = "all"  # all | any
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool | None = None
    has_due: bool | None = None
    recurring: bool | None = None
    sort: tuple[str, ...] | None = None
    limit: int = 50
    cursor: str | None = None

    @property
    def search_words(self) -> list[str]:
        return query_words(self.q or "")

    @property
    def effective_sort(self) -> list[str]:
        if self.sort:
            return list(self.sort)
        if self.search_words:
            return ["relevance"]
        return list(DEFAULT_SORT)

    def signature_fields(self) -> dict[str, Any]:
        """The fields that define the result set (a cursor is valid only for the same ones)."""
        fields = dataclasses.asdict(self)
        fields.pop("cursor")
        fields.pop("limit")
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in fields.items()}


def check_sort(sort: list[str]) -> list[str]:
    """Known keys, each at most once (``-`` prefix = descending); ValueError otherwise."""
    seen: set[str] = set()
    for item in sort:
        key = item[1:] if item.startswith("-") else item
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}; use {', '.join(SORT_KEYS)}")
        if key in seen:
            raise ValueError(f"sort key {key!r} given twice")
        seen.add(key)
    return sort
