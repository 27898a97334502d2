"""The ranking page in headless Chromium against a real uvicorn server and the test database.

Ranks one task by drag, one by keyboard with a tie, skips one, and checks that each next task arrives
without a page reload and that the database holds exactly what was done.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.orm import Assignment, AssignmentStatus, Ranking, Skip
from tests.browser.conftest import DESKTOP, assignment_of, card_ids, submit_login, wait_for_next_task, watch
from tests.browser.screens import screenshot_dir
from tests.factories import (
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOT = screenshot_dir() / "ranking.png"

LONG_THREAD_ANSWER = "\n".join(
    [
        "Great question! Let's go through it carefully.",
        "",
        "1. A **process** is an instance of a running program. The operating system gives each process",
        "   its own virtual address space, file descriptors and security context.",
        "2. A **thread** is a unit of execution *inside* a process. All threads of a process share its",
        "   memory and open files, but each has its own stack and registers.",
        "3. Creating a process is comparatively expensive (new page tables, copying or sharing memory",
        "   via copy-on-write); creating a thread is cheap.",
        "4. Because threads share memory, they can communicate through plain variables, which is fast",
        "   but needs locks, atomics or queues to avoid data races.",
        "5. Processes communicate through pipes, sockets or shared-memory segments, which is slower but",
        "   isolates failures: one crashing process does not take the others down.",
        "6. In CPython the global interpreter lock means CPU-bound threads do not run in parallel, so",
        "   multiprocessing is often used for CPU-heavy work and threads for I/O-bound work.",
        "",
        "In short: processes isolate, threads share. Pick processes for robustness and parallel CPU work,",
        "threads for lightweight concurrency within one program.",
    ]
)

TASKS = [
    (
        "What is the capital of Australia? Answer in one sentence.",
        [
            "The capital of Australia is Canberra.",
            "Sydney is the capital of Australia, being its largest and best-known city.",
            "Canberra — it was purpose-built as a compromise between Sydney and Melbourne and became "
            "the seat of government in 1927.",
        ],
    ),
    (
        "Explain the difference between a process and a thread to a junior developer.",
        [
            "A process is a running program with its own memory. A thread runs inside a process and "
            "shares that memory with the process's other threads, so threads are lighter to create "
            "but need synchronisation.",
            LONG_THREAD_ANSWER,
            "Processes and threads are the same thing; the names are used interchangeably by "
            "different operating systems.",
            "Think of a process as a house and threads as the people living in it: they share the "
            "kitchen (memory) and must take turns, while another house has its own kitchen.",
        ],
    ),
    (
        "Write a Python function that checks whether a string is a palindrome, ignoring case and "
        "punctuation.",
        [
            "```python\ndef is_palindrome(s: str) -> bool:\n"
            "    cleaned = [c.lower() for c in s if c.isalnum()]\n"
            "    return cleaned == cleaned[::-1]\n```",
            "```python\ndef is_palindrome(s):\n    return s == s[::-1]\n```\n"
            "This ignores case automatically.",
            "<script>alert('not executed')</script> Use `s.casefold()` and compare with its reverse.",
        ],
    ),
    (
        "Suggest a name for a small bakery that specialises in sourdough.",
        [
            "Rise & Crumb",
            "The Wild Yeast Bakehouse",
            "Bread",
        ],
    ),
]


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport=DESKTOP)
    watched = watch(context.new_page())
    yield watched.page, watched.errors
    context.close()


def _seed() -> None:
    with session_scope() as s:
        ps = make_prompt_set(s, "demo-questions")
        mv = make_model_version(s, "smollm2-135m-instruct@round-3")
        for i, (prompt_text, texts) in enumerate(TASKS):
            # Descending priority fixes the order the tasks come in.
            prompt = make_prompt(s, ps, prompt_text, priority=len(TASKS) - i)
            cands = make_candidates(s, prompt, texts, model_version=mv)
            make_comparison_set(s, prompt, candidates=cands, overlap=1)


def _badges(page) -> dict[int, str]:
    pairs = page.locator("#candidates .cand").evaluate_all(
        "els => els.map(e => [e.dataset.id, e.querySelector('[data-badge]').textContent])"
    )
    return {int(i): b for i, b in pairs}


def test_rank_by_drag_then_keyboard_with_a_tie_then_skip(live_server, browser_page, make_user):
    page, js_errors = browser_page
    _seed()
    name, password = make_user("maria")

    # Log in through the form; the login redirects back to the ranking page.
    page.goto(live_server + "/")
    assert "/login" in page.url
    submit_login(page, name, password)
    page.wait_for_selector("#task[data-assignment]")
    assert "Canberra" in page.inner_text("#candidates")
    assert "smollm2" not in page.content()
    page.evaluate("window.__marker = 'still here'")

    # Task 1: drag the last response to the top; a drag ranks everything by position.
    first_aid = assignment_of(page)
    before = card_ids(page)
    cards = page.locator("#candidates .cand")
    cards.nth(len(before) - 1).locator(".cand-head").drag_to(cards.nth(0).locator(".cand-head"))
    after = card_ids(page)
    assert after[0] == before[-1] and sorted(after) == sorted(before)
    assert [_badges(page)[c] for c in after] == ["1", "2", "3"]
    page.fill("textarea[name=rationale]", "Short and correct beats long and correct; Sydney is wrong.")
    page.click("#rank-form button[type=submit]")
    second_aid = wait_for_next_task(page, first_aid)
    assert page.evaluate("window.__marker") == "still here"

    # Task 2: keyboard only. Focus starts on the first response; ranking one moves to the next unranked.
    shown = card_ids(page)
    assert len(shown) == 4
    assert page.evaluate("document.activeElement.dataset.id") == str(shown[0])
    a, b, c, d = shown
    page.keyboard.press("Enter")  # nothing ranked yet: refused in the page, nothing sent
    assert "Rank every response first (4 left" in page.inner_text("#task-error")
    assert assignment_of(page) == second_aid
    page.locator(f"#candidates .cand[data-id='{a}']").focus()
    for key in ["2", "1", "2", "3"]:  # a=2, b=1, c=2 (a tie with a), d=3
        page.keyboard.press(key)
    assert card_ids(page) == [b, a, c, d]  # sorted best first, the tie kept together
    assert _badges(page) == {b: "1", a: "2=", c: "2=", d: "3"}
    assert page.inner_text("#tier-summary").split() == ["B", "≻", "A", "=", "C", "≻", "D"]
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # from d up to a
    assert page.evaluate("document.activeElement.dataset.id") == str(a)
    page.keyboard.press("i")  # flag a as incorrect
    more = page.locator("#candidates [data-more]")
    assert more.count() == 1  # only the long answer starts collapsed
    more.click()
    assert more.inner_text() == "Show less"
    page.locator(f"#candidates .cand[data-id='{a}']").focus()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.keyboard.press("Enter")
    third_aid = wait_for_next_task(page, second_aid)
    assert page.evaluate("window.__marker") == "still here"

    # Task 3: S asks for a reason in a dialog; the HTML in a completion is shown as text.
    assert "<script>alert('not executed')</script>" in page.inner_text("#candidates")
    page.keyboard.press("s")
    page.wait_for_selector("#skip-dialog[open]")
    page.keyboard.type("   ")  # passes `required`; the server refuses it and the dialog says why
    page.click("#skip-dialog button[type=submit]")
    page.wait_for_selector("[data-dialog-error]:not([hidden])")
    assert "reason is required" in page.inner_text("[data-dialog-error]")
    page.fill("#skip-dialog textarea[name=reason]", "")
    page.keyboard.type("I cannot judge Python code quality well enough.")
    page.click("#skip-dialog button[type=submit]")
    fourth_aid = wait_for_next_task(page, third_aid)
    assert "sourdough" in page.inner_text(".prompt-text")
    assert page.evaluate("window.__marker") == "still here"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert "2</strong> ranked today" in page.inner_html(".progress").replace(
        '<strong data-ranked-today="">', ""
    )
    assert not js_errors, js_errors

    with session_scope() as s:
        rankings = {r.assignment_id: r for r in s.scalars(select(Ranking))}
        skips = s.scalars(select(Skip)).all()
        statuses = {x.id: x.status for x in s.scalars(select(Assignment))}
    assert set(rankings) == {first_aid, second_aid}
    dragged = rankings[first_aid]
    assert dragged.tiers == [[x] for x in after]
    assert dragged.rationale.startswith("Short and correct")
    assert dragged.display_order == before
    keyed = rankings[second_aid]
    assert keyed.tiers == [[b], sorted([a, c]), [d]]
    assert keyed.flags == {str(a): ["incorrect"]}
    assert keyed.display_order == shown
    assert all(r.seconds_spent is not None and r.seconds_spent > 0 for r in rankings.values())
    assert [(sk.assignment_id, sk.reason) for sk in skips] == [
        (third_aid, "I cannot judge Python code quality well enough.")
    ]
    assert statuses == {
        first_aid: AssignmentStatus.submitted,
        second_aid: AssignmentStatus.submitted,
        third_aid: AssignmentStatus.skipped,
        fourth_aid: AssignmentStatus.leased,
    }
