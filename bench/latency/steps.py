"""Per-step timing of the round's two trainers with the round's default config, on the demo's OA rankings.

A short probe, not a round: `--reward-steps N` reward-model steps and `--dpo-steps M` DPO updates (0 skips),
each printed with its wall time since the trainer was called and the load average, so a before/after
comparison needs minutes instead of the full round. The trainers' configs are built the way the round's
stages build them (worker/stages/configs.py) from `RoundConfig` defaults plus `--set key=value` overrides.

    PYTHONPATH=. .venv/bin/python bench/latency/steps.py --reward-steps 6 --dpo-steps 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ml.common import load, oasst_rankings, start_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reward-steps", type=int, default=6, help="0: the whole stage; -1: skip")
    ap.add_argument("--dpo-steps", type=int, default=4, help="0: the round's policy_max_steps; -1: skip")
    ap.add_argument("--set", action="append", default=[], help="round config override key=value")
    ap.add_argument("--data-dir", default=".rankloop", help="where the default model is cached")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    start_run(args.threads)

    from app.training.config import RoundConfig, parse_assignments
    from worker.data import ranking_to_pairs, split_by_prompt
    from worker.policy_dpo import train_dpo
    from worker.reward import train_reward_model
    from worker.stages import configs

    cfg = RoundConfig.resolve(parse_assignments(args.set))
    data_dir = Path(args.data_dir)
    rankings = oasst_rankings()
    print(f"{len(rankings)} rankings; round config overrides: {args.set or 'none'}")

    def clock(label: str):
        t0 = time.perf_counter()
        last = [t0]

        class Clock:
            eta_seen: float | None = None

            def __call__(self, step: int, total: int, loss: float) -> None:
                now = time.perf_counter()
                print(
                    f"  {label} {step}/{total} loss {loss:.4f} at {now - t0:6.1f} s "
                    f"(+{now - last[0]:5.1f} s, CPU {time.process_time():.0f} s) | load {load()}",
                    flush=True,
                )
                last[0] = now

            def eta(self, step: int, total: int, seconds: float | None) -> None:
                if self.eta_seen is None and seconds is not None:
                    self.eta_seen = time.perf_counter() - t0
                    print(
                        f"  {label} first ETA {seconds:.0f} s at {self.eta_seen:.1f} s, step {step}/{total}"
                    )

        return Clock()

    with tempfile.TemporaryDirectory() as tmp:
        if args.reward_steps >= 0:
            rcfg = replace(configs.reward_config(cfg), max_steps=max(0, args.reward_steps))
            print(
                f"reward: max_length {rcfg.max_length}, batch {rcfg.batch_size} | load {load()}", flush=True
            )
            t0 = time.perf_counter()
            res = train_reward_model(
                rcfg, rankings, Path(tmp) / "reward", data_dir=data_dir, progress=clock("reward")
            )
            print(
                f"reward done in {time.perf_counter() - t0:.1f} s: {res.metrics} | load {load()}", flush=True
            )
        if args.dpo_steps >= 0:
            split = split_by_prompt(rankings, cfg.heldout_fraction, cfg.seed)
            pairs = ranking_to_pairs(split.train)
            dcfg = configs.dpo_config(cfg)
            if args.dpo_steps > 0:
                dcfg = replace(dcfg, max_steps=args.dpo_steps)
            print(f"dpo: {len(pairs)} pairs, max_length {dcfg.max_length} | load {load()}", flush=True)
            t0 = time.perf_counter()
            dres = train_dpo(dcfg, pairs, Path(tmp) / "dpo", data_dir=data_dir, progress=clock("dpo"))
            print(f"dpo done in {time.perf_counter() - t0:.1f} s: {dres.metrics} | load {load()}", flush=True)
    print(f"pid {os.getpid()} done | load {load()}")


if __name__ == "__main__":
    main()
