"""Around the app in headless Chromium: /docs and /redoc work offline under the app's CSP, and no page
asks for something that is not there (the favicon included)."""

from __future__ import annotations

from typing import Any

import pytest

from app.orm import Role
from tests.browser.conftest import log_in, watch

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def offline(context: Any, base: str) -> list[str]:
    """Refuse every request that leaves the app (as with no internet); returns the list of those tried."""
    tried: list[str] = []

    def handle(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            tried.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return tried


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/docs", ".opblock-summary-path[data-path='/api/v1/tasks/next']"),
        ("/redoc", "text=api/v1/tasks/next"),
    ],
)
def test_the_api_docs_render_their_operations_offline_under_the_csp(live_server, chromium, path, operation):
    from playwright.sync_api import expect

    context = chromium.new_context()
    tried = offline(context, live_server)
    watched = watch(context.new_page())
    page = watched.page
    response = page.goto(live_server + path)
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(operation).first).to_be_attached(timeout=30_000)
    # Wait for what renders last (ReDoc's menu footer once drew a logo from its CDN, which the CSP refused).
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    assert tried == []
    assert watched.errors == [] and watched.csp_violations == []
    context.close()


def test_no_page_asks_for_a_missing_file(live_server, chromium, make_user):
    name, pw = make_user("boss", Role.admin)
    context = chromium.new_context()
    watched = watch(context.new_page())
    page = watched.page
    failed: list[str] = []
    console_errors: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(live_server + "/login")
    log_in(page, live_server, name, pw, "/")
    for path in ("/", "/admin", "/admin/rounds", "/admin/users", "/admin/quality", "/docs"):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
    assert failed == [] and console_errors == []
    icon = page.request.get(live_server + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
    assert page.locator("link[rel=icon]").get_attribute("href") == "/static/favicon.svg"
    context.close()
