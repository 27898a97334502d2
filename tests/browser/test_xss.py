"""Script in prompts, completions, rationales, skip reasons and names stays text on every page.

Each payload would set window.__xss (or open a dialog) if it ran. The ranking page and every admin page
that shows such data are loaded in headless Chromium, which must report no script run, no injected
element, no dialog and no Content-Security-Policy violation (which would mean markup got through the
escaping and only the policy stopped it) — and the payloads must be visible as text.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.annotation import service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.db import session_scope
from app.orm import ModelKind, ModelStatus, Role, Round, RoundKind, RoundStatus, User
from app.projects.service import join_default
from tests.browser.conftest import log_in, watch
from tests.factories import (
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAYLOADS = [
    "<script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=1>",
    '"><svg onload=window.__xss=1>',
    '<a href="javascript:window.__xss=1">click me</a>',
    '\'><iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    "<body onload=alert(1)>{{7*7}}",
]
HOSTILE_USER = "<img src=x onerror=window.__xss=1>"  # bypasses the username rule, as a legacy row could

INJECTED = """() => ({
  xss: typeof window.__xss !== 'undefined',
  img: document.querySelectorAll('img[src="x"]').length,
  svgOnload: [...document.querySelectorAll('svg')].filter(s => s.hasAttribute('onload')).length,
  script: [...document.scripts].filter(s => s.textContent.includes('__xss')).length,
  jsLinks: document.querySelectorAll('a[href^="javascript:"]').length,
  iframes: document.querySelectorAll('iframe').length,
  handlers: [...document.querySelectorAll('*')]
    .filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
})"""
CLEAN = {"xss": False, "img": 0, "svgOnload": 0, "script": 0, "jsLinks": 0, "iframes": 0, "handlers": 0}


def _seed(make_user) -> dict[str, object]:
    admin = make_user("root", Role.admin)
    annotator = make_user("ann")
    settings = get_settings()
    with session_scope() as s:
        ps = make_prompt_set(s, PAYLOADS[1][:200], priority=5)
        mv = make_model_version(s, PAYLOADS[2], kind=ModelKind.policy, status=ModelStatus.active)
        # Ranked by two annotators first (highest priority), then one skipped and left for the page.
        ranked_prompt = make_prompt(s, ps, " ".join(PAYLOADS), priority=3)
        cands = make_candidates(s, ranked_prompt, PAYLOADS, model_version=mv)
        ranked_set = make_comparison_set(s, ranked_prompt, candidates=cands[:4], overlap=2)
        shown_prompt = make_prompt(s, ps, PAYLOADS[0] + " Which answer is best?", priority=2)
        shown_set = make_comparison_set(
            s, shown_prompt, candidates=make_candidates(s, shown_prompt, PAYLOADS[:5], model_version=mv)
        )
        hostile = User(username=HOSTILE_USER, role=Role.annotator, password_hash=None)
        s.add(hostile)
        s.flush()
        # Written straight to the table like a legacy row, so it joins the default project by hand.
        join_default(s, hostile.id)
        for user in (s.scalars(select(User).where(User.username == "ann")).one(), hostile):
            task = service.next_task(s, settings, user)
            assert task is not None and task.assignment.set_id == ranked_set.id
            ids = [c.id for c in task.candidates]
            body = RankingIn(
                assignment_id=task.assignment.id,
                tiers=[[i] for i in ids],
                flags={str(ids[0]): ["unsafe"]},
                rationale=" ".join(PAYLOADS),
            )
            service.submit_ranking(s, settings, user, body)
        task = service.next_task(s, settings, hostile)
        assert task is not None and task.assignment.set_id == shown_set.id
        service.skip_task(s, hostile, task.assignment.id, PAYLOADS[4])
        failed = Round(kind=RoundKind.train, status=RoundStatus.failed, error=" ".join(PAYLOADS), config={})
        s.add(failed)
        s.flush()
        return {"admin": admin, "annotator": annotator, "round": failed.id, "hostile": hostile.id}


def _assert_inert(watched, url: str) -> None:
    page = watched.page
    page.wait_for_load_state("networkidle")
    assert page.evaluate(INJECTED) == CLEAN, url
    assert watched.dialogs == [], (url, watched.dialogs)
    assert watched.csp_violations == [], (url, watched.csp_violations)
    assert watched.errors == [], (url, watched.errors)


def test_hostile_text_renders_inert_on_the_ranking_and_admin_pages(live_server, chromium, make_user):
    seeded = _seed(make_user)

    # The annotator's ranking page: prompt and candidates, as text.
    context = chromium.new_context()
    watched = watch(context.new_page())
    log_in(watched.page, live_server, *seeded["annotator"])  # type: ignore[misc]
    page = watched.page
    page.wait_for_selector("#task[data-assignment]")
    _assert_inert(watched, "/")
    assert PAYLOADS[0] in page.inner_text(".prompt-text")
    shown = page.inner_text("#candidates")
    assert all(p in shown for p in PAYLOADS[:5])
    context.close()

    # Every admin page that shows prompts, completions, rationales, reasons, names or errors.
    context = chromium.new_context()
    watched = watch(context.new_page())
    log_in(watched.page, live_server, *seeded["admin"], next_path="/admin")  # type: ignore[misc]
    pages = [
        "/admin",
        "/admin/import",
        "/admin/export",
        "/admin/rounds",
        f"/admin/rounds/{seeded['round']}",
        "/admin/models",
        "/admin/models/compare",
        "/admin/leaderboard",
        "/admin/annotators",
        f"/admin/annotators/{seeded['hostile']}",
        "/admin/users",
        f"/admin/users/{seeded['hostile']}",
        "/admin/data",
        "/admin/data/rankings",
        "/admin/data/flags",
        "/admin/quality",
        "/admin/quality/consensus",
    ]
    seen_text = ""
    for path in pages:
        response = watched.page.goto(live_server + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        _assert_inert(watched, path)
        seen_text += watched.page.inner_text("body")
    # The hostile strings really were on these pages, as text.
    assert HOSTILE_USER in seen_text
    assert PAYLOADS[0] in seen_text and PAYLOADS[4] in seen_text
    context.close()


# Markdown's own ways in: link and image targets, autolinks, raw HTML inside emphasis, tables and titles.
MD_PAYLOADS = [
    "[click me](javascript:window.__xss=1) and [again](JaVaScRiPt:window.__xss=1)",
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3M9MTwvc2NyaXB0Pg==) <javascript:window.__xss=1>",
    "![pic](https://tracker.invalid/pixel.png) ![x](x)",
    "```html\n<script>window.__xss=1</script>\n```\n**<img src=x onerror=window.__xss=1>**",
    "| a | <img src=x onerror=window.__xss=1> |\n|---|---|\n| <svg onload=window.__xss=1> | b |",
    '[fine](https://example.org "t\\" onmouseover=\\"window.__xss=1") <details open ontoggle=window.__xss=1>',
]

MD_LINKS = (
    """() => [...document.querySelectorAll('.md a')].map(a => [a.getAttribute('href'), a.rel, a.target])"""
)


def test_markdown_in_model_text_renders_inert(live_server, chromium, make_user):
    admin = make_user("root", Role.admin)
    annotator = make_user("ann")
    settings = get_settings()
    with session_scope() as s:
        ps = make_prompt_set(s, "markdown")
        mv = make_model_version(s, "policy-md", kind=ModelKind.policy, status=ModelStatus.active)
        flagged = make_prompt(s, ps, "\n\n".join(MD_PAYLOADS), priority=2)
        cands = make_candidates(s, flagged, MD_PAYLOADS[:4], model_version=mv)
        make_comparison_set(s, flagged, candidates=cands, overlap=1)
        shown = make_prompt(s, ps, MD_PAYLOADS[5] + "\n\n" + MD_PAYLOADS[0], priority=1)
        make_comparison_set(
            s, shown, candidates=make_candidates(s, shown, MD_PAYLOADS[2:], model_version=mv), overlap=1
        )
        # The admin's moderation page shows flagged candidates in full: flag every one of the first set.
        user = s.scalars(select(User).where(User.username == "ann")).one()
        task = service.next_task(s, settings, user)
        assert task is not None
        ids = [c.id for c in task.candidates]
        body = RankingIn(
            assignment_id=task.assignment.id, tiers=[ids], flags={str(i): ["unsafe"] for i in ids}
        )
        service.submit_ranking(s, settings, user, body)

    for who, path in ((annotator, "/"), (admin, "/admin/data/flags")):
        context = chromium.new_context()
        watched = watch(context.new_page())
        log_in(watched.page, live_server, *who, next_path=path)  # type: ignore[misc]
        page = watched.page
        _assert_inert(watched, path)
        assert page.locator(".md").count() >= 4, path  # rendered as Markdown, not shown as plain text
        assert page.locator(".md pre code, .md table, .md strong").count() >= 2, path
        assert page.locator(".md img, .md details, .md svg, .md script").count() == 0, path
        links = page.evaluate(MD_LINKS)
        # Only the real web links became links, opening apart from the page, without an opener or referrer.
        assert links and all(href.startswith("https://") for href, _, _ in links), (path, links)
        assert all({"noopener", "nofollow"} <= set(rel.split()) and tgt == "_blank" for _, rel, tgt in links)
        context.close()
