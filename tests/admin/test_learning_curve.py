"""The models page's learning curve: per trained policy version, its round's reward-model accuracy (held-out
and fresh) and the blind human win-rates against its parent and the base model, with intervals."""

from __future__ import annotations

import pytest

from app.db import session_scope
from app.orm import DataSnapshot, ModelKind, ModelStatus, RewardScore, Role
from app.quality.intervals import wilson_interval
from tests.admin_data import rank
from tests.conftest import login
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_prompt,
)

pytestmark = pytest.mark.usefixtures("fresh_stats")


def test_models_page_draws_the_learning_curve(app_client, make_user):
    with session_scope() as s:
        base = make_model_version(s, "base", status=ModelStatus.retired)
        p1 = make_model_version(s, "policy-1", status=ModelStatus.retired)
        p2 = make_model_version(s, "policy-2", status=ModelStatus.active)
        p1.parent_id, p2.parent_id = base.id, p1.id
        snapshot = DataSnapshot(ranking_ids=[], ranking_count=0, max_ranking_id=None, sha256="0" * 64)
        s.add(snapshot)
        s.flush()
        rm = make_model_version(s, "reward-2", kind=ModelKind.reward, status=ModelStatus.candidate)
        rm.metrics = {"heldout_accuracy": 0.7, "heldout_pairs": 40}
        rm.data_snapshot_id = p2.data_snapshot_id = snapshot.id
        annotator = make_annotator(s)
        for i in range(4):
            prompt = make_prompt(s)
            (b,) = make_candidates(s, prompt, [f"b{i}"], model_version=base)
            (c1,) = make_candidates(s, prompt, [f"one{i}"], model_version=p1)
            (c2,) = make_candidates(s, prompt, [f"two{i}"], model_version=p2)
            cset = make_comparison_set(s, prompt, candidates=[b, c1, c2])
            for cand, score in ((b, 0.0), (c1, 1.0), (c2, 2.0)):
                s.add(RewardScore(reward_version_id=rm.id, candidate_id=cand.id, score=score))
            s.flush()
            # p2 beats both every time; p1 beats the base in 3 of 4.
            rank(s, cset, annotator, [[c2.id], [c1.id], [b.id]] if i < 3 else [[c2.id], [b.id], [c1.id]])
        ids = {"p1": p1.id, "p2": p2.id}
    name, pw = make_user("root", Role.admin)
    login(app_client, name, pw)
    html = app_client.get("/admin/models").text
    section = html[html.index('id="learning-curve"') :]
    assert 'data-curve-points="2"' in html
    assert section.count("<polyline") == 4  # the four signals as lines
    assert "policy-2: human win-rate vs base" in section and "policy-2: RM fresh accuracy" in section

    rows = app_client.get("/admin/models/curve.json").json()["rows"]
    got = {(r["version_id"], r["signal"]): r for r in rows}
    assert got[(ids["p2"], "human win-rate vs base")]["estimate"] == 1.0
    assert got[(ids["p2"], "human win-rate vs parent")]["estimate"] == 1.0
    assert got[(ids["p1"], "human win-rate vs base")]["estimate"] == 0.75
    assert got[(ids["p1"], "human win-rate vs base")]["ci_low"] == pytest.approx(
        wilson_interval(3, 4)[0], abs=1e-4
    )
    assert got[(ids["p2"], "RM held-out accuracy")]["estimate"] == 0.7
    # The reward model orders b < one < two; rankings agree in 3 sets (3 of 3 pairs), in one 2 of 3.
    assert got[(ids["p2"], "RM fresh accuracy")]["estimate"] == pytest.approx(11 / 12, abs=1e-4)
    assert got[(ids["p1"], "RM fresh accuracy")]["estimate"] is None  # p1's round has no reward model
    assert [r["step"] for r in rows if r["signal"] == "RM held-out accuracy"] == [1, 2]
