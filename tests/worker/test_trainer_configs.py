"""Each trainer's config is built from the round config in worker/stages/configs.py: every knob lands."""

from __future__ import annotations

from app.config import get_settings
from app.training.config import RoundConfig
from worker.stages import configs


def _round() -> RoundConfig:
    return RoundConfig.resolve(
        {
            "base_model": "some/model",
            "seed": 7,
            "sft_learning_rate": 0.003,
            "sft_epochs": 3,
            "reward_learning_rate": 0.002,
            "reward_epochs": 4,
            "reward_batch_size": 6,
            "reward_weight_decay": 0.01,
            "reward_margin_scale": 0.5,
            "reward_patience": 5,
            "reward_min_heldout_prompts": 11,
            "heldout_fraction": 0.3,
            "max_length": 300,
            "max_prompt_length": 100,
            "policy_learning_rate": 0.001,
            "policy_epochs": 2,
            "policy_batch_size": 8,
            "policy_grad_accum": 3,
            "policy_weight_decay": 0.02,
            "policy_heldout_fraction": 0.25,
            "policy_patience": 4,
            "policy_min_heldout_prompts": 3,
            "dpo_beta": 0.3,
            "rloo_generations": 3,
            "rloo_beta": 0.07,
            "grpo_generations": 2,
            "grpo_beta": 0.02,
            "grpo_scale_rewards": "none",
            "lora_r": 4,
            "lora_alpha": 12,
            "lora_dropout": 0.1,
            "lora_target_modules": "q_proj,v_proj",
            "max_new_tokens": 40,
            "temperature": 0.0,
            "top_p": 0.9,
            "generation_batch_size": 5,
            "dedupe_threshold": 0.8,
        },
        get_settings(),
    )


LORA = {"lora_r": 4, "lora_alpha": 12, "lora_dropout": 0.1, "lora_target_modules": ["q_proj", "v_proj"]}
POLICY_RUN = {
    "base_model": "some/model",
    "seed": 7,
    "heldout_fraction": 0.25,
    "patience": 4,
    "min_heldout_prompts": 3,
}


def _has(config: object, expected: dict[str, object]) -> None:
    assert {k: getattr(config, k) for k in expected} == expected


def test_sft_config_takes_its_own_rate_and_the_policy_run_knobs():
    _has(
        configs.sft_config(_round()),
        {"lr": 0.003, "epochs": 3, "batch_size": 8, "weight_decay": 0.02, "max_length": 300}
        | LORA
        | POLICY_RUN,
    )


def test_reward_config_takes_the_reward_knobs_and_the_rounds_heldout_share():
    _has(
        configs.reward_config(_round()),
        {
            "base_model": "some/model",
            "seed": 7,
            "lr": 0.002,
            "epochs": 4,
            "batch_size": 6,
            "weight_decay": 0.01,
            "margin_scale": 0.5,
            "heldout_fraction": 0.3,
            "min_heldout_prompts": 11,
            "patience": 5,
            "max_length": 300,
        }
        | LORA,
    )


def test_dpo_config_takes_the_policy_knobs():
    _has(
        configs.dpo_config(_round()),
        {
            "beta": 0.3,
            "lr": 0.001,
            "epochs": 2,
            "batch_size": 8,
            "grad_accum": 3,
            "weight_decay": 0.02,
            "max_length": 300,
            "max_prompt_length": 100,
        }
        | LORA
        | POLICY_RUN,
    )


def test_rloo_config_counts_samples_per_step_and_never_samples_greedily():
    _has(
        configs.rloo_config(_round()),
        {
            "lr": 0.001,
            "epochs": 2,
            "prompts_per_step": 2,  # 8 samples per step / 3 generations per prompt
            "num_generations": 3,
            "beta": 0.07,
            "weight_decay": 0.02,
            "max_prompt_length": 100,
            "max_completion_length": 40,
            "temperature": 1.0,
            "top_p": 0.9,
        }
        | LORA
        | POLICY_RUN,
    )


def test_grpo_config_takes_its_own_group_size_kl_and_scaling_and_the_online_knobs():
    _has(
        configs.grpo_config(_round()),
        {
            "lr": 0.001,
            "epochs": 2,
            "prompts_per_step": 4,  # 8 samples per step / 2 generations per prompt
            "num_generations": 2,
            "beta": 0.02,
            "scale_rewards": "none",
            "weight_decay": 0.02,
            "max_prompt_length": 100,
            "max_completion_length": 40,
            "temperature": 1.0,
            "top_p": 0.9,
        }
        | LORA
        | POLICY_RUN,
    )


def test_candidate_config_takes_the_sampling_knobs():
    cand = configs.candidate_config(_round(), 3, 11)
    _has(cand, {"k": 3, "seed": 11, "batch_size": 5, "max_prompt_tokens": 100, "dedupe_threshold": 0.8})
    _has(cand.sampling, {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 40})
