"""Active selection's choice (app/training/selection.py): the most uncertain sets first, the random share
respected and spread through the order, and the default stays random."""

from __future__ import annotations

import math

import pytest

from app.config import get_settings
from app.training import selection
from app.training.config import ConfigError, RoundConfig


def test_uncertainty_is_one_for_equal_scores_and_falls_as_they_spread():
    assert selection.uncertainty([0.3, 0.3, 0.3]) == pytest.approx(1.0)
    close, far = selection.uncertainty([0.0, 0.2]), selection.uncertainty([0.0, 4.0])
    assert close is not None and far is not None and 1.0 > close > far > 0.0
    # Two candidates: 4 p (1 - p) with p = sigmoid(difference).
    p = 1 / (1 + math.exp(-4.0))
    assert far == pytest.approx(4 * p * (1 - p))
    assert selection.uncertainty([1.0]) is None and selection.spread([1.0]) is None
    assert selection.spread([0.5, -1.0, 2.0]) == pytest.approx(3.0)


def test_the_most_uncertain_sets_come_first_with_the_random_share_spread_through_the_order():
    pool = [0.05, 0.9, 0.5, 0.7, 0.3, 0.95, 0.2, 0.6, None, 0.1, 0.8, 0.4]
    picks = selection.choose(pool, 8, 0.25, seed=3)
    assert len(picks) == 8 and len({p.index for p in picks}) == 8
    uncertain = [p for p in picks if p.pick == "uncertain"]
    randoms = [p for p in picks if p.pick == "random"]
    assert len(randoms) == 2  # round(8 * 0.25)
    # The uncertain picks are the pool's six most uncertain, most uncertain first.
    assert [pool[p.index] for p in uncertain] == [0.95, 0.9, 0.8, 0.7, 0.6, 0.5]
    # The random picks come from the rest, and neither both at the start nor both at the end.
    assert all(pool[p.index] not in (0.95, 0.9, 0.8, 0.7, 0.6, 0.5) for p in randoms)
    places = [picks.index(p) for p in randoms]
    assert places[0] > 0 and places[-1] < 7 and places[1] - places[0] >= 3
    # Hand-out priority falls with the place: the first set handed out has 1.
    assert [p.priority for p in picks] == sorted((p.priority for p in picks), reverse=True)
    assert picks[0].priority == 1.0 and all(p.priority > 0 for p in picks)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_random_share_is_respected_whatever_it_is(share):
    pool = [i / 20 for i in range(20)]
    picks = selection.choose(pool, 10, share, seed=1)
    assert sum(p.pick == "random" for p in picks) == round(10 * share)
    if share == 0.0:
        assert [pool[p.index] for p in picks] == sorted(pool, reverse=True)[:10]


def test_a_small_pool_gives_what_it_has_and_choice_is_reproducible():
    assert len(selection.choose([0.2, 0.4], 5, 0.25, seed=0)) == 2
    assert selection.choose([], 5, 0.25, seed=0) == []
    pool = [0.1, 0.9, 0.5, 0.5, 0.5, 0.2]
    assert selection.choose(pool, 4, 0.5, seed=7) == selection.choose(pool, 4, 0.5, seed=7)


def test_stored_scores_say_what_chose_the_set():
    pick = selection.Pick(index=0, pick="random", priority=0.75)
    stored = pick.stored("uncertainty", [0.5, 1.5], reward_version_id=9)
    assert stored["pick"] == "random" and stored["reward_version_id"] == 9
    assert stored["scores"] == [0.5, 1.5] and stored["spread"] == pytest.approx(1.0)
    assert stored["uncertainty"] == pytest.approx(selection.uncertainty([0.5, 1.5]))


def test_selection_defaults_to_random_and_takes_only_known_values():
    cfg = RoundConfig.resolve({}, get_settings())
    assert (cfg.selection, cfg.selection_random_share, cfg.selection_pool) == ("random", 0.25, 2.0)
    assert RoundConfig.resolve({"selection": "uncertainty"}, get_settings()).selection == "uncertainty"
    with pytest.raises(ConfigError, match="selection must be one of random, uncertainty"):
        RoundConfig.resolve({"selection": "entropy"}, get_settings())
    with pytest.raises(ConfigError, match=r"selection_pool must be at least 1\.0"):
        RoundConfig.resolve({"selection_pool": 0.5}, get_settings())
