"""A conversation on the ranking page, in a real browser at a desktop and a phone size: the earlier turns
read as a chat thread with their roles, a long earlier turn is folded until opened, the user's last turn is
shown in full, and the responses follow as the assistant's next turn."""

from __future__ import annotations

import pytest

from app.conversation import flatten, from_stored
from app.db import session_scope
from tests.browser.conftest import DESKTOP, PHONE, card_ids, log_in, watch
from tests.factories import (
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LONG_SYSTEM = (
    "You are a careful assistant for a hardware shop. " + "Always check stock before answering. " * 60
)
MESSAGES = [
    {"role": "system", "content": LONG_SYSTEM},
    {"role": "user", "content": "Do you sell M3 screws?"},
    {"role": "assistant", "content": "Yes: M3 screws in 6, 8 and 12 mm."},
    {"role": "user", "content": "Which length fits a **2 mm** bracket on a 5 mm plate?"},
]
REPLIES = ["The 8 mm ones: 7 mm of material plus a nut.", "Take the 12 mm ones to be safe."]


def _seed() -> list[int]:
    with session_scope() as s:
        prompt = make_prompt(
            s, make_prompt_set(s, "shop"), flatten(from_stored("", MESSAGES)), messages=MESSAGES
        )
        cands = make_candidates(s, prompt, REPLIES, model_version=make_model_version(s, "policy-v1"))
        make_comparison_set(s, prompt, candidates=cands, overlap=1)
        return [c.id for c in cands]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_earlier_turns_read_as_a_chat_thread_and_the_responses_as_the_next_turn(
    live_server, chromium, make_user, viewport
):
    ids = _seed()
    name, password = make_user("reader")
    phone = viewport is PHONE
    context = chromium.new_context(viewport=viewport, has_touch=phone, is_mobile=phone)
    watched = watch(context.new_page())
    page = watched.page
    log_in(page, live_server, name, password)
    page.wait_for_selector("#task[data-ready='1']")

    # The thread: each turn with its role shown, in order.
    turns = page.locator("ol.chat > li.turn")
    assert turns.evaluate_all("els => els.map(e => e.dataset.role)") == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    roles = [t.strip().lower() for t in page.locator("ol.chat .turn-role").all_inner_texts()]
    assert roles == ["system", "user", "assistant", "user"]
    assert all(page.locator("ol.chat .turn-role").nth(i).is_visible() for i in range(4))

    # The long system turn is folded to a one-line summary; the short turns and the question are in full.
    system = turns.nth(0)
    fold = system.locator("details[data-turn-fold]")
    assert fold.count() == 1 and fold.get_attribute("open") is None
    assert not system.locator(".prompt-text").is_visible()
    folded_height = system.bounding_box()["height"]
    assert folded_height < viewport["height"] / 4
    assert turns.nth(2).locator(".prompt-text").inner_text().startswith("Yes: M3 screws")
    assert page.locator("ol.chat details").count() == 1
    last = turns.nth(3)
    assert last.locator(".prompt-text strong").inner_text() == "2 mm"

    # Opening the fold shows the whole turn.
    (system.locator("summary").tap() if phone else system.locator("summary").click())
    assert system.locator(".prompt-text").is_visible()
    assert "Always check stock" in system.locator(".prompt-text").inner_text()
    assert system.bounding_box()["height"] > folded_height * 2

    # The responses come after the thread, labelled as the assistant's next turn.
    assert "the assistant's next turn" in page.inner_text(".summary-row h2").lower()
    thread_bottom = last.bounding_box()
    first_card = page.locator(f"#candidates .cand[data-id='{card_ids(page)[0]}']").bounding_box()
    assert first_card["y"] >= thread_bottom["y"] + thread_bottom["height"]
    assert sorted(card_ids(page)) == sorted(ids)
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert watched.errors == [] and watched.csp_violations == []
    context.close()
