"""Agreement, bias and leaderboard statistics per project: a project's figures use its rankings only."""

from __future__ import annotations

import pytest

from app.quality import annotator_stats, version_stats
from tests.admin_data import rank
from tests.factories import (
    make_annotator,
    make_candidates,
    make_comparison_set,
    make_model_version,
    make_project,
    make_prompt,
    make_prompt_set,
)


def _ranked_sets(db, project, people, agree: bool, sets: int = 3):
    ps = make_prompt_set(db, f"{project.name}-prompts", project=project)
    first = make_model_version(db, f"{project.name}-v1", project=project)
    second = make_model_version(db, f"{project.name}-v2", project=project)
    for i in range(sets):
        prompt = make_prompt(db, ps, f"{project.name} question {i}")
        a = make_candidates(db, prompt, ["one"], model_version=first)[0]
        b = make_candidates(db, prompt, ["two"], model_version=second)[0]
        cset = make_comparison_set(db, prompt, candidates=[a, b], overlap=2)
        rank(db, cset, people[0], [[a.id], [b.id]])
        rank(db, cset, people[1], [[a.id], [b.id]] if agree else [[b.id], [a.id]])
    return first, second


@pytest.mark.usefixtures("fresh_stats")
def test_agreement_and_leaderboards_are_per_project(db):
    alpha, beta = make_project(db, "alpha"), make_project(db, "beta")
    people = [make_annotator(db, "p1"), make_annotator(db, "p2")]
    a1, a2 = _ranked_sets(db, alpha, people, agree=True)
    b1, b2 = _ranked_sets(db, beta, people, agree=False)

    assert annotator_stats.agreement_summary(db, alpha.id).overall.rate == 1.0
    assert annotator_stats.agreement_summary(db, beta.id).overall.rate == 0.0
    assert annotator_stats.agreement_summary(db).overall.rate == 0.5
    assert annotator_stats.bias_rates(db, alpha.id)[0].n == 6  # first_shown over alpha's six rankings

    board = version_stats.leaderboard_ratings(db, alpha.id)
    assert {r.version for r in board.ratings} == {a1.id, a2.id}
    assert {r.version for r in version_stats.leaderboard_ratings(db, beta.id).ratings} == {b1.id, b2.id}
