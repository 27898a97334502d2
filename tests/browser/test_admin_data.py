"""The admin import form in headless Chromium: an upload shows its summary, a bad file its line, in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.orm import Prompt, Ranking, Role
from tests.browser.conftest import log_in, watch

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _count(model) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_admin_uploads_a_file_and_sees_the_summary_then_a_bad_line(
    live_server, chromium, make_user, tmp_path: Path
):
    from playwright.sync_api import expect

    name, pw = make_user("root", Role.admin)
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"prompt": "<i>q</i>", "chosen": "yes", "rejected": "no"}\n')
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "fine", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": 5}\n')

    context = chromium.new_context()
    watched = watch(context.new_page())
    page, errors = watched.page, watched.errors
    log_in(page, live_server, name, pw, "/admin/import")
    page.evaluate("window.__samePage = true")

    page.set_input_files("input[name=file]", str(good))
    page.select_option("select[name=kind]", "pairs")
    page.fill("input[name=prompt_set]", "browser")
    page.click('form[action^="/admin/import"] button[type=submit]')
    expect(page.locator("#import-result [role=status]")).to_contain_text("into prompt set browser")
    expect(page.locator('#import-result [data-summary="rankings"]')).to_have_text("1")

    page.set_input_files("input[name=file]", str(bad))
    page.click('form[action^="/admin/import"] button[type=submit]')
    # A 422 answer is swapped in too, so the admin sees which line to fix.
    expect(page.locator("#import-result [role=alert]")).to_contain_text("line 2: chosen")
    assert page.evaluate("window.__samePage") is True, "the form reloaded the page instead of using htmx"
    assert errors == []
    context.close()
    assert (_count(Prompt), _count(Ranking)) == (1, 1)
