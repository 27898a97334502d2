"""A one-time password or token on the admin's Users pages has a Copy button that puts it on the clipboard."""

from __future__ import annotations

import pytest

from app.orm import Role
from tests.browser.conftest import log_in, watch

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_the_new_users_password_and_a_reset_one_copy_to_the_clipboard(live_server, chromium, make_user):
    from playwright.sync_api import expect

    name, pw = make_user("boss", Role.admin)
    context = chromium.new_context(permissions=["clipboard-read", "clipboard-write"])
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, live_server, name, pw, "/admin/users")

    page.fill("input[name=username]", "newcomer")
    page.click("form[action='/admin/users'] button[type=submit]")
    secret = page.locator("[data-secret]").inner_text().strip()
    assert len(secret) >= 12
    page.click("button[data-copy]")
    expect(page.locator("[data-copy-status]")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # The same button where a password is reset (or a token issued) on the user's own page.
    page.click("#users a:text-is('newcomer')")
    page.click("button[data-action=password]")
    reset = page.locator("[data-secret]").inner_text().strip()
    assert reset != secret
    page.click("button[data-copy]")
    expect(page.locator("[data-copy-status]")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == reset
    assert watched.errors == [] and watched.csp_violations == []
    context.close()

    # What was copied is the password that logs in.
    other = chromium.new_context()
    newcomer = other.new_page()
    log_in(newcomer, live_server, "newcomer", reset, "/")
    other.close()
