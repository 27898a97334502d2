"""The frozen-prefix cache (worker/frozen_prefix.py): seconds per training step with and without it.

    .venv/bin/python bench/ml/frozen_prefix_cache.py --threads 1

Both hand-written trainers on the default model (smollm2-135m-instruct, 30 layers, read from
`<data-dir>/models/`), LoRA all-linear on the top `--lora-top-layers` of the layers (0.34: the top 10, so the
cache skips 20), `--max-length` tokens, fp32 on CPU, no held-out set (no evaluation), on `--rankings`
Open-Assistant ranked groups (stratified by K, real replies, so sequences reach the length cap):

- ranking DPO (`worker.policy_dpo_ranking.train_dpo_ranking`), one epoch: the reference pass fills the cache,
  so every step uses it; its `ref_seconds` are reported apart;
- the reward model (`worker.reward.train_reward_model`), two epochs: the first epoch's steps fill the cache
  as they go (full passes), the second's use it.

Each runs twice, `prefix_cache_mb=0` (every pass whole) and the default. A step's seconds: wall and
process CPU time between two progress callbacks (one per step), so the first step of a run is not counted.
Figures only, nothing asserted; both runs of a trainer should end with the same loss (the cache changes no
number).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, model_parser, oasst_rankings, sample, start_run


class StepClock:
    """Wall and process CPU seconds between consecutive progress callbacks (one per optimizer step): the
    first step, which follows the reference pass or an evaluation, has no interval. With one torch thread the
    CPU seconds hardly move when other processes share the cores; the wall seconds do."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.last: tuple[float, float] | None = None

    def __call__(self, step: int, total: int, loss: float) -> None:
        now = (time.perf_counter(), time.process_time())
        if self.last is not None:
            self.wall.append(now[0] - self.last[0])
            self.cpu.append(now[1] - self.last[1])
        self.last = now


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run_dpo(args: argparse.Namespace, rankings: list[Any], cache_mb: int, out: Path) -> dict[str, Any]:
    from worker.dpo_shared import DPOTrainConfig
    from worker.policy_dpo_ranking import train_dpo_ranking

    cfg = DPOTrainConfig(
        base_model=args.model,
        epochs=1.0,
        batch_size=args.batch_size,
        lora_top_layers=args.lora_top_layers,
        lora_target_modules="all-linear",
        max_length=args.max_length,
        heldout_fraction=0.0,
        prefix_cache_mb=cache_mb,
        device="cpu",
    )
    clock = StepClock()
    result = train_dpo_ranking(cfg, rankings, out, data_dir=args.data_dir, progress=clock)
    m = result.metrics
    return {
        "step_seconds": mean(clock.wall),
        "step_cpu_seconds": mean(clock.cpu),
        "ref_seconds": m["ref_seconds"],
        "steps": m["steps"],
        "train_loss": m["train_loss"],
        **{k: v for k, v in m.items() if k.startswith("prefix_")},
    }


def run_reward(args: argparse.Namespace, rankings: list[Any], cache_mb: int, out: Path) -> dict[str, Any]:
    from worker.reward import RewardConfig, train_reward_model

    cfg = RewardConfig(
        base_model=args.model,
        epochs=2.0,
        batch_size=args.batch_size,
        lora_top_layers=args.lora_top_layers,
        lora_target_modules="all-linear",
        max_length=args.max_length,
        heldout_fraction=0.0,
        prefix_cache_mb=cache_mb,
        device="cpu",
    )
    clock = StepClock()
    result = train_reward_model(cfg, rankings, out, data_dir=args.data_dir, progress=clock)
    m = result.metrics
    half = m["steps"] // 2 - 1  # intervals ending in the first epoch's steps 2..n/2
    return {
        "epoch1_step_seconds": mean(clock.wall[:half]),
        "epoch2_step_seconds": mean(clock.wall[half:]),
        "epoch1_step_cpu_seconds": mean(clock.cpu[:half]),
        "epoch2_step_cpu_seconds": mean(clock.cpu[half:]),
        "steps": m["steps"],
        "last_train_loss": m["last_train_loss"],
        **{k: v for k, v in m.items() if k.startswith("prefix_")},
    }


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--rankings", type=int, default=8, help="Open-Assistant ranked groups")
    parser.add_argument("--batch-size", type=int, default=2, help="rankings per step")
    parser.add_argument("--max-length", type=int, default=256, help="prompt + reply tokens")
    parser.add_argument("--lora-top-layers", type=float, default=0.34)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--only", choices=["dpo", "reward"], help="one trainer only")
    args = parser.parse_args()

    start_run(args.threads)
    rankings = sample(oasst_rankings(), args.rankings, args.seed, key=lambda r: len(r.candidates))
    print(f"{len(rankings)} rankings, {sum(len(r.candidates) for r in rankings)} candidates")
    runners = {"dpo": run_dpo, "reward": run_reward}
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-prefix-") as tmp:
        for name, runner in runners.items():
            if args.only and name != args.only:
                continue
            res = {}
            for label, mb in (("whole", 0), ("cached", 2048)):
                before = load()
                res[label] = runner(args, rankings, mb, Path(tmp) / f"{name}-{label}")
                print(f"  {name} {label}: {res[label]} | load {before} -> {load()}")
            if name == "dpo":
                pairs = [("", "step_seconds"), (" CPU", "step_cpu_seconds")]
            else:
                pairs = [(" epoch 2", "epoch2_step_seconds"), (" epoch 2 CPU", "epoch2_step_cpu_seconds")]
                print(
                    f"reward epoch 1 (filling the cache): {res['whole']['epoch1_step_seconds']:.2f} -> "
                    f"{res['cached']['epoch1_step_seconds']:.2f} s/step"
                )
            for label, key in pairs:
                w, c = res["whole"][key], res["cached"][key]
                print(f"{name}{label}: {w:.2f} -> {c:.2f} s/step, speed-up {w / c:.2f}x")


if __name__ == "__main__":
    main()
