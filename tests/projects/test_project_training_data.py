"""The worker trains a project's round on that project's rankings and prompts only."""

from __future__ import annotations

from app.config import get_settings
from app.training import rounds
from tests.factories import make_project
from tests.training_data import seed_rankings


def test_a_rounds_snapshot_holds_only_its_projects_rankings(db):
    from worker.snapshot import get_or_create_snapshot, unlabelled_prompts

    a, b = make_project(db, "a"), make_project(db, "b")
    of_a = seed_rankings(db, prompts=3, annotators=1, unranked=2, seed=21, project=a)
    seed_rankings(db, prompts=2, annotators=1, unranked=2, seed=22, project=b)
    round_ = rounds.start_round(db, get_settings(), {}, requested_by_id=None, project_id=a.id)
    snapshot = get_or_create_snapshot(db, round_.id, max_rankings=0)
    assert sorted(snapshot.ranking_ids) == sorted(of_a["rankings"])
    assert all("story" in p for p in unlabelled_prompts(db, 10, seed=0, project_id=a.id))
    assert len(unlabelled_prompts(db, 10, seed=0, project_id=a.id)) == 2
