"""Background worker: procrastinate jobs -> round stages -> immutable model versions -> new candidates.

- `worker.tasks`: the jobs (queue and task names are the contract in app/training/queue.py), `run_worker`;
  a training round is a `train` job up to its published versions, then a `generate` job
- `worker.pipeline`: one round, stage by stage; the stages in `worker.stages` (prepare, train, publish,
  generate), each trainer's config built from the round config in `worker.stages.configs`
- database reads and writes: `worker.snapshot` (snapshot, training data), `worker.versions` (model
  versions, publication), `worker.candidates` (new comparison sets); `worker.rounds` (a round's row),
  `worker.progress` (live progress and cancel requests on that row), `worker.scheduler` (auto rounds,
  orphaned rounds)
- the ML core, typed and without database access: `worker.data` (plain training data, the held-out split),
  `worker.models`, `worker.generation`, `worker.reward`, `worker.sft`, `worker.lora_policy` (what the policy
  trainers share), `worker.policy_dpo`, `worker.policy_online` (what RLOO and GRPO share),
  `worker.policy_rloo`, `worker.policy_grpo`, `worker.evaluation` (`eval-rm` scoring),
  `worker.artifacts` (a version's files, written atomically), `worker.store` (where versions are published
  and how each host reads them: the data directory or an fsspec URL, a verified cache)
- `worker.cli`: `rankloop worker` and `rankloop eval-rm`, registered by app/cli.py

From `app` the worker imports only config, db, orm, errors, quality (pure statistics) and the training
contract (app.training: config, queue, rounds, pairs, repository); import-linter checks it (`make lint`).
"""
