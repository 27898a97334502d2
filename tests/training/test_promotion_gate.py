"""The promotion gate: a policy marked "promote when ready" (or auto-promoted) becomes active only once the
blind human win-rate against the active policy has its 95% lower bound above 50% over at least
promotion_min_rankings rankings; the version page and the API say how many more rankings it needs."""

from __future__ import annotations

import re

import pytest

from app.config import get_settings
from app.db import session_scope
from app.orm import ModelStatus, ModelVersion, Role
from app.quality import cache
from app.quality.intervals import wilson_interval
from app.quality.promotion import comparisons_needed, gate_check
from app.quality.version_stats import HumanWinRate
from app.training import rounds
from tests.admin_data import rank
from tests.conftest import login
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
)
from worker import scheduler

pytestmark = pytest.mark.usefixtures("fresh_stats")


def settings(min_rankings: int):
    return get_settings().model_copy(update={"promotion_min_rankings": min_rankings})


def duel(session, new: ModelVersion, old: ModelVersion, wins: int, losses: int) -> None:
    """One set per ranking holding one candidate of each version: `wins` rankings prefer new, `losses` old."""
    annotator = make_annotator(session)
    for i in range(wins + losses):
        prompt = make_prompt(session)
        (n,) = make_candidates(session, prompt, [f"new {i}"], model_version=new)
        (o,) = make_candidates(session, prompt, [f"old {i}"], model_version=old)
        cset = make_comparison_set(session, prompt, candidates=[n, o])
        rank(session, cset, annotator, [[n.id], [o.id]] if i < wins else [[o.id], [n.id]])


def pair(session) -> tuple[ModelVersion, ModelVersion]:
    old = make_model_version(session, "policy-old", status=ModelStatus.active)
    new = make_model_version(session, "policy-new", status=ModelStatus.candidate)
    new.parent_id = old.id
    session.flush()
    return old, new


@pytest.mark.parametrize("rate", [0.51, 0.55, 0.6, 0.625, 0.7, 0.75, 0.8, 0.9, 1.0])
def test_comparisons_needed_is_where_the_wilson_lower_bound_crosses_half(rate):
    n = comparisons_needed(rate)
    assert n is not None
    assert wilson_interval(rate * n, n)[0] > 0.5
    assert wilson_interval(rate * (n - 1), n - 1)[0] <= 0.5 + 1e-12


def test_comparisons_needed_closed_form():
    # z^2 / (4 (p - 0.5)^2) = 1.959964^2 / 0.25 = 15.37 at p = 0.75: 16 comparisons.
    assert comparisons_needed(0.75) == 16
    assert comparisons_needed(0.5) is None and comparisons_needed(0.3) is None


def _human(rate: float, comparisons: int, rankings: int) -> HumanWinRate:
    low, high = wilson_interval(rate * comparisons, comparisons)
    wins = round(rate * comparisons)
    return HumanWinRate(2, 1, wins, comparisons - wins, 0, comparisons, rankings, rate, low, high)


def test_rankings_needed_figure():
    # 2 comparisons per ranking; 16 comparisons needed at 75% = 8 rankings, but N = 10 asks for more.
    check = gate_check(_human(0.75, 8, 4), min_rankings=10)
    assert not check.passed and check.more_rankings == 6
    # With N = 5 the Wilson bound decides: 8 rankings, 4 more.
    assert gate_check(_human(0.75, 8, 4), min_rankings=5).more_rankings == 4
    # One comparison per ranking at 60%: z^2 / (4 * 0.01) = 96.04 -> 97 rankings.
    assert gate_check(_human(0.6, 20, 20), min_rankings=30).more_rankings == 77
    # At or below 50% it cannot pass at the current rate.
    check = gate_check(_human(0.5, 40, 40), min_rankings=30)
    assert not check.passed and check.more_rankings is None and "cannot pass" in check.reason
    assert gate_check(None, 30).more_rankings is None
    passed = gate_check(_human(0.9, 40, 40), min_rankings=30)
    assert passed.passed and passed.more_rankings == 0


def test_gate_refuses_below_n_rankings_even_with_a_clear_lead(db):
    old, new = pair(db)
    duel(db, new, old, wins=12, losses=0)  # lower bound about 76%, but 12 < 20 rankings
    _, check = rounds.request_promotion(db, settings(20), new.id)
    assert not check.passed and check.more_rankings == 8
    assert new.promote_when_ready and new.status == ModelStatus.candidate
    assert rounds.promote_ready(db, settings(20)) == []
    assert old.status == ModelStatus.active


def test_gate_refuses_while_the_lower_bound_is_at_most_half(db):
    old, new = pair(db)
    duel(db, new, old, wins=20, losses=12)  # 62.5% over 32: lower bound about 45%
    _, check = rounds.request_promotion(db, settings(30), new.id)
    assert not check.passed and new.status == ModelStatus.candidate
    # 62.5% needs floor(3.8415 / 0.0625) + 1 = 62 comparisons (= rankings here): 30 more.
    assert check.more_rankings == 62 - 32
    assert scheduler.promote_ready_policy(db, settings(30)) is None
    duel(db, new, old, wins=0, losses=20)  # now it loses: cannot pass at the current rate
    cache.clear_cache()
    check = rounds.promotion_gate(db, settings(30), new)
    assert check.more_rankings is None and "cannot pass" in check.reason


def test_gate_promotes_once_met(db):
    old, new = pair(db)
    duel(db, new, old, wins=10, losses=10)
    rounds.request_promotion(db, settings(30), new.id)
    assert new.status == ModelStatus.candidate
    duel(db, new, old, wins=25, losses=0)  # 35 of 45: lower bound about 64%
    cache.clear_cache()
    assert scheduler.promote_ready_policy(db, settings(30)) == new.id
    assert new.status == ModelStatus.active and not new.promote_when_ready
    assert old.status == ModelStatus.retired


def test_without_an_active_policy_or_with_the_gate_off_promotion_is_at_once(db):
    lone = make_model_version(db, "first-policy", status=ModelStatus.candidate)
    _, check = rounds.request_promotion(db, settings(30), lone.id)
    assert check.passed and "no active policy" in check.reason and lone.status == ModelStatus.active
    other = make_model_version(db, "second-policy", status=ModelStatus.candidate)
    _, check = rounds.request_promotion(db, settings(0), other.id)
    assert check.passed and other.status == ModelStatus.active and lone.status == ModelStatus.retired


def test_api_and_page_show_the_gate_and_the_rankings_needed(app_client, api_token, make_user, monkeypatch):
    monkeypatch.setattr(get_settings(), "promotion_min_rankings", 20)
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    with session_scope() as s:
        old, new = pair(s)
        duel(s, new, old, wins=9, losses=3)  # 75% over 12: 16 needed -> 20 (N): 8 more
        ids = old.id, new.id
    resp = app_client.post(f"/api/v1/model-versions/{ids[1]}/promote-when-ready", headers=admin)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "candidate" and body["promote_when_ready"] is True
    assert body["promotion_gate"]["passed"] is False and body["promotion_gate"]["more_rankings"] == 8
    listed = {v["id"]: v for v in app_client.get("/api/v1/model-versions", headers=admin).json()["versions"]}
    assert listed[ids[1]]["promotion_gate"]["more_rankings"] == 8
    assert listed[ids[0]]["promotion_gate"] is None  # the active one

    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    html = app_client.get("/admin/models").text
    block = html[html.index(f'id="version-{ids[1]}"') :][:4000]
    assert f'data-waiting="{ids[1]}"' in block and 'data-gate="waiting"' in block
    assert re.search(r'data-metric="more-rankings">8<', block)
    rows = {r["version_id"]: r for r in app_client.get("/admin/models.json").json()["rows"]}
    assert rows[ids[1]]["gate_more_rankings"] == 8 and rows[ids[1]]["promote_when_ready"] is True

    resp = app_client.delete(f"/api/v1/model-versions/{ids[1]}/promote-when-ready", headers=admin)
    assert resp.status_code == 200 and resp.json()["promote_when_ready"] is False
    assert (
        app_client.post("/api/v1/model-versions/999999/promote-when-ready", headers=admin).status_code == 404
    )


def test_admin_button_promotes_at_once_when_the_gate_passes(app_client, make_user, monkeypatch):
    from tests.conftest import csrf_from

    monkeypatch.setattr(get_settings(), "promotion_min_rankings", 10)
    with session_scope() as s:
        old, new = pair(s)
        duel(s, new, old, wins=15, losses=0)
        ids = old.id, new.id
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    page = app_client.get("/admin/models")
    assert f'data-promote-when-ready="{ids[1]}"' in page.text and 'data-gate="passed"' in page.text
    r = app_client.post(
        f"/admin/models/{ids[1]}/promote-when-ready", data={"csrf_token": csrf_from(page.text)}
    )
    assert r.status_code in (200, 303)
    with session_scope() as s:
        assert s.get(ModelVersion, ids[1]).status == ModelStatus.active
        assert s.get(ModelVersion, ids[0]).status == ModelStatus.retired
