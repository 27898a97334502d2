"""Policy DPO on rankings: ours (Plackett-Luce, one term per ranking) versus TRL's DPOTrainer (pairs).

    .venv/bin/python bench/ml/dpo_ranking_vs_trl.py --threads 1

Data: the synthetic clear-signal K=4 rankings of bench/ml/reward_vs_trl.py (`--data fluency`): an
Open-Assistant prompt and the first words of a human reply, ranked above copies with 30%, 60% and 100% of
their words replaced by random words. Whole prompts are held out (every ranking has its own prompt).

Both sides train the same backbone (`--model`, by default the real default model smollm2-135m-instruct,
read from `<data-dir>/models/`) with the same fresh LoRA (built by `worker.lora_policy.policy_model` and
seeded identically, so the initial adapters are equal), the same beta, learning rate, AdamW, linear
schedule with the same warm-up share, gradient clip 1, dropout off, fp32 on CPU, for the same epochs on the
same training rankings, LoRA on the top `--lora-top-layers` of the layers, no gradient checkpointing (TRL's
default is on), with reference log-probabilities precomputed once before training:

- ours: `worker.policy_dpo_ranking.train_dpo_ranking`, `--batch-size` rankings per step, each candidate
  once per step (K sequences per ranking);
- TRL: `trl.DPOTrainer` on the rankings expanded into every pair they imply (C(4,2) = 6 per ranking), in its
  conversational format (what `worker.policy_dpo.train_dpo` feeds it), 2 x `--batch-size` pairs per step
  (`precompute_ref_log_probs=True`), so both push the same number of sequences through a forward pass;
  TRL then makes 3x more optimizer updates per epoch.

Throughput = training rankings x epochs / seconds, where the seconds run from the training data's
tokenisation to the last optimizer step: they include the reference pass and exclude model loading,
evaluation and saving (ours: its `train_seconds` metric; TRL: the DPOTrainer constructor, which tokenises
and precomputes the reference, plus `train()`, with no evaluation or checkpoint). Held-out accuracy: both
saved adapters are loaded back the same way and scored by the same code
(`worker.policy_dpo_ranking.evaluate_rewards`): the implicit reward beta * (log pi - log pi_ref) of every
held-out candidate, the reference being the base model, and the share of the held-out rankings' pairs it
orders correctly. Figures only, nothing asserted.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from common import fluency_rankings, load, model_parser, start_run
from measuring import PassCounter


def run_ours(cfg: Any, train: list[Any], out: Path, data_dir: Path) -> dict[str, Any]:
    from worker.policy_dpo_ranking import train_dpo_ranking

    result = train_dpo_ranking(cfg, train, out, data_dir=data_dir)
    cpu_end = time.process_time()  # (after saving the adapter: a fraction of a second)
    m = result.metrics
    return {
        "seconds": m["train_seconds"],
        "ref_seconds": m["ref_seconds"],
        "steps": m["steps"],
        "cpu_end": cpu_end,
    }


def run_trl(cfg: Any, train: list[Any], out: Path, data_dir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from worker.data import ranking_to_pairs
    from worker.dpo_shared import schedule
    from worker.lora_policy import policy_model, write_policy
    from worker.models import load_tokenizer, resolve_model_path
    from worker.policy_dpo import _to_records

    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    model, lora = policy_model(path, None, cfg)
    torch.manual_seed(cfg.seed)  # as ours seeds it: the same initial adapter
    model = get_peft_model(model, lora)
    pairs = ranking_to_pairs(train)
    per_step = 2 * cfg.batch_size
    total = math.ceil(math.ceil(len(pairs) / per_step) * cfg.epochs)
    warmup, _ = schedule(total, cfg.warmup_ratio, None)
    args = DPOConfig(
        output_dir=str(out / "trainer"),
        beta=cfg.beta,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_step,
        weight_decay=cfg.weight_decay,
        warmup_steps=warmup,
        lr_scheduler_type="linear",
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=2 * per_step,
        # TRL's DPOConfig turns it on by default; ours (and worker.policy_dpo) run without it.
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=False,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
    )
    records = Dataset.from_list(_to_records(pairs, bool(getattr(tokenizer, "chat_template", None))))
    started = time.perf_counter()
    trainer = DPOTrainer(model=model, args=args, train_dataset=records, processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    seconds, cpu_end = time.perf_counter() - started, time.process_time()
    write_policy(
        trainer.accelerator.unwrap_model(trainer.model), tokenizer, out, {"base_model": cfg.base_model}
    )
    return {
        "seconds": seconds,
        "steps": int(trainer.state.global_step),
        "pairs": len(pairs),
        "cpu_end": cpu_end,
    }


def heldout_eval(cfg: Any, heldout: list[Any], adapters: dict[str, Path], data_dir: Path) -> dict[str, Any]:
    """Implicit-reward accuracy of each adapter on the held-out rankings' pairs, by the same code."""
    from worker import models
    from worker.policy_dpo_ranking import encode_rankings, evaluate_rewards, ranking_logps

    cpu = models.pick_device("cpu")
    base, tokenizer = models.load_causal_lm(cfg.base_model, data_dir=data_dir, device=cpu)
    encoded = encode_rankings(tokenizer, heldout, cfg.max_length, cfg.max_prompt_length)
    pad = int(tokenizer.pad_token_id)
    for e, ref in zip(encoded, ranking_logps(base, encoded, pad, 8), strict=True):
        e.ref_logps = ref
    out: dict[str, Any] = {}
    for name, adapter in adapters.items():
        model, _ = models.load_causal_lm(cfg.base_model, data_dir=data_dir, adapter_dir=adapter, device=cpu)
        logps = ranking_logps(model, encoded, pad, 8)
        ev = evaluate_rewards(encoded, logps, cfg.beta)
        correct = []
        for e, lp in zip(encoded, logps, strict=True):
            r = lp - e.ref_logps
            correct += [bool(r[p.chosen] > r[p.rejected]) for p in e.ranking.pairs()]
        out[name] = {"accuracy": ev.accuracy, "loss": ev.loss, "margin": ev.margin, "correct": correct}
    return out


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--train-limit", type=int, default=12, help="training rankings (K=4)")
    parser.add_argument("--heldout-limit", type=int, default=24, help="held-out rankings (other prompts)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=2, help="ours: rankings per step (TRL: 2x pairs)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=128, help="prompt + reply tokens")
    parser.add_argument("--max-prompt-length", type=int, default=48, help="prompt tokens (its end kept)")
    parser.add_argument(
        "--lora-top-layers", type=float, default=0.34, help="share of the layers, from the top, with LoRA"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()

    import torch
    import transformers

    from worker.dpo_shared import DPOTrainConfig
    from worker.models import resolve_model_path

    machine = start_run(args.threads)
    rankings = fluency_rankings(args.seed)
    random.Random(args.seed).shuffle(rankings)
    heldout, train = rankings[: args.heldout_limit], rankings[args.heldout_limit :][: args.train_limit]
    print(f"fluency: {len(train)} training and {len(heldout)} held-out rankings, K=4, 6 pairs each")
    cfg = DPOTrainConfig(
        base_model=args.model,
        beta=args.beta,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lora_dropout=0.0,
        lora_top_layers=args.lora_top_layers,
        max_length=args.max_length,
        max_prompt_length=args.max_prompt_length,
        seed=args.seed,
        heldout_fraction=0.0,  # held out above, identically for both sides
        device="cpu",
    )
    # TRL cuts prompt + reply only; give it the prompts ours trains on (capped the same way).
    from worker.lora_policy import cap_prompt
    from worker.models import load_tokenizer

    path = resolve_model_path(args.model, args.data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    trl_train = [
        type(r)(cap_prompt(tokenizer, r.prompt, args.max_prompt_length), r.candidates, r.tiers) for r in train
    ]
    vocab = transformers.AutoConfig.from_pretrained(path).vocab_size
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-dpo-") as tmp:
        adapters = {"ours": Path(tmp) / "ours", "trl": Path(tmp) / "trl"}
        for side in ("ours", "trl"):
            counter = PassCounter(vocab)
            handle = torch.nn.modules.module.register_module_forward_pre_hook(counter)
            before = load()
            try:
                if side == "ours":
                    res = run_ours(cfg, train, adapters[side], args.data_dir)
                else:
                    res = run_trl(cfg, trl_train, adapters[side], args.data_dir)
            finally:
                handle.remove()
            res.update(
                rankings_per_s=len(train) * args.epochs / res["seconds"],
                # Process CPU time from the first training forward pass to the last step (no reference
                # pass): with one torch thread, hardly moved by other processes sharing the cores.
                step_cpu_seconds=res.pop("cpu_end") - counter.first_cpu,
                train_sequences=counter.sequences,
                train_padded_tokens=counter.padded_tokens,
                load=f"{before} -> {load()}",
            )
            results[side] = res
            print(f"  {side}: {res}")
        evals = heldout_eval(cfg, heldout, adapters, args.data_dir)
    n = len(evals["ours"]["correct"])
    only_ours = sum(
        a and not b for a, b in zip(evals["ours"]["correct"], evals["trl"]["correct"], strict=True)
    )
    only_trl = sum(
        b and not a for a, b in zip(evals["ours"]["correct"], evals["trl"]["correct"], strict=True)
    )
    for side in ("ours", "trl"):
        acc = evals[side]["accuracy"]
        se = math.sqrt(acc * (1 - acc) / n) if n else math.nan
        results[side].update(
            heldout_accuracy=acc,
            heldout_accuracy_se=se,
            heldout_loss=evals[side]["loss"],
            heldout_margin=evals[side]["margin"],
        )
        print(
            f"{side}: {results[side]['rankings_per_s']:.3f} rankings/s, {results[side]['steps']} steps, "
            f"held-out pairwise accuracy {100 * acc:.1f}% +-{100 * se:.1f} ({n} pairs), "
            f"loss {evals[side]['loss']:.3f}, margin {evals[side]['margin']:.3f}"
        )
    ratio = results["ours"]["rankings_per_s"] / results["trl"]["rankings_per_s"]
    cpu_ratio = results["trl"]["step_cpu_seconds"] / results["ours"]["step_cpu_seconds"]
    gap = 100 * (results["ours"]["heldout_accuracy"] - results["trl"]["heldout_accuracy"])
    print(
        f"throughput ratio {ratio:.2f}x (training-step CPU time {cpu_ratio:.2f}x), accuracy gap "
        f"{gap:+.1f} points, only ours {only_ours} / only TRL {only_trl}"
    )
    if args.json:
        report = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "results": results}
        report.update(
            ratio=ratio, cpu_ratio=cpu_ratio, gap_points=gap, only_ours=only_ours, only_trl=only_trl
        )
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
