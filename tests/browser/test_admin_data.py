"""The admin import form in headless Chromium: an upload shows its summary, a bad file its line, in place."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.orm import Prompt, Ranking, Role

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server_url(clean_db: str) -> Iterator[str]:
    """The real app under uvicorn in a background thread, on the test database."""
    import uvicorn

    from app.main import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _count(model) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_admin_uploads_a_file_and_sees_the_summary_then_a_bad_line(server_url, make_user, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium")
    name, pw = make_user("root", Role.admin)
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"prompt": "<i>q</i>", "chosen": "yes", "rejected": "no"}\n')
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "fine", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": 5}\n')

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server_url}/login?next=/admin/import")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", pw)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server_url}/admin/import")
        page.evaluate("window.__samePage = true")

        page.set_input_files("input[name=file]", str(good))
        page.select_option("select[name=kind]", "pairs")
        page.fill("input[name=prompt_set]", "browser")
        page.click('form[action="/admin/import"] button[type=submit]')
        expect(page.locator("#import-result [role=status]")).to_contain_text("into prompt set browser")
        expect(page.locator('#import-result [data-summary="rankings"]')).to_have_text("1")

        page.set_input_files("input[name=file]", str(bad))
        page.click('form[action="/admin/import"] button[type=submit]')
        # A 422 answer is swapped in too, so the admin sees which line to fix.
        expect(page.locator("#import-result [role=alert]")).to_contain_text("line 2: chosen")
        assert page.evaluate("window.__samePage") is True, "the form reloaded the page instead of using htmx"
        assert errors == []
        browser.close()
    assert (_count(Prompt), _count(Ranking)) == (1, 1)
