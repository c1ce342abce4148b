"""The limits that protect the service, in one list: the API and the use cases enforce them, the
OpenAPI document and docs/limits.md state them. A request that hits one gets a problem+json answer
that names it: the limits of one field (title, description, tags or reminders of a task) in the
problem's ``errors`` (field and message), all others in its ``limit`` member (``{"name", "max",
"unit"}``)."""

from __future__ import annotations

from dataclasses import dataclass

from taskflow.domain import model


@dataclass(frozen=True)
class Limit:
    name: str
    max: int
    unit: str
    what: str


BODY = Limit("body_bytes", 1024 * 1024, "bytes", "a request body (413)")
CALENDAR = Limit("calendar_bytes", 5 * 1024 * 1024, "bytes", "an iCalendar import body (413)")
QUERY_STRING = Limit("query_string_bytes", 2048, "bytes", "the query string of any request (414)")
SEARCH = Limit("search_chars", 500, "characters", "the search text q of GET /v1/tasks (422)")
PAGE = Limit("page_size", 200, "tasks", "limit of GET /v1/tasks (422)")
INBOX_PAGE = Limit("inbox_page_size", 500, "notifications", "limit of GET /v1/notifications (422)")
TITLE = Limit("title_chars", model.TITLE_MAX, "characters", "a task's title (422 naming the field)")
DESCRIPTION = Limit(
    "description_chars", model.DESCRIPTION_MAX, "characters", "a task's description (422 naming the field)"
)
TAGS_PER_TASK = Limit("tags_per_task", model.TAGS_MAX, "tags", "tags on one task (422 naming the field)")
REMINDERS_PER_TASK = Limit(
    "reminders_per_task", model.REMINDERS_MAX, "reminders", "reminders on one task (422 naming the field)"
)
OPEN_TASKS = Limit("open_tasks_per_user", 10_000, "tasks", "a user's open tasks (422 on create or reopen)")
TAGS_PER_USER = Limit("tags_per_user", 1_000, "distinct tags", "distinct tags over a user's tasks (422)")
#: Reminders are bounded per task, so a user's pending reminders are at most OPEN_TASKS x 10.
PENDING_REMINDERS = Limit(
    "pending_reminders_per_user",
    OPEN_TASKS.max * model.REMINDERS_MAX,
    "reminders",
    "a user's reminders not yet fired (follows from the two limits above)",
)
OUTGOING_TIMEOUT = Limit(
    "outgoing_call_seconds", 10, "seconds", "every outgoing HTTP or gRPC call: webhook, JWKS, Dapr sidecar"
)
DATABASE_TIMEOUT = Limit("database_socket_seconds", 30, "seconds", "a database connect or read")

ALL = (
    BODY,
    CALENDAR,
    QUERY_STRING,
    SEARCH,
    PAGE,
    INBOX_PAGE,
    TITLE,
    DESCRIPTION,
    TAGS_PER_TASK,
    REMINDERS_PER_TASK,
    OPEN_TASKS,
    TAGS_PER_USER,
    PENDING_REMINDERS,
    OUTGOING_TIMEOUT,
    DATABASE_TIMEOUT,
)


@dataclass(frozen=True)
class Quotas:
    """The per-user limits in force (the defaults above; an operator may lower or raise them)."""

    open_tasks: int = OPEN_TASKS.max
    tags: int = TAGS_PER_USER.max


@dataclass(frozen=True)
class Usage:
    """What one user holds now, as the quotas count it."""

    open_tasks: int
    tags: frozenset[str]


class LimitExceeded(Exception):
    """A request would go over ``limit`` (``maximum`` is the value in force)."""

    def __init__(self, limit: Limit, maximum: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.maximum = maximum
        self.message = message


def check(usage: Usage, quotas: Quotas, *, new_open: int, tags: list[str]) -> None:
    """Raise LimitExceeded when ``new_open`` more open tasks and ``tags`` would go over ``quotas``."""
    if new_open and usage.open_tasks + new_open > quotas.open_tasks:
        raise LimitExceeded(OPEN_TASKS, quotas.open_tasks, f"at most {quotas.open_tasks} open tasks per user")
    unseen = set(tags) - usage.tags
    if unseen and len(usage.tags) + len(unseen) > quotas.tags:
        raise LimitExceeded(TAGS_PER_USER, quotas.tags, f"at most {quotas.tags} distinct tags per user")
