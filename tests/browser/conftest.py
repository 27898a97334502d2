"""Shared browser-test fixtures: the real app under uvicorn on the test database, and headless Chromium.

Modules may still define their own fixtures of the same names; theirs win.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.live import serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# The two screens issue 11 names: a laptop and a phone.
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def live_server(clean_db: str) -> Iterator[str]:
    """The real app under uvicorn in a background thread, on the test database (DATABASE_URL)."""
    from app.main import create_app

    with serve(create_app()) as url:
        yield url


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's) driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Watched:
    """A page plus what it reported: uncaught errors, CSP violations, dialogs opened."""

    page: Any
    errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def watch(page: Any) -> Watched:
    watched = Watched(page)
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: watched.errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            watched.csp_violations.append(msg.text)

    page.on("console", on_console)

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return watched


def log_in(page: Any, base: str, username: str, password: str, next_path: str = "/") -> None:
    """Log in through the form and wait until the login has redirected to `next_path`."""
    page.goto(f"{base}/login?next={next_path}")
    submit_login(page, username, password)
    page.wait_for_url(f"{base}{next_path}")


def submit_login(page: Any, username: str, password: str) -> None:
    """Fill in and send the login form the page shows."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def assignment_of(page: Any) -> int:
    """The assignment id of the task the ranking page shows."""
    return int(page.locator("#task").get_attribute("data-assignment"))


def wait_for_next_task(page: Any, previous: int) -> int:
    """Wait until the ranking page shows a task other than `previous`, ready for input; its assignment id."""
    page.wait_for_function(
        "prev => { const t = document.querySelector('#task'); return t && t.dataset.assignment"
        " && t.dataset.assignment !== String(prev) && t.dataset.ready === '1'; }",
        arg=previous,
    )
    return assignment_of(page)


def card_ids(page: Any) -> list[int]:
    """Candidate ids of the ranking page's cards, top to bottom."""
    ids = page.locator("#candidates .cand").evaluate_all("els => els.map(e => e.dataset.id)")
    return [int(x) for x in ids]
