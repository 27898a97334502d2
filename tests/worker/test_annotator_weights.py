"""Annotator weights in the losses: a zero-weight annotator's rankings do not move the reward model's loss
or its gradient, and a DPO pair's weight multiplies its gradient."""

from __future__ import annotations

import torch

from worker.data import PreferencePair, Ranking, ranking_to_pairs
from worker.reward import ranking_loss
from worker.weighting import WeightedForward, normalised_weights, weighted_mean


def _loss(scores, rankings):
    losses, offset = [], 0
    for r in rankings:
        loss, _ = ranking_loss(scores[offset : offset + len(r.candidates)], r)
        offset += len(r.candidates)
        losses.append(loss)
    return weighted_mean(torch.stack(losses), [r.weight for r in rankings])


def test_a_zero_weight_rankings_do_not_move_the_reward_loss():
    good = Ranking("p", ["a", "b", "c"], [[0], [1], [2]], weight=1.0)
    noisy = Ranking("q", ["d", "e", "f"], [[2], [0], [1]], weight=0.0)
    base = torch.tensor([0.3, -0.2, 0.5])
    for other in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-4.0, 0.0, 9.0])):
        scores = torch.cat([base, other]).requires_grad_(True)
        loss = _loss(scores, [good, noisy])
        loss.backward()
        alone = base.clone().requires_grad_(True)
        reference = _loss(alone, [good])
        reference.backward()
        assert torch.allclose(loss, reference)
        assert torch.all(scores.grad[3:] == 0) and torch.allclose(scores.grad[:3], alone.grad)
    # Weight 1 everywhere: the plain mean.
    scores = torch.cat([base, torch.tensor([1.0, 2.0, 3.0])])
    both = [good, Ranking("q", ["d", "e", "f"], [[2], [0], [1]])]
    plain = torch.stack([ranking_loss(scores[:3], both[0])[0], ranking_loss(scores[3:], both[1])[0]]).mean()
    assert torch.allclose(_loss(scores, both), plain)


def test_pairs_carry_their_rankings_weight_and_are_normalised():
    pairs = ranking_to_pairs(
        [Ranking("p", ["a", "b"], [[0], [1]], weight=0.5), Ranking("q", ["c", "d"], [[1], [0]], weight=0.0)]
    )
    assert [p.weight for p in pairs] == [0.5, 0.0]
    kept = normalised_weights([*pairs, PreferencePair("r", "x", "y", weight=1.5)])
    assert [p.weight for p in kept] == [0.5, 1.5]


class _Out:
    def __init__(self, log_probs):
        self.log_probs = log_probs


def test_dpo_weights_scale_each_pairs_gradient():
    # Batch of 2 pairs: rows [chosen0, chosen1, rejected0, rejected1], as TRL lays them out.
    x = torch.randn(4, 5, requires_grad=True)

    def model(**_):
        return _Out(x * 2)

    out = WeightedForward(model, torch.tensor([0.0, 3.0]))()
    logps = out.log_probs.sum(dim=1)
    chosen, rejected = logps.chunk(2)
    (-torch.nn.functional.logsigmoid(chosen - rejected)).mean().backward()
    grad = x.grad.clone()
    x.grad = None
    plain = _Out(x * 2).log_probs.sum(dim=1)
    c, r = plain.chunk(2)
    (-torch.nn.functional.logsigmoid(c - r)).mean().backward()
    assert torch.all(grad[[0, 2]] == 0)
    assert torch.allclose(grad[[1, 3]], 3 * x.grad[[1, 3]])
