"""Accuracy on gold and agreement with the consensus, with intervals, and the annotator weights from them."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

from sqlalchemy.orm import sessionmaker

from app.annotation import gold
from app.quality.gold import annotator_trust, annotator_weights, gold_accuracy, weight_of
from app.quality.records import RankingRecord
from tests.admin_data import rank
from tests.factories import make_annotator, make_comparison_set

GOLD = {s: [[s * 10 + i] for i in range(4)] for s in range(1, 21)}


def _records(annotator: int, order) -> list[RankingRecord]:
    return [RankingRecord(s, annotator, order(tiers)) for s, tiers in GOLD.items()]


def test_gold_accuracy_of_perfect_reversed_and_random_annotators_with_intervals():
    rnd = random.Random(3)
    records = (
        _records(1, lambda t: t)
        + _records(2, lambda t: list(reversed(t)))
        + _records(3, lambda t: rnd.sample(t, len(t)))
        + [RankingRecord(99, 1, [[1], [2]])]  # not a gold set: ignored
    )
    acc = gold_accuracy(records, GOLD)
    assert acc[1].estimate == 1.0 and acc[1].n == 20 * 6
    assert acc[2].estimate == 0.0
    assert 0.3 < acc[3].estimate < 0.7
    for p in acc.values():
        assert p.low <= p.estimate <= p.high and p.low >= 0 and p.high <= 1
    assert acc[3].high > acc[3].low + 0.05  # a real interval, not a point
    assert weight_of(acc[1]) == 1.0 and weight_of(acc[2]) == 0.0 and weight_of(acc[3]) < 0.4
    assert weight_of(None) == 1.0


def test_trust_and_weights_from_the_database(db):
    good, bad = make_annotator(db), make_annotator(db)
    for _ in range(4):
        cset = make_comparison_set(db, k=3)
        ids = [i.candidate_id for i in cset.items]
        gold.mark_gold(db, cset.id, [[i] for i in ids])
        rank(db, cset, good, [[i] for i in ids])
        rank(db, cset, bad, [[i] for i in reversed(ids)])
    t = annotator_trust(db, good.id)
    assert t.gold.estimate == 1.0 and t.gold_rankings == 4 and t.gold.n == 12 and t.gold.low < 1.0
    assert t.gold_weight == 1.0
    # Agreement with the consensus of others: the other is the reversed one, so no pair agrees.
    assert t.consensus.estimate == 0.0 and t.consensus.n == 12 and t.consensus.high > 0
    weights = annotator_weights(db, None, "gold")
    assert weights[good.id] == 1.0 and weights[bad.id] == 0.0
    assert annotator_weights(db, None, "none") == {}
    assert set(annotator_weights(db, None, "agreement")) >= {good.id, bad.id}


def test_round_stores_the_weights_in_force_and_a_retry_reuses_them(db):
    from app.config import get_settings
    from app.orm import Round
    from app.training import rounds
    from app.training.config import RoundConfig
    from worker.stages.prepare import annotator_weights as round_weights

    good, bad = make_annotator(db), make_annotator(db)
    cset = make_comparison_set(db, k=3)
    ids = [i.candidate_id for i in cset.items]
    gold.mark_gold(db, cset.id, [[i] for i in ids])
    rank(db, cset, good, [[i] for i in ids])
    rank(db, cset, bad, [[i] for i in reversed(ids)])
    round_ = rounds.start_round(db, get_settings(), {"annotator_weight": "gold"}, requested_by_id=None)
    db.flush()
    sessions = sessionmaker(bind=db.connection(), join_transaction_mode="create_savepoint")
    from worker.rounds import merge_metrics

    ctx = SimpleNamespace(
        cfg=RoundConfig(annotator_weight="gold"),
        sessions=sessions,
        round_id=round_.id,
        project_id=round_.project_id,
        progress=SimpleNamespace(log=lambda msg: None),
        record=lambda **m: merge_metrics(sessions, round_.id, m),
    )
    weights = round_weights(ctx)
    assert weights == {good.id: 1.0, bad.id: 0.0}
    db.expire_all()
    stored = db.get(Round, round_.id).metrics["annotator_weights"]
    assert stored == {"mode": "gold", "weights": {str(good.id): 1.0, str(bad.id): 0.0}}
    # A retry reads what the round froze, whatever the figures say now.
    gold.unmark_gold(db, cset.id)
    assert round_weights(ctx) == weights
    assert not math.isnan(sum(weights.values()))
