"""Background worker: the ML core (candidate generation, reward model, DPO policy, model artifacts).

Entry points for the orchestrator (typed, no database access):
- `worker.models`: `resolve_model_path`, `load_causal_lm`, `format_prompt`, `pick_device`
- `worker.generation`: `generate_candidates`, `generate_for_prompts`, `sample`
- `worker.reward`: `train_reward_model`, `evaluate_reward_model`, `load_reward_model`, `ranking_loss`
- `worker.policy_dpo`: `train_dpo`, `reward_labelled_pairs`
- `worker.artifacts`: `write_version`, `read_manifest`, `verify_version`
"""
