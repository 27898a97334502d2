"""One base model serves several projects' LoRA adapters (PEFT multi-adapter): the base is loaded once,
and each project's generation uses its own adapter, exactly as if loaded alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker import generation
from worker.adapters import AdapterHost
from worker.generation import CandidateConfig, SamplingParams

PROMPTS = ["tell me a story about the sun", "write a poem", "why is the sky blue ?"]
GREEDY = CandidateConfig(k=1, seed=0, sampling=SamplingParams(temperature=0.0, max_new_tokens=10))


def _adapter(base: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    # Non-zero (LoRA starts as a no-op otherwise) and large enough to change greedy replies.
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, init_lora_weights=False))
    lora.save_pretrained(str(out))
    return out


def _texts(result: generation.GenerationResult) -> list[str]:
    return [c[0].text for c in result.candidates]


def test_three_projects_generate_on_one_base_loaded_once(tiny_llama: Path, tmp_path: Path) -> None:
    adapters = {f"project-{i}": _adapter(tiny_llama, tmp_path / f"p{i}", seed=i) for i in range(3)}
    host = AdapterHost(str(tiny_llama))
    base = host.base_module
    replies: dict[str, list[str]] = {}
    for _ in range(2):  # back and forth between projects: adapters switch, nothing reloads
        for name, path in adapters.items():
            with host.use(name, path) as (model, tokenizer):
                replies[name] = _texts(generation.generate_candidates(model, tokenizer, PROMPTS, GREEDY))
        with host.use(None, None) as (model, tokenizer):
            plain = _texts(generation.generate_candidates(model, tokenizer, PROMPTS, GREEDY))
    assert host.base_loads == 1
    assert host.base_module is base and sorted(host.adapters) == sorted(adapters)

    # Each project's replies are its own adapter's: the same as loading that policy on its own.
    for name, path in adapters.items():
        alone = generation.generate_for_prompts(str(tiny_llama), PROMPTS, GREEDY, adapter_dir=path)
        assert replies[name] == _texts(alone), name
    assert plain == _texts(generation.generate_for_prompts(str(tiny_llama), PROMPTS, GREEDY))
    assert len({tuple(r) for r in replies.values()}) == 3


def _reward_model(base: Path, out: Path, seed: int) -> Path:
    import json

    from worker import reward
    from worker.models import load_tokenizer

    cfg = reward.RewardConfig(base_model=str(base), max_length=64)
    tokenizer = load_tokenizer(str(base), padding_side="right")
    torch.manual_seed(seed)
    model = reward.build_reward_model(str(base), tokenizer, cfg)
    with torch.no_grad():  # LoRA B starts at zero: make each project's adapter change the scores
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    meta = {"base_model": str(base), "max_length": cfg.max_length, "kind": "reward"}
    (out / reward.REWARD_CONFIG_FILE).write_text(json.dumps(meta))
    return out


def test_three_projects_score_on_one_reward_base_loaded_once(tiny_llama: Path, tmp_path: Path) -> None:
    from worker.adapters import RewardHost
    from worker.reward import load_reward_model

    models = {f"project-{i}": _reward_model(tiny_llama, tmp_path / f"rm{i}", seed=i) for i in range(3)}
    exchanges = [(p, r) for p in PROMPTS for r in ("yes, gladly", "no.")]
    host = RewardHost(str(tiny_llama))
    scores: dict[str, list[float]] = {}
    for _ in range(2):  # back and forth between projects: adapters and heads switch, nothing reloads
        for name, path in models.items():
            scores[name] = host.use(name, path).score_exchanges(exchanges)
    assert host.base_loads == 1 and sorted(host.adapters) == sorted(models)

    # Each project's scores are its own reward model's: the same as loading it on its own.
    for name, path in models.items():
        alone = load_reward_model(path).score_exchanges(exchanges)
        assert scores[name] == pytest.approx(alone, abs=1e-5), name
    assert len({tuple(round(v, 4) for v in s) for s in scores.values()}) == 3
