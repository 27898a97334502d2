"""A conversation on the ranking page and in the task API: earlier turns as a chat thread (long ones
folded), the last user turn in full, the candidates as the assistant's next turn."""

from __future__ import annotations

import re

from app.annotation.routes import LONG_TEXT_CHARS
from app.conversation import flatten, from_stored
from app.db import session_scope
from app.orm import Role
from tests.conftest import login
from tests.factories import make_comparison_set, make_prompt

LONG = "A long system prompt. " * (LONG_TEXT_CHARS // 10)
MESSAGES = [
    {"role": "system", "content": LONG},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is **2+2**?"},
]


def seed() -> None:
    with session_scope() as s:
        prompt = make_prompt(s, text=flatten(from_stored("", MESSAGES)), messages=MESSAGES)
        make_comparison_set(s, prompt, k=2, overlap=1)


def test_the_ranking_page_shows_the_conversation_as_a_thread(app_client, make_user):
    seed()
    user, password = make_user("ann", Role.annotator)
    login(app_client, user, password)
    html = app_client.get("/").text
    thread = html[html.index('<ol class="chat"') : html.index("</ol>", html.index('<ol class="chat"'))]
    assert re.findall(r'data-role="(\w+)"', thread) == ["system", "user", "assistant", "user"]
    # The long earlier turn folds; the short ones and the question do not.
    assert thread.count("<details") == 1
    assert thread.index("<details") < thread.index('data-role="user"')
    assert "<strong>2+2</strong>" in thread.split("turn-last")[1]
    assert "the assistant&#39;s next turn" in html or "the assistant's next turn" in html
    assert ">Conversation<" in html


def test_the_task_api_returns_the_turns(app_client, api_token):
    seed()
    task = app_client.get(
        "/api/v1/tasks/next", headers={"Authorization": f"Bearer {api_token('ann')}"}
    ).json()
    assert task["messages"] == MESSAGES
    assert task["prompt"].startswith("System: A long system prompt.")
    assert task["prompt"].endswith("\n\nUser: What is **2+2**?")
