"""The round config bench/loop queues its rounds with unless told otherwise."""

# The round config of the run that met the target on the 2-core CPU (bench/RESULTS.md, "Runs of
# 2026-12-01": lexical_warmth 0.84 against the base after 4 rounds). The product's own defaults are sized for
# real projects on real hardware (512 tokens, LoRA on every layer, pairwise DPO capped at 32 updates); here a
# round must fit in minutes and still move the policy: Plackett-Luce DPO reads a K=4 ranking in 4 sequences,
# so 3 epochs at 1e-3 fit, on the linear modules of the top third of the layers, in updates of 2 x 4
# rankings (one batch of 8 took the worker to 12 GB). `--product-defaults` drops these; --set wins over them.
LOOP_ROUND_DEFAULTS = {
    "max_length": "256",
    "max_prompt_length": "96",
    "lora_top_layers": "0.34",
    "lora_target_modules": "all-linear",
    "synthetic_prompts": "0",
    "eval_prompts": "8",
    "max_rankings": "64",
    "generation_batch_size": "32",
    "reward_learning_rate": "2e-4",
    "reward_epochs": "2",
    "policy_method": "dpo_ranking",
    "policy_learning_rate": "1e-3",
    "policy_epochs": "3",
    "policy_max_steps": "0",
    "policy_batch_size": "4",
    "policy_grad_accum": "2",
}
