"""Ranking without a keyboard: ties by mouse and by touch, "all bad" shown where the eye is, and a stale
second tab told where the user is and offered the next task; what lands in the database is checked."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.orm import Ranking
from tests.browser.conftest import DESKTOP, PHONE, assignment_of, card_ids, log_in, wait_for_next_task, watch
from tests.browser.screens import artifact_dir
from tests.factories import (
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LONG = "A thorough answer that goes on for a while, as models do. " * 12


def _seed(tasks: int = 2) -> None:
    with session_scope() as s:
        ps = make_prompt_set(s, "pointer")
        mv = make_model_version(s, "policy-v1")
        for i in range(tasks):
            prompt = make_prompt(s, ps, f"Question {i}: how do tides work?", priority=tasks - i)
            texts = [f"{LONG} (answer {i}.{j})" for j in range(3)]
            make_comparison_set(
                s, prompt, candidates=make_candidates(s, prompt, texts, model_version=mv), overlap=1
            )


def _rank_button(page, candidate_id: int, rank: int):
    return page.locator(f".cand[data-id='{candidate_id}'] [data-set-rank='{rank}']")


def _badges(page) -> list[str]:
    return page.locator("#candidates [data-badge]").all_inner_texts()


def _in_view(page, selector: str) -> bool:
    return bool(
        page.eval_on_selector(
            selector,
            "el => { const r = el.getBoundingClientRect();"
            " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }",
        )
    )


def _ranking(assignment_id: int) -> Ranking:
    with session_scope() as s:
        return s.scalars(select(Ranking).where(Ranking.assignment_id == assignment_id)).one()


def test_mouse_clicks_record_a_tie_and_all_bad(live_server, chromium, make_user):
    _seed()
    context = chromium.new_context(viewport=DESKTOP)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, live_server, *make_user("mouse"))
    page.wait_for_selector("#task[data-ready='1']")
    aid = assignment_of(page)
    a, b, c = card_ids(page)

    # A = B ≻ C with three clicks; the cards stay where they are under the pointer.
    _rank_button(page, a, 1).click()
    _rank_button(page, c, 1).click()
    _rank_button(page, b, 1).click()
    _rank_button(page, c, 1).click()  # the pressed number again clears it
    assert _badges(page) == ["1=", "1=", "\N{EN DASH}"]  # unranked
    _rank_button(page, c, 2).click()
    assert card_ids(page) == [a, b, c]
    assert page.inner_text("#tier-summary").split() == ["A", "=", "B", "≻", "C"]
    assert _badges(page) == ["1=", "1=", "2"]
    assert _rank_button(page, a, 1).get_attribute("aria-pressed") == "true"

    # "All bad" by its key: the checkbox far below ticks, and the sticky summary row says so in view.
    page.keyboard.press("b")
    assert page.is_checked("input[name=all_bad]")
    toggle = "[data-all-bad-toggle]"
    assert page.get_attribute(toggle, "aria-pressed") == "true" and _in_view(page, toggle)
    page.click(toggle)
    assert not page.is_checked("input[name=all_bad]")
    page.click(toggle)

    page.click("#rank-form button[type=submit]")
    wait_for_next_task(page, aid)
    saved = _ranking(aid)
    assert saved.tiers == [sorted([a, b]), [c]] and saved.all_bad is True
    assert watched.errors == [] and watched.csp_violations == []
    context.close()


def test_touch_taps_record_a_tie_and_show_all_bad_at_the_bottom(live_server, chromium, make_user):
    _seed()
    context = chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, live_server, *make_user("thumb"))
    page.wait_for_selector("#task[data-ready='1']")
    aid = assignment_of(page)
    a, b, c = card_ids(page)

    _rank_button(page, b, 1).tap()
    _rank_button(page, a, 2).tap()
    _rank_button(page, c, 2).tap()
    assert page.inner_text("#tier-summary").split() == ["B", "≻", "A", "=", "C"]

    # Down at the submit button the prompt is far above, yet the ranking and "all bad" are in view.
    page.locator("#rank-form button[type=submit]").scroll_into_view_if_needed()
    assert page.evaluate("window.scrollY") > 500
    assert _in_view(page, "#tier-summary")
    page.locator("[data-all-bad-toggle]").tap()
    assert page.is_checked("input[name=all_bad]")
    assert page.get_attribute("[data-all-bad-toggle]", "aria-pressed") == "true"

    page.locator("#rank-form button[type=submit]").tap()
    wait_for_next_task(page, aid)
    assert page.evaluate("window.scrollY") == 0  # the next task opens at its top
    saved = _ranking(aid)
    assert saved.tiers == [[b], sorted([a, c])] and saved.all_bad is True
    assert watched.errors == [] and watched.csp_violations == []
    context.close()


def test_a_stale_second_tab_is_told_where_the_user_is_and_offered_the_next_task(
    live_server, chromium, make_user
):
    _seed()
    context = chromium.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    first, second = watch(context.new_page()), watch(context.new_page())
    log_in(first.page, live_server, *make_user("twotabs"))
    second.page.goto(live_server + "/")
    for w in (first, second):
        w.page.wait_for_selector("#task[data-ready='1']")
    aid = assignment_of(first.page)
    assert assignment_of(second.page) == aid
    a, b, c = card_ids(first.page)

    # The first tab ranks A ≻ B ≻ C and moves on.
    for cid, rank in ((a, 1), (b, 2), (c, 3)):
        _rank_button(first.page, cid, rank).tap()
    first.page.locator("#rank-form button[type=submit]").tap()
    next_aid = wait_for_next_task(first.page, aid)

    # The second, stale tab: skipping is refused outside the dialog, with the way on ...
    page = second.page
    page.locator("[data-open-skip]").tap()
    page.fill("#skip-dialog textarea[name=reason]", "Cannot judge tides.")
    page.locator("#skip-dialog button[type=submit]").tap()
    page.wait_for_selector("[data-next-task]:visible")
    assert "already ranked" in page.inner_text("#task-error")
    assert page.locator("#skip-dialog[open]").count() == 0
    page.locator("[data-dismiss-error]").tap()
    assert page.locator("#task-error").is_hidden()
    # ... an incomplete ranking is refused where the user is, at the bottom ...
    submit = page.locator("#rank-form button[type=submit]")
    submit.scroll_into_view_if_needed()
    submit.tap()
    assert "Rank every response first" in page.inner_text("#task-error")
    assert _in_view(page, "#task-error") and not page.locator("[data-next-task]").is_visible()
    # ... and so is a different answer (a tie): the server's message is in view, not at the top, with the
    # way on.
    for cid, rank in ((a, 1), (b, 1), (c, 2)):
        _rank_button(page, cid, rank).tap()
    submit.scroll_into_view_if_needed()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 500
    submit.tap()
    page.wait_for_selector("[data-next-task]:visible")
    assert "already ranked with a different answer" in page.inner_text("#task-error")
    assert _in_view(page, "#task-error") and page.evaluate("window.scrollY") == scrolled
    page.screenshot(path=str(artifact_dir() / "ranking-stale-tab-phone.png"))
    page.locator("[data-next-task]").tap()
    assert wait_for_next_task(page, aid) == next_aid
    assert page.locator("#task-error").is_hidden()

    # The first tab's answer stands.
    assert _ranking(aid).tiers == [[a], [b], [c]]
    for w in (first, second):
        assert w.errors == [] and w.csp_violations == []
    context.close()
