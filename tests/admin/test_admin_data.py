"""The admin Data pages (app.admin.data) with data: prompt-set pause and priority, the rankings browser's
pages and filters, and the flag queue's moderation, each checked in the database."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from app.db import session_scope
from app.orm import (
    Candidate,
    PromptSet,
    Ranking,
)
from tests.admin_data import rank
from tests.conftest import csrf_from
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
    make_prompt_set,
)

pytestmark = pytest.mark.usefixtures("fresh_stats")


def test_prompt_set_pause_and_priority_change_the_database(admin):
    with session_scope() as s:
        ps = make_prompt_set(s, "tagged")
        make_prompt(s, ps, "p1", tags=["maths", "easy"])
        make_prompt(s, ps, "p2", tags=["maths"])
        ps_id = ps.id
    page = admin.get("/admin/data")
    assert '<span class="tag">maths</span>' in page.text
    token = csrf_from(page.text)
    r = admin.post(f"/admin/data/prompt-sets/{ps_id}/paused", data={"csrf_token": token, "paused": "true"})
    assert r.status_code == 200 and "Unpause" in r.text
    r = admin.post(f"/admin/data/prompt-sets/{ps_id}/priority", data={"csrf_token": token, "priority": "7"})
    with session_scope() as s:
        row = s.get(PromptSet, ps_id)
        assert row.paused is True and row.priority == 7
    assert (
        admin.post(
            f"/admin/data/prompt-sets/{ps_id}/priority", data={"csrf_token": token, "priority": "x"}
        ).status_code
        == 422
    )
    r = admin.post(
        f"/admin/data/prompt-sets/{ps_id}/priority", data={"csrf_token": token, "priority": "99999999"}
    )
    assert r.status_code == 422
    admin.post(f"/admin/data/prompt-sets/{ps_id}/paused", data={"csrf_token": token, "paused": "false"})
    with session_scope() as s:
        assert s.get(PromptSet, ps_id).paused is False and s.get(PromptSet, ps_id).priority == 7


@pytest.fixture
def browsable():
    """60 rankings by two annotators over two prompt sets; some flagged, one old, one dropped."""
    now = dt.datetime.now(dt.UTC)
    with session_scope() as s:
        mv = make_model_version(s, "writer")
        first, second = make_prompt_set(s, "first"), make_prompt_set(s, "second")
        alice, bob = make_annotator(s, "alice"), make_annotator(s, "bob")
        out: dict[str, int] = {}
        for i in range(30):
            for who in (alice, bob):
                ps = first if i % 3 else second
                prompt = make_prompt(s, ps, f"prompt {i} by {who.username} <script>alert(1)</script>")
                cands = make_candidates(s, prompt, [f"good {i}", f"bad {i} <img src=x>"], model_version=mv)
                cset = make_comparison_set(s, prompt, candidates=cands)
                flags = {str(cands[1].id): ["unsafe"]} if (i == 4 and who is alice) else {}
                if i == 5 and who is bob:
                    flags = {str(cands[1].id): ["incorrect"]}
                r = rank(
                    s,
                    cset,
                    who,
                    [[cands[0].id], [cands[1].id]],
                    flags=flags,
                    created_at=now - dt.timedelta(days=40) if i == 0 else None,
                )
                if flags:
                    out[f"flagged_{who.username}"] = r.id
                    out[f"candidate_{who.username}"] = cands[1].id
        out.update(alice=alice.id, bob=bob.id, first=first.id, second=second.id)
    return out


def _ranking_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-ranking="(\d+)"', html)]


def test_rankings_browser_paginates_and_filters(admin, browsable):
    page1 = admin.get("/admin/data/rankings").text
    page2 = admin.get("/admin/data/rankings?page=2").text
    ids1, ids2 = _ranking_ids(page1), _ranking_ids(page2)
    assert len(ids1) == 50 and len(ids2) == 10
    assert ids1 == sorted(ids1, reverse=True) and max(ids2) < min(ids1)
    assert "1\u201350 of 60 rankings" in page1 and 'rel="next"' in page1
    assert _ranking_ids(admin.get("/admin/data/rankings?page=99").text) == ids2  # clamped to the last page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page1 and "<script>alert(1)" not in page1

    alice = _ranking_ids(admin.get(f"/admin/data/rankings?annotator={browsable['alice']}").text)
    assert len(alice) == 30
    second = admin.get(
        f"/admin/data/rankings?prompt_set={browsable['second']}&annotator={browsable['alice']}"
    )
    assert len(_ranking_ids(second.text)) == 10
    # Pagination links keep the filters.
    flagged = admin.get("/admin/data/rankings?flag=any").text
    assert sorted(_ranking_ids(flagged)) == sorted([browsable["flagged_alice"], browsable["flagged_bob"]])
    assert _ranking_ids(admin.get("/admin/data/rankings?flag=unsafe").text) == [browsable["flagged_alice"]]
    assert len(_ranking_ids(admin.get("/admin/data/rankings?flag=none").text)) == 50
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).date().isoformat()
    assert len(_ranking_ids(admin.get(f"/admin/data/rankings?until={old}").text)) == 2
    assert "58 rankings" in admin.get(f"/admin/data/rankings?since={old}").text
    filtered = admin.get(f"/admin/data/rankings?annotator={browsable['bob']}&flag=none").text
    assert f"annotator={browsable['bob']}&amp;flag=none" in filtered  # kept in the page links
    for bad in ("since=yesterday", "flag=rude", "annotator=x", "status=gone", "page=0"):
        assert admin.get(f"/admin/data/rankings?{bad}").status_code == 422, bad


def test_flag_queue_moderation_changes_the_database(admin, browsable):
    queue = admin.get("/admin/data/flags")
    html = queue.text
    cand_a, cand_b = browsable["candidate_alice"], browsable["candidate_bob"]
    assert f'data-candidate="{cand_a}"' in html and f'data-candidate="{cand_b}"' in html
    assert "bad 4 &lt;img src=x&gt;" in html and "<img src=x>" not in html
    assert f'data-candidate="{cand_b}"' not in admin.get("/admin/data/flags?flag=unsafe").text
    token = csrf_from(html)

    r = admin.post(
        f"/admin/data/candidates/{cand_a}/hidden",
        data={"csrf_token": token, "hidden": "true", "next": "/admin/data/flags"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/data/flags"
    ranking_b = browsable["flagged_bob"]
    r = admin.post(
        f"/admin/data/rankings/{ranking_b}/dropped",
        data={"csrf_token": token, "dropped": "true", "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/data/rankings"  # never off-site
    with session_scope() as s:
        assert s.get(Candidate, cand_a).hidden is True
        assert s.get(Ranking, ranking_b).dropped is True
    assert "Nothing to moderate" in admin.get("/admin/data/flags").text
    # Dropped rankings leave the live list and the statistics, and can be restored.
    assert ranking_b not in _ranking_ids(admin.get("/admin/data/rankings?page=1").text)
    assert ranking_b in _ranking_ids(admin.get("/admin/data/rankings?status=dropped").text)
    admin.post(f"/admin/data/rankings/{ranking_b}/dropped", data={"csrf_token": token, "dropped": "false"})
    with session_scope() as s:
        assert s.get(Ranking, ranking_b).dropped is False
    assert (
        admin.post(
            "/admin/data/rankings/999999/dropped", data={"csrf_token": token, "dropped": "true"}
        ).status_code
        == 404
    )
    assert (
        admin.post(f"/admin/data/candidates/{cand_a}/hidden", data={"csrf_token": token}).status_code == 422
    )
