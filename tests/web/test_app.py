"""What a person does in the web app, in real Chromium against running embedded TaskFlow."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Api, check_axe, screenshot, sign_in

pytestmark = pytest.mark.web


def test_sign_in_then_quick_add_survives_a_reload(page: Any, api: Api, user: str) -> None:
    page.goto("/")
    check_axe(page)
    screenshot(page, "sign-in")
    sign_in(page, user)
    page.get_by_label("Quick add").fill("Buy oat milk #home !high")
    page.get_by_role("button", name="Add task").click()
    expect(page.get_by_role("checkbox", name="Complete Buy oat milk")).to_be_visible()
    [task] = api.tasks()
    assert (task["title"], task["tags"], task["priority"]) == ("Buy oat milk", ["home"], "high")
    page.reload()  # the token lives in sessionStorage: still signed in, never in the URL
    expect(page.get_by_role("checkbox", name="Complete Buy oat milk")).to_be_visible()
    assert "token" not in page.url and "eyJ" not in page.url
    check_axe(page)


def test_sign_in_problem_is_shown(page: Any) -> None:
    page.goto("/")
    page.get_by_label("User name").fill(" ")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Validation failed")


def test_full_editor_with_recurrence_preview_and_reminders(page: Any, api: Api, user: str) -> None:
    api.create(title="existing", tags=["work", "errands"])
    sign_in(page, user)
    page.get_by_role("button", name="New task").click()
    dialog = page.get_by_role("dialog", name="New task")
    expect(page.get_by_label("Title")).to_be_focused()
    page.get_by_label("Title").fill("Team retro")
    page.get_by_label("Description").fill("Bring the sticky notes")
    page.get_by_label("Priority").select_option("medium")
    tags = page.get_by_label("Tags")
    tags.fill("work")  # a known tag: taken from the autocomplete list at once
    tags.fill("retro,")
    expect(dialog.get_by_role("list", name="Chosen tag list")).to_contain_text("#work")
    expect(dialog.get_by_role("list", name="Chosen tag list")).to_contain_text("#retro")
    page.get_by_label("Due").fill("2030-03-25T10:30")  # a Monday
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_label("Repeat").select_option("weekly")
    dialog.get_by_role("checkbox", name="Mon").check()
    dialog.get_by_role("checkbox", name="Thu").check()
    page.get_by_label("Ends").select_option("count")
    page.get_by_label("Number of times").fill("4")
    preview = dialog.get_by_role("region", name="Next occurrences")
    # computed by the server: Thursday 28 March, then Monday 1 April (after the switch to summer time)
    expect(preview.locator("li")).to_have_count(3)
    expect(preview.locator("time").first).to_have_attribute("datetime", "2030-03-28T09:30:00Z")
    expect(preview.locator("time").nth(1)).to_have_attribute("datetime", "2030-04-01T08:30:00Z")
    page.get_by_label("Add a reminder").select_option(label="15 minutes before")
    reminders = page.get_by_role("group", name="Reminders")
    reminders.get_by_label("Amount").fill("2")
    reminders.get_by_label("Unit").select_option("days")
    reminders.get_by_role("button", name="Add offset").click()
    expect(reminders.get_by_role("listitem")).to_have_text(
        [re.compile("15 minutes before"), re.compile("2 days before")]
    )
    check_axe(page)
    screenshot(page, "editor")
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("checkbox", name="Complete Team retro")).to_be_visible()
    [task] = api.tasks("q=retro")
    assert task["description"] == "Bring the sticky notes" and task["priority"] == "medium"
    assert sorted(task["tags"]) == ["retro", "work"]
    assert task["due_at"] == "2030-03-25T09:30:00Z" and task["timezone"] == "Europe/Paris"
    assert task["recurrence"] == {"rule": "FREQ=WEEKLY;COUNT=4;BYDAY=MO,TH", "anchor": "due"}
    assert task["reminders"] == [{"offset": "-PT15M"}, {"offset": "-P2D"}]


def test_problem_details_from_the_api_are_shown_in_the_editor(page: Any, user: str) -> None:
    sign_in(page, user)
    page.get_by_role("button", name="New task").click()
    page.get_by_label("Title").fill("No due date")
    page.get_by_label("Add a reminder").select_option(label="1 hour before")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("Validation failed")
    expect(alert).to_contain_text("reminders")
    expect(alert).to_contain_text("due_at")
    check_axe(page)


def test_filters_search_sort_and_bookmarkable_url(page: Any, api: Api, user: str) -> None:
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    api.create(title="Milk and bread", tags=["shop"], priority="low")
    api.create(title="Millstone report", tags=["work"], priority="urgent", due_at=soon)
    api.create(title="Call plumber", tags=["home", "shop"], priority="high")
    api.create(title="Old invoice", due_at="2020-01-01T09:00:00Z")
    sign_in(page, user)
    rows = page.get_by_role("list", name="Tasks").get_by_role("checkbox")
    expect(rows).to_have_count(4)

    page.get_by_label("Search tasks").fill("mil")  # prefix matching, as the API does
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(r"[?&]q=mil"))

    page.get_by_label("Importance").select_option("high")
    expect(rows).to_have_count(1)
    expect(page.get_by_role("checkbox", name="Complete Millstone report")).to_be_visible()

    page.get_by_label("Search tasks").fill("")
    page.get_by_label("Importance").select_option("")
    page.get_by_role("button", name=re.compile(r"^#shop")).click()
    expect(rows).to_have_count(2)
    page.get_by_role("button", name=re.compile(r"^#home")).click()
    expect(rows).to_have_count(1)  # both tags
    page.get_by_label("Match").select_option("any")
    expect(rows).to_have_count(2)

    page.get_by_role("button", name=re.compile(r"^#shop")).click()
    page.get_by_role("button", name=re.compile(r"^#home")).click()
    page.get_by_label("When").select_option("overdue")
    expect(rows).to_have_count(1)
    expect(page.get_by_role("checkbox", name="Complete Old invoice")).to_be_visible()
    page.get_by_label("When").select_option("range")
    page.get_by_label("Range start").fill("2019-12-31")
    page.get_by_label("Range end").fill("2020-01-01")
    expect(page).to_have_url(re.compile(r"from=2019-12-31&to=2020-01-01"))
    expect(rows).to_have_count(1)
    page.get_by_label("Range end").fill("2030-12-31")
    expect(rows).to_have_count(2)  # and Millstone report, due in two days
    page.get_by_label("When").select_option("")
    page.get_by_label("Sort by").select_option("title")
    expect(rows.first).to_have_accessible_name("Complete Call plumber")
    check_axe(page)
    screenshot(page, "list")

    bookmarked = page.url
    assert "sort=title" in bookmarked
    page.goto(bookmarked)
    expect(page.get_by_label("Sort by")).to_have_value("title")
    expect(rows.first).to_have_accessible_name("Complete Call plumber")


def test_infinite_scroll_loads_the_next_page(page: Any, api: Api, user: str) -> None:
    for i in range(45):
        api.create(title=f"Chore {i:02d}")
    sign_in(page, user)
    rows = page.get_by_role("list", name="Tasks").get_by_role("checkbox")
    expect(rows).to_have_count(30)
    rows.last.scroll_into_view_if_needed()
    page.mouse.wheel(0, 5000)
    expect(rows).to_have_count(45)


def test_complete_shows_the_next_occurrence_and_undo_reopens(page: Any, api: Api, user: str) -> None:
    api.create(title="Water plants", due_at="2030-01-06T08:00:00Z", recurrence={"rule": "FREQ=WEEKLY"})
    sign_in(page, user)
    page.get_by_role("checkbox", name="Complete Water plants").check()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Completed “Water plants”")
    # the recurrence function creates occurrence 2 a week later; the list shows it without a reload
    expect(page.get_by_text("repeats (#2)")).to_be_visible()
    nxt = [t for t in api.tasks("status=all") if t["occurrence"] == 2]
    assert [t["due_at"] for t in nxt] == ["2030-01-13T08:00:00Z"]
    status.get_by_role("button", name="Undo").click()
    expect(status).to_contain_text("Reopened “Water plants”")
    first = [t for t in api.tasks() if t["occurrence"] == 1]
    assert first[0]["status"] == "open"


def test_delete_with_undo_then_for_good(page: Any, api: Api, user: str) -> None:
    api.create(title="Keep me")
    api.create(title="Drop me")
    sign_in(page, user)
    page.get_by_role("button", name="Delete Keep me").click()
    expect(page.get_by_role("checkbox", name="Complete Keep me")).to_have_count(0)
    page.get_by_role("status").get_by_role("button", name="Undo").click()
    expect(page.get_by_role("checkbox", name="Complete Keep me")).to_be_visible()
    page.get_by_role("button", name="Delete Drop me").click()
    expect(page.get_by_role("checkbox", name="Complete Drop me")).to_have_count(0)
    deadline = time.monotonic() + 15
    while "Drop me" in [t["title"] for t in api.tasks()] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [t["title"] for t in api.tasks()] == ["Keep me"]


def test_conflict_is_explained_and_the_task_reloaded(page: Any, api: Api, user: str) -> None:
    task = api.create(title="Plan trip", description="draft")
    sign_in(page, user)
    page.get_by_role("button", name="Plan trip", exact=True).click()
    page.get_by_label("Description").fill("my edit")
    # meanwhile, another device changes the task
    changed = api.http.patch(f"/v1/tasks/{task['id']}", json={"title": "Plan trip to Lisbon"})
    assert changed.status_code == 200
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("dialog").get_by_role("alert")
    expect(alert).to_contain_text("This task changed since you opened it")
    check_axe(page)
    screenshot(page, "conflict")
    page.get_by_role("button", name="Reload task").click()
    expect(page.get_by_label("Title")).to_have_value("Plan trip to Lisbon")
    expect(page.get_by_label("Description")).to_have_value("draft")
    page.get_by_label("Description").fill("flights booked")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    [saved] = api.tasks()
    assert (saved["title"], saved["description"], saved["version"]) == ("Plan trip to Lisbon", "flights booked", 3)


def test_a_reminder_arrives_in_the_inbox_without_a_reload(page: Any, api: Api, user: str) -> None:
    sign_in(page, user, "/?poll=1000")
    inbox = page.get_by_role("button", name=re.compile(r"^Inbox"))
    expect(inbox).to_have_accessible_name("Inbox, 0 unread")
    polls: list[int] = []
    page.on("response", lambda r: polls.append(r.status) if "/v1/notifications" in r.url else None)
    fire = datetime.now(UTC) + timedelta(seconds=3)
    api.create(title="Stand-up call", reminders=[{"at": fire.isoformat()}])
    expect(inbox).to_have_accessible_name("Inbox, 1 unread", timeout=20_000)
    expect(page.get_by_role("status")).to_contain_text("Reminder: “Stand-up call”")
    assert 304 in polls  # an unchanged inbox costs a bodiless 304 (ETag / If-None-Match)
    inbox.click()
    dialog = page.get_by_role("dialog", name="Inbox")
    expect(dialog).to_contain_text("Stand-up call")
    check_axe(page)
    screenshot(page, "inbox")
    page.keyboard.press("Escape")
    expect(inbox).to_have_accessible_name("Inbox, 0 unread")
    expect(inbox).to_be_focused()  # focus back on the opener
    inbox.click()
    page.get_by_role("button", name="Open Stand-up call").click()  # the reminder's task, in the editor
    expect(page.get_by_role("dialog", name="Edit task").get_by_label("Title")).to_have_value("Stand-up call")


def test_history_and_webhook_setting(page: Any, api: Api, user: str) -> None:
    task = api.create(title="Renew passport")
    api.http.patch(f"/v1/tasks/{task['id']}", json={"priority": "high"})
    sign_in(page, user)
    page.get_by_role("button", name="History of Renew passport").click()
    history = page.get_by_role("dialog", name=re.compile("History"))
    expect(history.get_by_role("listitem").filter(has_text="Created")).to_have_count(1)
    expect(history).to_contain_text("priority")
    check_axe(page)
    screenshot(page, "history")
    page.keyboard.press("Escape")

    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Webhook URL").fill("ftp://example.com/hook")
    page.get_by_role("button", name="Set webhook").click()
    expect(page.get_by_role("dialog").get_by_role("alert")).to_contain_text("webhook_url")
    page.get_by_label("Webhook URL").fill("http://127.0.0.1:9/hooks/taskflow")
    page.get_by_role("button", name="Set webhook").click()
    expect(page.get_by_role("dialog").get_by_role("status")).to_contain_text("Webhook updated")
    assert api.http.get("/v1/settings").json() == {"webhook_url": "http://127.0.0.1:9/hooks/taskflow"}
    check_axe(page)


def test_keyboard_flow(page: Any, api: Api, user: str) -> None:
    api.create(title="Alpha", due_at="2030-01-01T09:00:00Z")
    api.create(title="Bravo", due_at="2030-01-02T09:00:00Z")
    sign_in(page, user)
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("n")
    expect(page.get_by_label("Title")).to_be_focused()
    page.keyboard.type("Charlie")
    # Tab stays inside the dialog (focus trap)
    for _ in range(40):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.get_by_label("Title").press("Enter")  # submits the form
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("checkbox", name="Complete Charlie")).to_be_visible()

    page.keyboard.press("/")
    expect(page.get_by_label("Search tasks")).to_be_focused()
    page.locator("body").click(position={"x": 5, "y": 300})
    # the list: Charlie (just added, on top), Alpha, Bravo
    for key in "jjkj":
        page.keyboard.press(key)
    expect(page.locator("li.task.selected")).to_contain_text("Bravo")
    page.keyboard.press("x")
    expect(page.get_by_role("checkbox", name="Complete Bravo")).to_have_count(0)
    assert [t["title"] for t in api.tasks("status=completed")] == ["Bravo"]
    page.keyboard.press("e")
    expect(page.get_by_role("dialog", name="Edit task")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_contain_text("new task")
    check_axe(page)
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()


def test_phone_layout(phone: Any, api: Api, user: str) -> None:
    api.create(title="Pick up parcel", tags=["errands"], due_at="2030-05-01T16:00:00Z", priority="high")
    sign_in(phone, user)
    phone.get_by_label("Quick add").fill("Text Sam #family")
    phone.get_by_role("button", name="Add task").click()
    expect(phone.get_by_role("checkbox", name="Complete Text Sam")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    check_axe(phone)
    screenshot(phone, "phone-list")
    expect(phone.get_by_label("Show")).to_be_hidden()  # the filters fold away on a phone
    phone.get_by_role("button", name="Filters").click()
    phone.get_by_label("Importance").select_option("high")
    expect(phone.get_by_role("list", name="Tasks").get_by_role("checkbox")).to_have_count(1)
    expect(phone.get_by_role("button", name="Filters (on)")).to_have_attribute("aria-expanded", "true")
    check_axe(phone)
    phone.get_by_role("button", name="New task").click()
    expect(phone.get_by_label("Title")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    check_axe(phone)
    screenshot(phone, "phone-editor")


def test_dark_theme(page: Any, api: Api, user: str) -> None:
    api.create(title="Night owl", tags=["late"], priority="urgent", due_at="2020-01-01T22:00:00Z")
    sign_in(page, user)
    theme = page.get_by_role("button", name="Dark theme")
    theme.click()
    expect(theme).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    check_axe(page)
    screenshot(page, "list-dark")
    page.get_by_role("button", name="Night owl", exact=True).click()
    page.get_by_label("Repeat").select_option("daily")
    expect(page.get_by_role("region", name="Next occurrences").locator("li")).to_have_count(5)
    check_axe(page)  # the editor's colours in the dark theme too
    page.keyboard.press("Escape")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"


def test_editing_a_series_monthly_by_weekday_until_a_date_and_an_exact_reminder(page: Any, api: Api, user: str) -> None:
    api.create(
        title="Book club",
        due_at="2030-01-15T18:00:00Z",  # the third Tuesday of January
        timezone="UTC",
        recurrence={"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "anchor": "due"},
    )
    sign_in(page, user)
    page.get_by_role("button", name="Book club", exact=True).click()
    dialog = page.get_by_role("dialog", name="Edit task")
    expect(page.get_by_label("Repeat")).to_have_value("weekly")  # the stored rule, read back into the form
    expect(page.get_by_label(re.compile("^Every"))).to_have_value("2")
    expect(dialog.get_by_role("checkbox", name="Tue")).to_be_checked()
    page.get_by_label("Repeat").select_option("monthly")
    page.get_by_label(re.compile("^Every")).fill("1")
    dialog.get_by_role("radio", name="the third Tuesday").check()
    page.get_by_label("Ends").select_option("until")
    page.get_by_label("Last date").fill("2030-04-30")
    preview = dialog.get_by_role("region", name="Next occurrences")
    expect(preview.locator("time")).to_have_count(3)  # February, March and April; the series ends there
    expect(preview.locator("time").last).to_have_attribute("datetime", "2030-04-16T18:00:00Z")
    page.get_by_label("Remind at a date and time").fill("2030-01-15T08:30:00")
    dialog.get_by_role("button", name="Add time").click()
    expect(page.get_by_role("group", name="Reminders").get_by_role("listitem")).to_have_count(1)
    page.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    [task] = api.tasks()
    assert task["recurrence"] == {"rule": "FREQ=MONTHLY;UNTIL=20300430;BYDAY=3TU", "anchor": "due"}
    assert task["reminders"] == [{"at": "2030-01-15T08:30:00Z"}]
    assert task["version"] == 2


def test_a_completed_task_is_reopened_from_the_completed_view(page: Any, api: Api, user: str) -> None:
    task = api.create(title="Return library book")
    api.http.post(f"/v1/tasks/{task['id']}/complete")
    sign_in(page, user, "/?status=completed")
    expect(page.get_by_label("Show")).to_have_value("completed")
    box = page.get_by_role("checkbox", name="Complete Return library book")
    expect(box).to_be_checked()
    box.click()  # the row leaves this view once the task is open again
    expect(page.get_by_role("status")).to_contain_text("Reopened “Return library book”")
    expect(box).to_have_count(0)
    assert [t["status"] for t in api.tasks()] == ["open"]
