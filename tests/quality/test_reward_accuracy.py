"""Reward models against people: pairwise accuracy on rankings stored after the reward model's data snapshot
of sets whose candidates it scored, next to its held-out accuracy at training time (page and API)."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.orm import DataSnapshot, ModelKind, ModelStatus, RewardScore, Role
from app.quality.intervals import wilson_interval
from app.quality.reward_accuracy import fresh_accuracy
from tests.admin_data import rank
from tests.conftest import login
from tests.factories import make_annotator, make_candidates, make_comparison_set, make_prompt

pytestmark = pytest.mark.usefixtures("fresh_stats")


def build(session) -> int:
    """A reward model and rankings of sets it scored; its fresh pairs: 3.5 right of 6 in 3 rankings."""
    from tests.factories import make_model_version

    policy = make_model_version(session, "policy", status=ModelStatus.active)
    prompt = make_prompt(session)
    a, b, c = make_candidates(session, prompt, ["a", "b", "c"], model_version=policy)
    scored = make_comparison_set(session, prompt, candidates=[a, b, c])
    d, e = make_candidates(session, prompt, ["d", "e"], model_version=policy)
    tied = make_comparison_set(session, prompt, candidates=[d, e])
    f, g = make_candidates(session, prompt, ["f", "g"], model_version=policy)
    unscored = make_comparison_set(session, prompt, candidates=[f, g])
    # Seen in training: ranked before its snapshot was taken (all wrong, and not counted).
    old = rank(session, scored, make_annotator(session), [[c.id], [b.id], [a.id]])
    snapshot = DataSnapshot(ranking_ids=[old.id], ranking_count=1, max_ranking_id=old.id, sha256="0" * 64)
    session.add(snapshot)
    session.flush()
    rm = make_model_version(session, "reward-1", kind=ModelKind.reward, status=ModelStatus.candidate)
    rm.data_snapshot_id = snapshot.id
    rm.metrics = {"heldout_accuracy": 0.8, "heldout_pairs": 50}
    for cand, score in ((a, 3.0), (b, 2.0), (c, 1.0), (d, 1.0), (e, 1.0)):
        session.add(RewardScore(reward_version_id=rm.id, candidate_id=cand.id, score=score))
    session.flush()
    rank(session, scored, make_annotator(session), [[a.id], [b.id], [c.id]])  # 3 of 3
    rank(session, scored, make_annotator(session), [[c.id], [a.id, b.id]])  # 0 of 2 (a = b not counted)
    rank(session, scored, make_annotator(session), [[c.id], [b.id], [a.id]], dropped=True)  # dropped
    rank(session, tied, make_annotator(session), [[d.id], [e.id]])  # equal scores: half of 1
    rank(session, unscored, make_annotator(session), [[f.id], [g.id]])  # nothing scored
    return rm.id


def test_fresh_accuracy_counts_only_rankings_it_never_saw(db):
    rm = build(db)
    acc = fresh_accuracy(db)[rm]
    assert (acc.pairs, acc.rankings) == (6, 3)
    assert acc.accuracy == pytest.approx(3.5 / 6)
    assert (acc.low, acc.high) == pytest.approx(wilson_interval(3.5, 6))


def test_page_and_api_show_fresh_next_to_heldout_accuracy(app_client, api_token, make_user):
    with session_scope() as s:
        rm = build(s)
    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    versions = {
        v["id"]: v for v in app_client.get("/api/v1/model-versions", headers=admin).json()["versions"]
    }
    got = versions[rm]["reward_accuracy"]
    assert got["fresh"]["accuracy"] == pytest.approx(3.5 / 6) and got["fresh"]["pairs"] == 6
    assert got["fresh"]["rankings"] == 3 and got["fresh"]["low"] < 3.5 / 6 < got["fresh"]["high"]
    assert got["heldout"]["accuracy"] == 0.8 and got["heldout"]["pairs"] == 50
    assert (got["heldout"]["low"], got["heldout"]["high"]) == pytest.approx(wilson_interval(40, 50))

    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    html = app_client.get("/admin/models").text
    block = html[html.index(f'id="version-{rm}"') :][:4000]
    assert 'data-metric="fresh-accuracy">58.3%<' in block and 'data-metric="fresh-pairs">6<' in block
    rows = {r["version_id"]: r for r in app_client.get("/admin/models.json").json()["rows"]}
    assert rows[rm]["reward_fresh_accuracy"] == pytest.approx(3.5 / 6, abs=1e-3)
    assert rows[rm]["reward_fresh_pairs"] == 6
