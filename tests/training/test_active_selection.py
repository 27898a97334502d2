"""Active selection run by the real worker on a tiny random Llama: with `selection=uncertainty` a round
writes candidates for a larger pool of prompts, keeps the sets its new reward model is least sure about
(with the random share), stores the choice and the scores with each set and shows them in the set detail;
by default (random) sets keep priority 0 but still carry their scores for analysis."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.orm import ComparisonSet, RewardScore, Role, Round
from app.training import rounds, selection
from tests.training_data import run_round_jobs, seed_rankings, tiny_overrides
from worker.tasks import run_round_job

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_artifacts")]


def sets_of(session, round_id: int) -> list[ComparisonSet]:
    stmt = select(ComparisonSet).where(ComparisonSet.source == f"round:{round_id}").order_by(ComparisonSet.id)
    return list(session.scalars(stmt))


def test_uncertainty_selection_keeps_the_uncertain_sets_and_stores_the_scores(
    clean_db, model_dir, app_client, api_token
):
    with session_scope() as s:
        seed_rankings(s, prompts=4, annotators=1, unranked=8)
    overrides = tiny_overrides(
        model_dir,
        eval_prompts=0,
        generate_prompts=2,
        selection="uncertainty",
        selection_pool=3,
        selection_random_share=0.5,
    )
    with session_scope() as s:
        round_id = rounds.start_round(s, get_settings(), overrides, requested_by_id=None).id
    assert run_round_jobs(round_id) == "succeeded"

    with session_scope() as s:
        row = s.get(Round, round_id)
        generation = row.metrics["generation"]
        # Candidates for 2 x 3 prompts; the 2 chosen sets are stored, one uncertain and one random pick.
        assert generation["prompts"] == 6 and generation["sets"] == 2
        assert generation["selection"] == "uncertainty"
        made = sorted(sets_of(s, round_id), key=lambda c: -c.selection_priority)
        assert [c.selection for c in made] == ["uncertainty"] * 2
        assert [c.selection_priority for c in made] == [1.0, 0.5]
        assert sorted(c.selection_scores["pick"] for c in made) == ["random", "uncertain"]
        reward_id = row.reward_version_id
        for cset in made:
            scores = cset.selection_scores
            assert scores["reward_version_id"] == reward_id and len(scores["scores"]) == len(cset.items)
            assert scores["uncertainty"] == pytest.approx(selection.uncertainty(scores["scores"]))
            # The same scores are the reward model's stored scores of those candidates.
            stored = dict(
                s.execute(
                    select(RewardScore.candidate_id, RewardScore.score).where(
                        RewardScore.reward_version_id == reward_id
                    )
                ).all()
            )
            assert [stored[i.candidate_id] for i in cset.items] == pytest.approx(scores["scores"], abs=1e-5)
        top = made[0]

    admin = {"Authorization": f"Bearer {api_token('boss', Role.admin)}"}
    detail = app_client.get(f"/api/v1/sets/{top.id}", headers=admin)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["selection"] == "uncertainty" and body["selection_priority"] == 1.0
    assert [c["reward_score"] for c in body["candidates"]] == pytest.approx(top.selection_scores["scores"])
    assert app_client.get("/api/v1/sets/999999", headers=admin).status_code == 404
    annotator = {"Authorization": f"Bearer {api_token('ann', Role.annotator)}"}
    assert app_client.get(f"/api/v1/sets/{top.id}", headers=annotator).status_code == 403

    # A generation job with the defaults: random selection, the usual hand-out order, scores still kept.
    with session_scope() as s:
        gen_id = rounds.start_generation(
            s, get_settings(), tiny_overrides(model_dir, generate_prompts=2), requested_by_id=None
        ).id
    assert run_round_job(gen_id, job_id=None) == "succeeded"
    with session_scope() as s:
        made = sets_of(s, gen_id)
        assert len(made) == 2 and s.get(Round, gen_id).metrics["generation"]["prompts"] == 2
        assert all(c.selection == "random" and c.selection_priority == 0.0 for c in made)
        assert all(
            c.selection_scores["reward_version_id"] == reward_id and "pick" not in c.selection_scores
            for c in made
        )
