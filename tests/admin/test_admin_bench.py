"""bench/dashboard.py's bulk seed makes a coherent loop history, and every page it times answers 200 on it."""

from __future__ import annotations

from sqlalchemy import func, select, text

from app.db import session_scope
from app.orm import ModelStatus, ModelVersion, Ranking, Role, Round, RoundStatus
from app.quality import cache
from bench.dashboard import PAGES, seed
from tests.conftest import login


def test_bulk_seed_and_every_benchmarked_page(app_client, make_user):
    with session_scope() as s:
        stored = seed(s.connection(), rankings=1500, annotators=12)
    assert 1400 <= stored <= 1600
    with session_scope() as s:
        # Every ranking orders exactly its set's candidates, by an annotator who holds the assignment.
        bad = s.execute(
            text(
                """
                SELECT count(*) FROM rankings r
                JOIN assignments a ON a.id = r.assignment_id
                WHERE a.set_id <> r.set_id OR a.annotator_id <> r.annotator_id
                   OR jsonb_array_length(jsonb_path_query_array(r.tiers, '$[*][*]'))
                      <> (SELECT count(*) FROM comparison_set_items i WHERE i.set_id = r.set_id)
                """
            )
        ).scalar_one()
        assert bad == 0
        assert (
            s.scalar(select(func.count()).select_from(Round).where(Round.status == RoundStatus.succeeded))
            == 4
        )
        active = s.scalars(select(ModelVersion.name).where(ModelVersion.status == ModelStatus.active)).all()
        assert sorted(active) == ["oasst-human", "policy-r3"]
        annotator = s.scalar(select(Ranking.annotator_id).limit(1))
    cache.clear_cache()
    name, pw = make_user("bench-root", Role.admin)
    login(app_client, name, pw)
    for path in PAGES:
        r = app_client.get(path.format(annotator=annotator))
        assert r.status_code == 200, (path, r.text[:500])
    board = app_client.get("/admin/leaderboard.json").json()["rows"]
    # The seed's latent quality rises with each generation: the newest policy leads, the base trails.
    assert board[0]["name"] == "policy-r4" and board[-1]["name"] == "base-smollm2"
    cache.clear_cache()
