"""A search with more matches than one relevance window (``search.WINDOW``, 500 in production; 3
here) is ranked window by window, newest matches first, and its pages still walk every match
exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from taskflow.adapters import search
from tests.conftest import auth
from tests.functions.test_tasks_api import walk_pages

# oldest first: (title, description); "report" in the title outranks "report" in the description
TASKS = [
    ("report one", ""),
    ("call", "report"),
    ("report three", ""),
    ("write", "report"),
    ("report five", ""),
    ("fax", "report"),
    ("report seven", ""),
    ("unrelated", "nothing here"),
]
# windows of 3, newest first: {seven, fax, five}, {write, three, call}, {one}; in each, title
# matches first, ties in creation order
EXPECTED = ["report five", "report seven", "fax", "report three", "call", "write", "report one"]


@pytest.fixture
def reports(client: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(search, "WINDOW", 3)
    for title, description in TASKS:
        resp = client.post("/v1/tasks", json={"title": title, "description": description}, headers=auth())
        assert resp.status_code == 201
    return client


def test_one_page_ranks_each_window_newest_window_first(reports: Any) -> None:
    page = reports.get("/v1/tasks?q=REPORT&limit=200", headers=auth()).get_json()
    assert [t["title"] for t in page["items"]] == EXPECTED
    assert page["next_cursor"] is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_pages_walk_every_match_once_across_windows(reports: Any, limit: int) -> None:
    assert walk_pages(reports, "q=rep", limit) == EXPECTED


def test_least_relevant_first_within_each_window(reports: Any) -> None:
    assert walk_pages(reports, "q=report&sort=-relevance", 2) == [
        "fax",
        "report five",
        "report seven",
        "call",
        "write",
        "report three",
        "report one",
    ]


def test_tasks_created_between_pages_do_not_shift_the_window(reports: Any, db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite's bm25 scores change with every new document, and a relevance cursor with them")
    first = reports.get("/v1/tasks?q=report&limit=2", headers=auth()).get_json()
    assert [t["title"] for t in first["items"]] == EXPECTED[:2]
    resp = reports.post("/v1/tasks", json={"title": "report eight"}, headers=auth())
    assert resp.status_code == 201
    rest = walk_pages(reports, "q=report", 2, first["next_cursor"])
    assert rest == EXPECTED[2:]
