"""DPO training throughput and candidate-generation throughput (batched versus one at a time).

    .venv/bin/python bench/ml/dpo_and_generation.py
    .venv/bin/python bench/ml/dpo_and_generation.py --skip-dpo --prompts 8 --k 4 --max-new-tokens 64

DPO: `worker.policy_dpo.train_dpo` (TRL DPOTrainer, fresh LoRA adapter, reference = the base model with the
adapter disabled) on `--pairs` preference pairs from the Open-Assistant demo rankings, with the default
model, no held-out split and no evaluation, so every second is training. Reported: optimizer steps per
second and pairs per second over the Trainer's own `train_runtime` (its training loop, model loading and
saving excluded), the median time of one step from the progress callback, and the whole call's wall time.

Generation: `worker.generation.sample`, the function every candidate goes through. The same rows (prompt,
seed), the same sampling parameters and per-row seeds are generated three ways: all rows in batches of
`--batch-size` across prompts (what `generate_candidates` does), one prompt's K rows per call, and one row
per call. Reported: completion tokens per second (only tokens a row really produced; a finished row that
waits for the rest of its batch adds compute but no tokens) and how many texts are identical across the
three ways (each row samples from its own seeded generator, so they should be, up to float noise).
Figures only, nothing asserted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load, model_parser, oasst_rankings, sample, start_run


def dpo_pairs(n: int, seed: int) -> list[Any]:
    """The best-versus-worst pair of `n` Open-Assistant groups (distinct prompts), seeded choice."""
    from worker.data import PreferencePair

    groups = sample(oasst_rankings(), n, seed)
    return [
        PreferencePair(g.prompt, g.candidates[g.tiers[0][0]], g.candidates[g.tiers[-1][0]]) for g in groups
    ]


def bench_dpo(args: argparse.Namespace) -> dict[str, Any]:
    from worker.policy_dpo import DPOTrainConfig, train_dpo

    pairs = dpo_pairs(args.pairs, args.seed)
    cfg = DPOTrainConfig(
        base_model=args.model,
        epochs=args.dpo_epochs,
        batch_size=args.dpo_batch_size,
        max_length=args.dpo_max_length,
        max_prompt_length=args.dpo_max_prompt_length,
        heldout_fraction=0.0,
        logging_steps=1,
        seed=args.seed,
    )
    stamps: list[float] = []
    load_before = load()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-dpo-") as tmp:
        result = train_dpo(
            cfg,
            pairs,
            Path(tmp) / "policy",
            data_dir=args.data_dir,
            progress=lambda s, n, loss: stamps.append(time.perf_counter()),
        )
    wall = time.perf_counter() - started
    summary = next(h for h in result.log_history if "train_runtime" in h)
    runtime = float(summary["train_runtime"])
    steps = int(result.metrics["steps"])
    expected = math.ceil(len(pairs) / args.dpo_batch_size) * args.dpo_epochs
    if steps != math.ceil(expected):
        print(f"  warning: {steps} steps, {math.ceil(expected)} expected: TRL dropped pairs")
    step_times = [b - a for a, b in itertools.pairwise(stamps)]
    out = {
        "pairs": len(pairs),
        "epochs": args.dpo_epochs,
        "batch_size": args.dpo_batch_size,
        "max_length": args.dpo_max_length,
        "steps": steps,
        "train_runtime": runtime,
        "steps_per_second": steps / runtime,
        "pairs_per_second": len(pairs) * args.dpo_epochs / runtime,
        "median_step_seconds": statistics.median(step_times) if step_times else None,
        "call_seconds": wall,
        "load_before": load_before,
        "load_after": load(),
    }
    median = out["median_step_seconds"] or float("nan")
    print(
        f"DPO: {out['pairs']} pairs x {out['epochs']} epoch(s), {out['batch_size']} pairs/step, max_length "
        f"{out['max_length']}: {steps} steps in {runtime:.1f} s -> {out['steps_per_second']:.3f} steps/s, "
        f"{out['pairs_per_second']:.3f} pairs/s (median step {median:.1f} s; "
        f"whole call with loading and saving {wall:.1f} s); load {load_before} -> {out['load_after']}"
    )
    return out


def generation_prompts(n: int, seed: int) -> list[str]:
    """Root prompts of the demo trees (single-turn questions people asked), seeded choice."""
    roots = sorted({g.prompt for g in oasst_rankings() if not g.prompt.startswith("User: ")})
    return sample(roots, n, seed)


def bench_generation(args: argparse.Namespace) -> dict[str, Any]:
    from worker.generation import SamplingParams
    from worker.generation import sample as generate
    from worker.models import load_causal_lm, pick_device

    model, tokenizer = load_causal_lm(args.model, data_dir=args.data_dir, device=pick_device("auto"))
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens
    )
    prompts = generation_prompts(args.prompts, args.seed)
    rng = random.Random(args.seed)
    rows = [(p, rng.randrange(2**31)) for p in prompts for _ in range(args.k)]
    # Warm-up, untimed: the first generate() in a process pays one-time costs whichever way comes first.
    generate(model, tokenizer, [prompts[0]], [0], SamplingParams(args.temperature, args.top_p, 8))

    def run(chunks: list[list[tuple[str, int]]]) -> tuple[float, int, list[str], str]:
        before = load()
        texts: list[str] = []
        tokens = 0
        started = time.perf_counter()
        for chunk in chunks:
            out = generate(
                model, tokenizer, [p for p, _ in chunk], [s for _, s in chunk], params, max_prompt_tokens=512
            )
            texts += [text for text, _np, _nc, _f in out]
            tokens += sum(nc for _t, _np, nc, _f in out)
        return time.perf_counter() - started, tokens, texts, before

    ways = {
        f"batched across prompts ({args.batch_size} rows/call)": [
            rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)
        ],
        f"one prompt at a time ({args.k} rows/call)": [
            rows[i : i + args.k] for i in range(0, len(rows), args.k)
        ],
        "one row at a time": [[r] for r in rows],
    }
    print(
        f"Generation: {len(prompts)} prompts x {args.k} candidates = {len(rows)} rows, temperature "
        f"{args.temperature}, top_p {args.top_p}, max_new_tokens {args.max_new_tokens}, seed {args.seed}"
    )
    results: dict[str, Any] = {}
    reference: list[str] | None = None
    for name, chunks in ways.items():
        seconds, tokens, texts, before = run(chunks)
        reference = reference or texts
        same = sum(a == b for a, b in zip(reference, texts, strict=True))
        results[name] = {
            "calls": len(chunks),
            "seconds": seconds,
            "completion_tokens": tokens,
            "tokens_per_second": tokens / seconds,
            "texts_identical_to_batched": same,
            "load_before": before,
            "load_after": load(),
        }
        print(
            f"  {name:42} {len(chunks):3d} calls {seconds:7.1f} s {tokens:6d} tokens "
            f"{tokens / seconds:7.1f} tokens/s  same text as batched {same}/{len(rows)}  "
            f"load {before} -> {results[name]['load_after']}"
        )
    names = list(results)
    for other in names[1:]:
        print(
            f"  batched / {other}: "
            f"{results[names[0]]['tokens_per_second'] / results[other]['tokens_per_second']:.2f}x tokens/s"
        )
    return {"rows": len(rows), "ways": results}


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--pairs", type=int, default=16, help="DPO training pairs")
    parser.add_argument("--dpo-epochs", type=float, default=1.0)
    parser.add_argument("--dpo-batch-size", type=int, default=4)
    parser.add_argument("--dpo-max-length", type=int, default=256)
    parser.add_argument(
        "--dpo-max-prompt-length",
        type=int,
        default=128,
        help="prompt tokens kept (TRL drops over-long prompts)",
    )
    parser.add_argument("--prompts", type=int, default=8, help="generation prompts")
    parser.add_argument("--k", type=int, default=4, help="candidates per prompt")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per batched generate() call")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "machine": start_run(args.threads),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    if not args.skip_dpo:
        report["dpo"] = bench_dpo(args)
    if not args.skip_generation:
        report["generation"] = bench_generation(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
