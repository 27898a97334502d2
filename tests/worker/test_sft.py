"""LoRA SFT on a tiny random Llama: held-out prompts, early stopping on their loss, the adapter's shape."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.worker.conftest import PLAIN_WORDS
from worker import lora_policy
from worker.sft import Demonstration, SFTTrainConfig, train_sft


def random_demonstrations(n: int, seed: int) -> list[Demonstration]:
    """Replies with nothing to generalise: learning the training ones by heart raises held-out loss."""
    rng = random.Random(seed)
    return [
        Demonstration(
            " ".join(rng.choice(PLAIN_WORDS) for _ in range(4)),
            " ".join(rng.choice(PLAIN_WORDS) for _ in range(6)),
        )
        for _ in range(n)
    ]


def _cfg(path: Path, **overrides) -> SFTTrainConfig:
    return SFTTrainConfig(**({"base_model": str(path), "batch_size": 4, "max_length": 64} | overrides))


def _adapter_config(out: Path) -> dict:
    return json.loads((out / "adapter_config.json").read_text())


def test_sft_holds_out_prompts_and_stops_once_their_loss_stops_improving(
    tiny_llama: Path, tmp_path: Path
) -> None:
    calls: list[tuple[int, int, float]] = []
    out = tmp_path / "sft"
    result = train_sft(
        _cfg(tiny_llama, lr=2e-2, epochs=20, heldout_fraction=0.25, eval_every=1, patience=2),
        random_demonstrations(16, seed=0),
        out,
        progress=lambda s, n, loss: calls.append((s, n, loss)),
    )
    m = result.metrics
    assert (m["demonstrations"], m["train_demonstrations"], m["heldout_demonstrations"]) == (16, 12, 4)
    assert m["heldout_prompts"] == 4
    assert m["stopped_early"] and m["steps"] < m["total_steps"]
    evals = [(e["step"], e["eval_loss"]) for e in result.log_history if "eval_loss" in e]
    # Patience 2: the last two evaluations did not beat the best one, which is the adapter kept.
    best_step, best_loss = min(evals, key=lambda e: e[1])
    assert m["heldout_loss"] == pytest.approx(best_loss) and m["best_step"] == best_step
    assert best_step < m["steps"] and all(loss >= best_loss for _, loss in evals[-2:])
    assert calls and {c[1] for c in calls} == {m["total_steps"]}
    assert (out / "adapter_model.safetensors").is_file() and not (out / ".checkpoints").exists()
    assert json.loads((out / lora_policy.POLICY_CONFIG_FILE).read_text())["stage"] == "sft"


def test_fresh_adapter_takes_the_configured_shape_and_a_continued_one_keeps_it(
    tiny_llama: Path, tmp_path: Path
) -> None:
    # One prompt: nothing can be held out, so training runs without evaluation.
    demos = [Demonstration("tell me about the sun", "the sun is big and happy")] * 3
    shape = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.2, "lora_target_modules": ["q_proj", "o_proj"]}
    result = train_sft(_cfg(tiny_llama, **shape), demos, tmp_path / "first")
    m = result.metrics
    assert m["heldout_demonstrations"] == 0 and m["heldout_loss"] is None
    assert not m["stopped_early"] and m["best_step"] == m["steps"] >= 1
    assert not any("eval_loss" in e for e in result.log_history)
    first = _adapter_config(tmp_path / "first")
    assert (first["r"], first["lora_alpha"], first["lora_dropout"]) == (4, 8, 0.2)
    assert sorted(first["target_modules"]) == ["o_proj", "q_proj"]

    again = train_sft(
        _cfg(tiny_llama, lora_r=16, lora_dropout=0.0, lora_target_modules=None),
        demos,
        tmp_path / "second",
        previous_adapter=tmp_path / "first",
    )
    assert again.metrics["continued_from_previous_policy"]
    second = _adapter_config(tmp_path / "second")
    assert (second["r"], second["lora_dropout"], sorted(second["target_modules"])) == (
        4,
        0.2,
        ["o_proj", "q_proj"],
    )


def test_a_step_cap_above_the_epochs_updates_leaves_the_epochs_in_charge(
    tiny_llama: Path, tmp_path: Path
) -> None:
    # policy_max_steps (32 by default) is a cap: with 4 training demonstrations in batches of 2, one epoch is
    # 2 updates. The Trainer's own max_steps would run all 32 (16 epochs), and progress read "step 7 / 2".
    calls: list[tuple[int, int]] = []

    class Progress:
        def __call__(self, step: int, total: int, loss: float) -> None:
            calls.append((step, total))

        def eta(self, step: int, total: int, seconds: float | None) -> None:
            calls.append((step, total))

    result = train_sft(
        _cfg(tiny_llama, epochs=1, batch_size=2, max_steps=32, heldout_fraction=0.34),
        random_demonstrations(6, seed=1),
        tmp_path / "sft",
        progress=Progress(),
    )
    m = result.metrics
    assert m["train_demonstrations"] == 4
    assert (m["steps"], m["total_steps"]) == (2, 2)
    assert calls and {total for _, total in calls} == {2} and max(step for step, _ in calls) == 2
