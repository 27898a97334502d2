"""Two processes or one: is a round's independent work faster split (`RANKLOOP_PARALLEL_STAGES`)?

    .venv/bin/python bench/ml/parallel_stages.py --data-dir DIR [--rankings 8] [--threads 2]

On the default model (read from `<data-dir>/models/`), LoRA all-linear on the top third, 256 tokens, CPU:

- training: the reward model (`train_reward_model`) and a ranking-DPO policy (`train_dpo_ranking`), one
  epoch each on `--rankings` Open-Assistant groups, (a) one after the other in this process on `--threads`
  threads, (b) the reward model in a child process (worker/launch.py) on half the threads beside the policy
  here on the other half, the policy taking the child's threads back once it is done (what the worker does);
- generation: `--prompts` prompts x 4 replies from the base model (worker.generation), (a) in this process
  on `--threads` threads, (b) on one thread, (c) half in a child process on half the threads, half here.

Prints the wall seconds of each; nothing asserted. Run it on a quiet machine: the question is how the
machine's cores share the work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, model_parser, oasst_rankings, sample, start_run


def configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from worker.dpo_shared import DPOTrainConfig
    from worker.reward import RewardConfig

    common = {
        "base_model": args.model,
        "epochs": 1.0,
        "batch_size": 4,
        "lora_top_layers": 0.34,
        "lora_target_modules": "all-linear",
        "max_length": 256,
        "heldout_fraction": 0.0,
        "device": "cpu",
    }
    return RewardConfig(**common), DPOTrainConfig(**common)


def training(args: argparse.Namespace, rankings: list[Any], tmp: Path, split: bool) -> float:
    import torch

    from worker import launch
    from worker.policy_dpo_ranking import train_dpo_ranking
    from worker.reward import train_reward_model

    rm_cfg, dpo_cfg = configs(args)
    threads = args.threads
    t0 = time.perf_counter()
    if not split:
        torch.set_num_threads(threads)
        train_reward_model(rm_cfg, rankings, tmp / "rm-a", data_dir=args.data_dir)
        train_dpo_ranking(dpo_cfg, rankings, tmp / "dpo-a", data_dir=args.data_dir)
        return time.perf_counter() - t0
    child = launch.start_stage(
        "reward",
        rm_cfg,
        rankings,
        tmp / "rm-b",
        threads=max(1, threads - threads // 2),
        data_dir=args.data_dir,
    )
    torch.set_num_threads(max(1, threads // 2))

    def regain(step: int, total: int, loss: float) -> None:
        if not child.running() and torch.get_num_threads() != threads:
            done = time.perf_counter() - t0
            print(f"    reward model done after {done:.0f} s; policy back on {threads} threads")
            torch.set_num_threads(threads)

    try:
        train_dpo_ranking(dpo_cfg, rankings, tmp / "dpo-b", data_dir=args.data_dir, progress=regain)
        policy_done = time.perf_counter() - t0
        child.wait()
    finally:
        child.stop()
        torch.set_num_threads(threads)
    print(f"    policy done after {policy_done:.0f} s")
    return time.perf_counter() - t0


def generation(args: argparse.Namespace, prompts: list[str], mode: str) -> float:
    import torch

    from worker import launch
    from worker.generation import CandidateConfig, GenerationTask, SamplingParams, generate_tasks

    cfg = CandidateConfig(
        k=4, sampling=SamplingParams(max_new_tokens=args.max_new_tokens), batch_size=32, seed=1
    )
    half = len(prompts) // 2
    tasks = [GenerationTask(args.model, None, None, prompts[:half], cfg)]
    tasks.append(GenerationTask(args.model, None, None, prompts[half:], cfg))
    t0 = time.perf_counter()
    if mode == "split":
        child = launch.start_stage(
            "generate", tasks[:1], threads=max(1, args.threads - args.threads // 2), data_dir=args.data_dir
        )
        torch.set_num_threads(max(1, args.threads // 2))
        try:
            generate_tasks(tasks[1:], data_dir=args.data_dir)
            child.wait()
        finally:
            child.stop()
    else:
        torch.set_num_threads(args.threads if mode == "threads" else 1)
        generate_tasks(tasks, data_dir=args.data_dir)
    torch.set_num_threads(args.threads)
    return time.perf_counter() - t0


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--rankings", type=int, default=8, help="Open-Assistant ranked groups")
    parser.add_argument("--prompts", type=int, default=16, help="generation prompts (4 replies each)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all (split: half each)")
    parser.add_argument("--only", choices=["training", "generation"])
    args = parser.parse_args()

    start_run(args.threads)
    rankings = sample(oasst_rankings(), args.rankings, 0, key=lambda r: len(r.candidates))
    prompts = [r.prompt for r in sample(oasst_rankings(), args.prompts, 1, key=lambda r: len(r.candidates))]
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-parallel-") as tmp:
        if args.only != "generation":
            for split in (False, True):
                before = load()
                wall = training(args, rankings, Path(tmp), split)
                what = "split, reward in a child" if split else f"one process, {args.threads} threads"
                print(f"training ({what}): {wall:.1f} s | load {before} -> {load()}", flush=True)
        if args.only != "training":
            for mode in ("threads", "one", "split"):
                before = load()
                wall = generation(args, prompts, mode)
                what = {"threads": f"{args.threads} threads", "one": "1 thread", "split": "split"}[mode]
                print(f"generation ({what}): {wall:.1f} s | load {before} -> {load()}", flush=True)


if __name__ == "__main__":
    main()
