"""Candidate generation on a tiny random Llama: K distinct replies per prompt, reproducible from seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker import generation, models
from worker.generation import CandidateConfig, SamplingParams

PROMPTS = ["tell me a story about the sun", "write a poem", "why is the sky blue ?"]
SAMPLING = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12)


@pytest.fixture(scope="module")
def policy(tiny_llama: Path):
    return models.load_causal_lm(str(tiny_llama), device=models.pick_device("cpu"))


def test_k_distinct_candidates_with_recorded_seeds(policy) -> None:
    model, tokenizer = policy
    result = generation.generate_candidates(
        model, tokenizer, PROMPTS, CandidateConfig(k=4, seed=11, sampling=SAMPLING, batch_size=5)
    )
    assert [len(c) for c in result.candidates] == [4, 4, 4]
    for i, candidates in enumerate(result.candidates):
        texts = [c.text for c in candidates]
        assert all(texts)
        for a in range(len(texts)):
            for b in range(a + 1, len(texts)):
                assert not generation.is_near_duplicate(texts[a], texts[b], 0.95)
        assert len({c.seed for c in candidates}) == 4
        for c in candidates:
            assert c.prompt_index == i
            assert c.params == SAMPLING
            assert c.prompt_tokens > 5
            assert 1 <= c.completion_tokens <= SAMPLING.max_new_tokens
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "length":
                assert c.completion_tokens == SAMPLING.max_new_tokens
    assert result.completion_tokens >= sum(c.completion_tokens for cs in result.candidates for c in cs)
    assert result.tokens_per_second > 0


def test_seed_reproduces_a_candidate_whatever_its_batch(policy) -> None:
    model, tokenizer = policy
    cfg = CandidateConfig(k=3, seed=5, sampling=SAMPLING, batch_size=9)
    first = generation.generate_candidates(model, tokenizer, PROMPTS, cfg)
    # Same base seed: the whole call repeats exactly.
    again = generation.generate_candidates(model, tokenizer, PROMPTS, cfg)
    assert [[c.text for c in cs] for cs in again.candidates] == [
        [c.text for c in cs] for cs in first.candidates
    ]
    # One candidate alone, from its recorded seed: same text although it was batched with 8 other rows.
    for candidates in first.candidates:
        for c in candidates:
            text, _n_prompt, n_completion, finish = generation.sample(
                model, tokenizer, [PROMPTS[c.prompt_index]], [c.seed], c.params
            )[0]
            assert (text, n_completion, finish) == (c.text, c.completion_tokens, c.finish_reason)
    # A different base seed gives different candidates.
    other = generation.generate_candidates(
        model, tokenizer, PROMPTS, CandidateConfig(k=3, seed=6, sampling=SAMPLING)
    )
    assert [[c.text for c in cs] for cs in other.candidates] != [
        [c.text for c in cs] for cs in first.candidates
    ]


def test_near_identical_candidates_are_dropped(policy) -> None:
    model, tokenizer = policy
    # Greedy decoding returns the same reply for every row: one survives per prompt, the rest are dropped.
    greedy = SamplingParams(temperature=0.0, max_new_tokens=8)
    result = generation.generate_candidates(
        model, tokenizer, PROMPTS[:2], CandidateConfig(k=3, seed=1, sampling=greedy, drop_empty=False)
    )
    assert [len(c) for c in result.candidates] == [1, 1]
    assert result.dropped == 4


def test_near_duplicate_rule() -> None:
    assert generation.is_near_duplicate("Hello   World!", "hello world!", 0.95)
    long = "the quick brown fox jumps over the lazy dog " * 3
    assert generation.is_near_duplicate(long, long.replace("lazy", "lazi", 1), 0.95)
    assert not generation.is_near_duplicate("the cat sat", "a dog ran far away", 0.95)


def test_lora_adapter_is_applied(tiny_llama: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    # A non-zero adapter (LoRA starts as a no-op otherwise), large enough to change greedy replies.
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "adapter"))

    cfg = CandidateConfig(k=1, seed=0, sampling=SamplingParams(temperature=0.0, max_new_tokens=10))
    plain = generation.generate_for_prompts(str(tiny_llama), PROMPTS, cfg)
    adapted = generation.generate_for_prompts(str(tiny_llama), PROMPTS, cfg, adapter_dir=tmp_path / "adapter")
    assert [c[0].text for c in plain.candidates] != [c[0].text for c in adapted.candidates]


@pytest.mark.parametrize(
    ("vocab", "temperature", "top_p"), [(50, 0.7, 0.9), (50, 1.3, 1.0), (1000, 1.0, 0.9)]
)
def test_sampler_draws_from_the_renormalised_nucleus(vocab: int, temperature: float, top_p: float) -> None:
    # vocab=1000 with flat logits: the nucleus is larger than the top-k shortcut, so the full sort is used.
    torch.manual_seed(0)
    logits = torch.randn(1, vocab) * (0.8 if vocab == 50 else 0.1)
    probs = torch.softmax(logits[0] / temperature, -1)
    ordered, order = probs.sort(descending=True)
    keep = (ordered.cumsum(0) - ordered) < top_p
    expected = torch.zeros(vocab)
    expected[order[keep]] = ordered[keep] / ordered[keep].sum()
    if vocab == 1000:
        assert int(keep.sum()) > 256

    sampler = generation._PerRowSampler([torch.Generator().manual_seed(1)], temperature, top_p)
    draws = 4000 if vocab == 50 else 2000
    counts = torch.zeros(vocab)
    for _ in range(draws):
        mask = sampler(None, logits.clone())  # type: ignore[arg-type]
        assert int((mask == 0).sum()) == 1  # exactly one allowed token: greedy search must pick it
        counts[mask[0].argmax()] += 1
    assert set(torch.nonzero(counts).flatten().tolist()) <= set(order[keep].tolist())
    if vocab == 50:
        assert (counts / draws - expected).abs().max() < 0.03
    else:
        assert int((counts > 0).sum()) > 256  # beyond the top-k shortcut


def test_every_decoding_step_is_reported_as_it_happens(policy) -> None:
    # The generation job's ETA starts from these calls, not from the first finished batch.
    model, tokenizer = policy
    steps: list[int] = []
    cfg = CandidateConfig(k=2, seed=3, sampling=SAMPLING, batch_size=2)
    with_steps = generation.generate_candidates(model, tokenizer, PROMPTS[:2], cfg, on_step=steps.append)
    plain = generation.generate_candidates(model, tokenizer, PROMPTS[:2], cfg)
    assert steps and steps[0] == 1
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # counted on across batches
    assert max(steps) <= SAMPLING.max_new_tokens * -(-4 // 2) * (1 + cfg.refill_rounds)
    # Watching the steps changes nothing in what is sampled.
    assert [[c.text for c in cs] for cs in with_steps.candidates] == [
        [c.text for c in cs] for cs in plain.candidates
    ]
