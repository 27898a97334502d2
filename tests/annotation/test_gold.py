"""Gold sets: marked by admins only, mixed blind into the queue at the project's rate, never closed by
overlap, never in a training snapshot."""

from __future__ import annotations

import random

from app.annotation import gold, service
from app.annotation.schemas import RankingIn
from app.config import get_settings
from app.errors import Invalid
from app.orm import SetStatus
from app.training import rounds
from tests.factories import make_annotator, make_comparison_set, make_project, make_prompt, make_prompt_set


def _set_in(db, project, k=3):
    ps = make_prompt_set(db, f"ps-{random.random()}", project=project)
    return make_comparison_set(db, make_prompt(db, ps), k=k, overlap=1)


def _ids(cset):
    return [i.candidate_id for i in cset.items]


def _skip(db, user, task):
    service.skip_task(db, user, task.assignment.id, "next")


def test_marking_gold_checks_the_ranking_and_keeps_the_set_open(db):
    cset = make_comparison_set(db, k=3)
    a, b, c = _ids(cset)
    try:
        gold.mark_gold(db, cset.id, [[a], [b]])
        raise AssertionError("a ranking that leaves a candidate out was accepted")
    except Invalid:
        pass
    marked = gold.mark_gold(db, cset.id, [[c], [a, b]])
    assert marked.tiers == [[c], sorted([a, b])]
    # Ranked by more annotators than its overlap, it stays open: every annotator may get it once.
    for _ in range(3):
        user = make_annotator(db)
        task = service.next_task(db, get_settings().model_copy(update={"gold_rate": 1.0}), user)
        assert task is not None and task.assignment.set_id == cset.id
        ids = [x.id for x in task.candidates]
        service.submit_ranking(
            db, get_settings(), user, RankingIn(assignment_id=task.assignment.id, tiers=[ids])
        )
    db.refresh(cset)
    assert cset.status == SetStatus.open and gold.gold_set(db, cset.id).rankings == 3


def test_gold_is_handed_out_at_the_projects_rate(db):
    project = make_project(db, gold_rate=0.3)
    user = make_annotator(db)
    from app.projects import service as projects

    projects.add_member(db, project.id, user.id)
    golds = [_set_in(db, project) for _ in range(60)]
    for g in golds:
        ids = _ids(g)
        gold.mark_gold(db, g.id, [[i] for i in ids])
    ordinary = [_set_in(db, project) for _ in range(200)]
    gold_ids = {g.id for g in golds}
    random.seed(5)
    seen = []
    for _ in range(150):
        task = service.next_task(db, get_settings(), user, project.id)
        assert task is not None
        seen.append(task.assignment.set_id in gold_ids)
        _skip(db, user, task)
    share = sum(seen) / len(seen)
    # Binomial(150, 0.3): mean 45, sd 5.6; well inside 0.3 +- 0.13.
    assert 0.17 <= share <= 0.43, share
    assert len(ordinary) == 200


def test_no_gold_at_rate_zero_and_none_once_ranked(db):
    project = make_project(db, gold_rate=0.0)
    user = make_annotator(db)
    from app.projects import service as projects

    projects.add_member(db, project.id, user.id)
    g = _set_in(db, project)
    gold.mark_gold(db, g.id, [_ids(g)])
    for _ in range(3):
        _set_in(db, project)
    for _ in range(3):
        task = service.next_task(db, get_settings(), user, project.id)
        assert task is not None and task.assignment.set_id != g.id
        _skip(db, user, task)
    # Nothing ordinary left: gold alone is not handed out either.
    assert service.next_task(db, get_settings(), user, project.id) is None


def test_gold_rankings_never_reach_a_training_snapshot(db):
    from tests.training_data import seed_rankings
    from worker.snapshot import get_or_create_snapshot, load_training_data

    seeded = seed_rankings(db, prompts=4, annotators=2, unranked=0, seed=31)
    gold_set_id = seeded["sets"][0]
    from app.orm import ComparisonSet, Ranking

    cset = db.get(ComparisonSet, gold_set_id)
    gold.mark_gold(db, gold_set_id, [[i] for i in _ids(cset)])
    gold_rankings = {r.id for r in db.query(Ranking).filter(Ranking.set_id == gold_set_id)}
    assert gold_rankings
    round_ = rounds.start_round(db, get_settings(), {}, requested_by_id=None)
    snapshot = get_or_create_snapshot(db, round_.id, max_rankings=0)
    assert not gold_rankings & set(snapshot.ranking_ids)
    assert set(seeded["rankings"]) - gold_rankings == set(snapshot.ranking_ids)
    # Made gold after a snapshot froze it: still left out of the training data.
    other = seeded["sets"][1]
    gold.mark_gold(db, other, [[i] for i in _ids(db.get(ComparisonSet, other))])
    data = load_training_data(db, snapshot.ranking_ids, "each")
    assert other not in {s.set_id for s in data.sets} and data.sets
