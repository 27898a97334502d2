"""The frozen-prefix cache: the same log-probabilities, scores, gradients and training runs as the full
forward, the frozen layers skipped once cached, and the full forward wherever the cache could not be exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.worker.conftest import marker_rankings
from worker import policy_dpo_ranking as pl
from worker import reward
from worker.dpo_shared import DPOTrainConfig, encode_completion, sequence_logps
from worker.frozen_prefix import FrozenPrefix, layer_list
from worker.models import load_tokenizer
from worker.reward_scoring import encode_exchanges, score_ids

# GPT-2's projections are Conv1D, which "all-linear" with a layer share does not name: list them.
TARGETS = {"tiny_llama": "all-linear", "tiny_gpt2": ["c_attn", "c_proj", "c_fc"]}
REPLIES = ["yes", "the dog and the cat", "a big red house by the river .", "no no"]


def _randomise_trainable(model: Any) -> None:
    """LoRA B starts at zero (no gradient reaches A); random weights make every gradient non-trivial."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)


def _policy(backbone: str, request: pytest.FixtureRequest, share: float = 0.5) -> tuple[Any, Any]:
    path = str(request.getfixturevalue(backbone))
    cfg = DPOTrainConfig(
        base_model=path, lora_top_layers=share, lora_target_modules=TARGETS[backbone], device="cpu"
    )
    model = pl._trainable_policy(path, None, cfg, "cpu")
    _randomise_trainable(model)
    return model, load_tokenizer(path, padding_side="right")


def _grads_of(model: Any, value: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value.sum(), [p for p in model.parameters() if p.requires_grad]))


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_gpt2"])
def test_cached_logps_and_gradients_equal_the_full_forward(
    backbone: str, request: pytest.FixtureRequest
) -> None:
    model, tokenizer = _policy(backbone, request)
    pad = int(tokenizer.pad_token_id)
    prefix = FrozenPrefix.attach(model, 1 << 30)
    assert prefix is not None and prefix.first == 1  # LoRA on the top layer of two
    frozen_mlp = _count_calls(layer_list(model)[0].mlp)
    # Different lengths: the batch is right-padded, the cached states padded with zeros.
    seqs = [encode_completion(tokenizer, "tell me about it", r, 64) for r in REPLIES]
    assert len({len(ids) for ids, _ in seqs}) > 1

    full = sequence_logps(model, seqs, pad)
    full_grads = _grads_of(model, full)
    with torch.no_grad():
        sequence_logps(model, seqs, pad, prefix)  # fills the cache
    assert frozen_mlp[0] == 2 and prefix.full_passes == 1 and len(prefix.states) == len(REPLIES)

    cached = sequence_logps(model, seqs, pad, prefix)
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    for c, f in zip(_grads_of(model, cached), full_grads, strict=True):
        torch.testing.assert_close(c, f, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in full_grads)
    # Another batch of the same sequences (other padding) is served from the cache too.
    fewer = sequence_logps(model, seqs[:2], pad, prefix)
    torch.testing.assert_close(fewer, full[:2], rtol=1e-5, atol=1e-5)
    assert frozen_mlp[0] == 2 and prefix.cached_passes == 2


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_gpt2"])
def test_cached_reward_scores_and_gradients_equal_the_full_forward(
    backbone: str, request: pytest.FixtureRequest
) -> None:
    path = str(request.getfixturevalue(backbone))
    tokenizer = load_tokenizer(path, padding_side="right")
    cfg = reward.RewardConfig(
        base_model=path, lora_top_layers=0.5, lora_target_modules=TARGETS[backbone], max_length=64
    )
    model = reward.build_reward_model(path, tokenizer, cfg)
    _randomise_trainable(model)
    model.eval()  # GPT-2's own dropout: in training mode its cache stands aside (next test)
    prefix = FrozenPrefix.attach(model, 1 << 30)
    assert prefix is not None and prefix.first == 1
    ids = encode_exchanges(tokenizer, [("tell me about it", r) for r in REPLIES], cfg.max_length)

    full = score_ids(model, tokenizer, ids)
    full_grads = _grads_of(model, full)
    with torch.no_grad():
        score_ids(model, tokenizer, ids, prefix)
    cached = score_ids(model, tokenizer, ids, prefix)
    assert prefix.cached_passes == 1
    torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)
    for c, f in zip(_grads_of(model, cached), full_grads, strict=True):
        torch.testing.assert_close(c, f, rtol=1e-4, atol=1e-6)


def test_dropout_below_the_adapters_keeps_training_passes_whole(tiny_gpt2: Path) -> None:
    path = str(tiny_gpt2)
    tokenizer = load_tokenizer(path, padding_side="right")
    cfg = reward.RewardConfig(base_model=path, lora_top_layers=0.5, lora_target_modules=TARGETS["tiny_gpt2"])
    model = reward.build_reward_model(path, tokenizer, cfg)
    prefix = FrozenPrefix.attach(model, 1 << 30)
    assert prefix is not None and prefix.dropout  # GPT-2's embedding and attention dropout (0.1)
    ids = encode_exchanges(tokenizer, [("a b", r) for r in REPLIES], 64)
    model.train()
    for _ in range(2):
        score_ids(model, tokenizer, ids, prefix)
    assert prefix.cached_passes == 0 and prefix.full_passes == 2 and not prefix.states


def test_full_forward_where_the_cache_cannot_help(tiny_llama: Path, request: pytest.FixtureRequest) -> None:
    # Every layer adapted: nothing frozen below the lowest trainable layer.
    everything, _ = _policy("tiny_llama", request, share=1.0)
    assert FrozenPrefix.attach(everything, 1 << 30) is None
    # Switched off.
    model, _tokenizer = _policy("tiny_llama", request)
    assert FrozenPrefix.attach(model, 0) is None
    # A trainable embedding feeds the frozen layers: their states would change as it trains.
    model.get_input_embeddings().weight.requires_grad_(True)
    assert FrozenPrefix.attach(model, 1 << 30) is None
    model.get_input_embeddings().weight.requires_grad_(False)
    model.gradient_checkpointing_enable()
    assert FrozenPrefix.attach(model, 1 << 30) is None


def test_sequences_over_the_budget_run_whole(tiny_llama: Path, request: pytest.FixtureRequest) -> None:
    model, tokenizer = _policy("tiny_llama", request)
    pad = int(tokenizer.pad_token_id)
    seqs = [encode_completion(tokenizer, "tell me", r, 64) for r in REPLIES]
    # Room for the shortest sequence's states only (tokens x hidden 64 x 4 bytes).
    prefix = FrozenPrefix.attach(model, min(len(ids) for ids, _ in seqs) * 64 * 4)
    assert prefix is not None
    with torch.no_grad():
        full = sequence_logps(model, seqs, pad)
        for _ in range(2):
            torch.testing.assert_close(sequence_logps(model, seqs, pad, prefix), full)
    assert len(prefix.states) == 1 and prefix.cached_passes == 0 and prefix.full_passes == 2
    assert prefix.bytes <= prefix.budget_bytes


def test_left_padded_batches_run_whole(tiny_llama: Path, request: pytest.FixtureRequest) -> None:
    model, _tokenizer = _policy("tiny_llama", request)
    prefix = FrozenPrefix.attach(model, 1 << 30)
    assert prefix is not None
    ids = torch.tensor([[2, 2, 5, 6], [3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        for _ in range(2):
            torch.testing.assert_close(prefix(model, ids, mask).logits, full)
    assert prefix.full_passes == 2 and not prefix.states


def _same_metrics(a: dict[str, Any], b: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_ranking_dpo_trains_the_same_with_and_without_the_cache(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(16, k=3, seed=3)
    runs = {}
    for mb in (0, 64):
        cfg = DPOTrainConfig(
            base_model=str(tiny_llama),
            batch_size=4,
            max_length=64,
            heldout_fraction=0.25,
            lr=2e-3,
            epochs=3,
            lora_top_layers=0.5,
            lora_target_modules="all-linear",
            prefix_cache_mb=mb,
            device="cpu",
        )
        runs[mb] = pl.train_dpo_ranking(cfg, rankings, tmp_path / f"p{mb}").metrics
    assert runs[0]["prefix_layers"] == 0 and runs[64]["prefix_layers"] == 1
    # Every pass after the reference pass (which fills the cache) skips the frozen layer.
    assert runs[64]["prefix_cached_passes"] > runs[64]["steps"] and runs[64]["prefix_full_passes"] > 0
    keys = ["heldout_loss", "heldout_reward_accuracy", "heldout_reward_margin", "train_loss", "best_step"]
    _same_metrics(runs[64], runs[0], keys)


def test_reward_model_trains_the_same_with_and_without_the_cache(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(30, seed=4)
    runs = {}
    for mb in (0, 64):
        cfg = reward.RewardConfig(
            base_model=str(tiny_llama),
            lr=2e-3,
            epochs=3,
            batch_size=4,
            max_length=64,
            eval_every=4,
            lora_top_layers=0.5,
            lora_target_modules="all-linear",
            prefix_cache_mb=mb,
            seed=0,
        )
        runs[mb] = reward.train_reward_model(cfg, rankings, tmp_path / f"rm{mb}").metrics
    assert runs[0]["prefix_layers"] == 0 and runs[64]["prefix_layers"] == 1
    assert runs[64]["prefix_cached_passes"] > runs[64]["steps"] // 2
    keys = [
        "heldout_accuracy",
        "heldout_loss",
        "initial_heldout_loss",
        "last_train_loss",
        "best_step",
        "steps",
    ]
    _same_metrics(runs[64], runs[0], keys)
