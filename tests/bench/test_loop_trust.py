"""The loop benchmark's unreliable annotators and gold sets: behaviours, how many of each a share means, the
oracle's ranking sent as gold, and the options. No model, no database."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.loop.options import parse_args
from bench.loop.simulate import annotator_tiers, behaviours, observed_agreement, share_count
from bench.loop.trust import mark_gold, oracle_tiers

SCORES = [0.1, 0.9, 0.5, 0.3, 0.7]
BEST_FIRST = [[1], [4], [2], [3], [0]]


def _agreement_with_oracle(behaviour: str, temperature: float, draws: int = 400) -> float:
    rng = random.Random(7)
    pairs = [(annotator_tiers(behaviour, SCORES, temperature, rng), BEST_FIRST) for _ in range(draws)]
    return observed_agreement(pairs)


def test_oracle_random_and_reverse_annotators_agree_with_the_oracle_as_designed():
    # A sharp oracle annotator ranks as the oracle does, a reverse one exactly the other way round.
    assert annotator_tiers("oracle", SCORES, 1e-6, random.Random(0)) == BEST_FIRST
    assert annotator_tiers("reverse", SCORES, 1e-6, random.Random(0)) == BEST_FIRST[::-1]
    # At a noisy temperature: oracle above chance, reverse the mirror image, random at chance (1/2).
    oracle, reverse = _agreement_with_oracle("oracle", 0.3), _agreement_with_oracle("reverse", 0.3)
    assert oracle > 0.7 and reverse == pytest.approx(1 - oracle, abs=0.05)
    assert _agreement_with_oracle("random", 0.3) == pytest.approx(0.5, abs=0.05)
    # A random ranking orders every candidate (no ties) and covers them all.
    drawn = annotator_tiers("random", SCORES, 0.3, random.Random(1))
    assert sorted(i for tier in drawn for i in tier) == list(range(5)) and all(len(t) == 1 for t in drawn)
    with pytest.raises(ValueError, match="behaviour"):
        annotator_tiers("sloppy", SCORES, 0.3, random.Random(1))


def test_shares_become_counts_of_annotators_with_one_reliable_left():
    assert share_count(4, 0.2) == 1 and share_count(10, 0.1) == 1 and share_count(4, 0.01) == 1
    assert share_count(4, 0.0) == 0 and share_count(10, 0.5) == 5
    assert behaviours(5, random_share=0.2) == ["oracle"] * 4 + ["random"]
    assert behaviours(10, random_share=0.2, reverse_share=0.1) == ["oracle"] * 7 + ["random"] * 2 + [
        "reverse"
    ]
    for bad in ((2, 0.5, 0.5), (4, 1.0, 0.0), (4, 1.5, 0.0)):
        with pytest.raises(ValueError):
            behaviours(*bad)


def test_the_options_set_each_annotators_behaviour():
    args = parse_args(["--annotators", "5", "--random-annotators", "0.2", "--gold", "6"])
    assert args.behaviours == ["oracle"] * 4 + ["random"] and args.gold == 6
    assert parse_args([]).behaviours == ["oracle"] * 4 and parse_args([]).gold == 0
    for bad in (["--reverse-annotators", "1"], ["--gold", "-1"], ["--random-annotators", "2"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


class FakeApi:
    """The two admin calls the bench makes for gold, answered from a list of open sets."""

    def __init__(self, sets: list[dict[str, Any]]) -> None:
        self.sets, self.marked = sets, {}

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        assert (method, path) == ("GET", "/comparison-sets")
        return {"sets": self.sets[: kwargs["params"]["limit"]]}

    def call(self, method: str, path: str, **kwargs: Any) -> None:
        assert method == "PUT" and path.endswith("/gold")
        self.marked[int(path.split("/")[2])] = kwargs["json"]["tiers"]


def oracle(prompt: str, text: str) -> float:
    return float(len(text))  # longer is better; equal lengths tie


def test_gold_sets_get_the_oracles_ranking_with_its_ties():
    cands = [{"id": 10, "text": "aa"}, {"id": 11, "text": "aaaa"}, {"id": 12, "text": "bb"}]
    assert oracle_tiers(oracle, "p", cands) == [[11], [10, 12]]
    sets = [
        {
            "set_id": i,
            "prompt": f"p{i}",
            "candidates": [{"id": 100 * i + j, "text": "x" * (j + 1)} for j in range(3)],
        }
        for i in range(1, 9)
    ]
    api = FakeApi(sets)
    chosen = mark_gold(api, oracle, 3, seed=0)
    assert len(chosen) == 3 and sorted(api.marked) == chosen
    for set_id, tiers in api.marked.items():
        assert tiers == [[100 * set_id + 2], [100 * set_id + 1], [100 * set_id]]
    assert mark_gold(FakeApi(sets), oracle, 3, seed=0) == chosen  # seeded
    assert mark_gold(FakeApi(sets), oracle, 0, seed=0) == []
    assert len(mark_gold(FakeApi(sets[:2]), oracle, 5, seed=0)) == 2
