"""Reward-model training throughput and held-out accuracy: ours (K-wise) versus TRL's RewardTrainer (pairs).

    .venv/bin/python bench/ml/reward_vs_trl.py                      # Open-Assistant rankings (default)
    .venv/bin/python bench/ml/reward_vs_trl.py --data fluency       # synthetic clear-signal rankings

Both sides train the same backbone (`--model`, by default the real default model smollm2-135m-instruct, read
from `<data-dir>/models/`) on the same training rankings and are evaluated on the same held-out prompts:

- ours: `worker.reward.train_reward_model`. A step takes `--batch-size` rankings and scores every candidate
  of every one of them in ONE forward pass (sum of K sequences); the loss is the mean over rankings of the
  mean -log sigmoid over the pairs each ranking implies (InstructGPT). Its `train_seconds` metric is the
  time spent in training steps (no model loading, evaluation or saving).
- TRL: `trl.RewardTrainer` on the same rankings expanded into every pair they imply (C(K,2) for a strict
  ranking; pairs inside a tie are left out, as ours leaves them out). A step takes `--trl-batch-size` pairs
  and runs chosen and rejected through one forward pass (2 x pairs sequences). Its batch size is matched to
  ours by `--match`: `sequences` (default) takes half ours' mean sequences per step, so both sides push
  about as many tokens through a forward pass; `pairs` takes ours' mean pairs per step, so both make the
  same number of optimizer updates per epoch, each on about as many pairs (TRL's forward passes are then
  bigger). With `sequences`, TRL makes (pairs / candidates) times more updates per epoch than ours, which
  matters for accuracy after a fixed number of epochs. The
  time is from `on_train_begin` to `on_train_end` (after the Trainer's setup, before anything is saved).
  TRL gets the token ids ours would use (same chat template, same left truncation at `--max-length`), as a
  pre-tokenized dataset, so neither its filtering of long samples nor its own template handling changes
  the data. Settings that would make TRL differ from ours for no reason are aligned: the same LoRA model
  object construction and seed (`worker.reward.build_reward_model`, fp32), LoRA dropout kept
  (`disable_dropout=False`), no gradient checkpointing (TRL's RewardConfig turns it on by default; ours
  has none), AdamW (torch) with the same learning rate, constant schedule, no warm-up, no weight decay,
  gradient norm clipped at 1, no evaluation or checkpoint during training, bf16 only where ours uses it.

Throughput = training rankings x epochs / training seconds (TRL's pairs/s is printed too). Accuracy: both
trained adapters are saved, loaded back with `worker.reward.load_reward_model`, every held-out candidate
is scored once by `RewardModel.score` and the pairwise accuracy is taken over the held-out rankings' pairs
(ties excluded): identical pairs, identical scoring code. Figures only, nothing asserted.

Data: `--data oasst` is the 212 ranked groups (sizes 2-9, no ties) of app/demo/data/oasst_en_100_trees.jsonl
parsed by the app's importer; `--data fluency` builds K=4 rankings with a signal a small model can learn
fast: an Open-Assistant prompt and the first words of a human reply, ranked above copies with 30%, 60% and
100% of their words replaced by random words from the corpus (a strict order, 6 pairs per ranking).
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import fluency_rankings, load, model_parser, oasst_rankings, sample, start_run
from measuring import PassCounter, SideResult, heldout_eval, mcnemar_p, step_durations, warm_up

DATA_CHOICES = ("oasst", "fluency")


# --- data -----------------------------------------------------------------------------------------------


def tokenize_like_ours(tokenizer: Any, prompt: str, reply: str, max_length: int) -> list[int]:
    """The ids `worker.reward_scoring.score_exchanges` feeds the model (chat template, left cut)."""
    from worker.models import format_exchange

    tokenizer.truncation_side = "left"
    enc = tokenizer(
        format_exchange(tokenizer, prompt, reply),
        truncation=True,
        max_length=max_length,
        add_special_tokens=not getattr(tokenizer, "chat_template", None),
    )
    return list(enc["input_ids"])


# --- the two trainers -----------------------------------------------------------------------------------


def run_ours(cfg: Any, train: list[Any], out: Path, data_dir: Path, counter: PassCounter) -> SideResult:
    from worker.reward import train_reward_model

    res = SideResult("ours (K-wise)", counter=counter, load_before=load())
    stamps: list[tuple[float, float]] = []
    result = train_reward_model(
        cfg,
        train,
        out,
        data_dir=data_dir,
        progress=lambda s, n, loss: stamps.append((time.perf_counter(), time.process_time())),
    )
    res.load_after = load()
    res.train_seconds = float(result.metrics["train_seconds"])
    res.steps = int(result.metrics["steps"])
    res.step_times = step_durations([w for w, _c in stamps], res.train_seconds)
    res.cpu_seconds = stamps[-1][1] - counter.first_cpu
    res.extra = {"last_train_loss": result.metrics["last_train_loss"]}
    return res


def run_trl(
    cfg: Any, train: list[Any], out: Path, data_dir: Path, counter: PassCounter, trl_batch: int
) -> SideResult:
    from accelerate.utils import set_seed
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from worker.models import load_tokenizer, pick_device, resolve_model_path
    from worker.reward import REWARD_CONFIG_FILE, build_reward_model

    res = SideResult("TRL RewardTrainer (pairs)", counter=counter)
    spec = pick_device(cfg.device)
    path = resolve_model_path(cfg.base_model, data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    records = []
    for r in train:
        ids = [tokenize_like_ours(tokenizer, r.prompt, c, cfg.max_length) for c in r.candidates]
        records += [{"chosen_ids": ids[p.chosen], "rejected_ids": ids[p.rejected]} for p in r.pairs()]
    dataset = Dataset.from_list(records)
    # Same construction and seed as ours: identical head and LoRA initialisation.
    set_seed(cfg.seed)
    model = build_reward_model(path, tokenizer, cfg)

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.begin = self.end = 0.0
            self.stamps: list[tuple[float, float]] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.begin = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.stamps.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.end = time.perf_counter()

    args = TRLRewardConfig(
        output_dir=str(out / "trainer"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=trl_batch,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.grad_clip,
        optim="adamw_torch",
        max_length=cfg.max_length,
        gradient_checkpointing=False,
        disable_dropout=False,
        bf16=spec.use_bf16,
        use_cpu=spec.device.type == "cpu",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        seed=cfg.seed,
        data_seed=cfg.seed,
    )
    timer = Timer()
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer]
    )
    trainer.remove_callback(PrinterCallback)
    if len(trainer.train_dataset) != len(records):
        raise RuntimeError("TRL dropped pairs longer than max_length; the data would differ from ours")
    res.load_before = load()
    trainer.train()
    res.load_after = load()
    res.train_seconds = timer.end - timer.begin
    res.steps = int(trainer.state.global_step)
    res.step_times = step_durations([w for w, _c in timer.stamps], res.train_seconds)
    res.cpu_seconds = timer.stamps[-1][1] - counter.first_cpu
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    res.extra = {"last_logged_train_loss": losses[-1] if losses else None}
    # Saved like ours, so the evaluation loads both through the same code.
    adapter = out / "model"
    trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    meta = {"base_model": cfg.base_model, "max_length": cfg.max_length, "kind": "reward"}
    (adapter / REWARD_CONFIG_FILE).write_text(json.dumps(meta))
    return res


# --- report ---------------------------------------------------------------------------------------------


def describe(name: str, rankings: list[Any]) -> str:
    ks = [len(r.candidates) for r in rankings]
    pairs = sum(len(r.pairs()) for r in rankings)
    sizes = ", ".join(f"K={k}: {ks.count(k)}" for k in sorted(set(ks)))
    return f"{name}: {len(rankings)} rankings ({sizes}), {sum(ks)} candidates, {pairs} pairs"


# Per data set, what is not given on the command line. The fluency signal needs a 10x higher learning rate
# to show within a few steps (checked: 1e-4 reaches 66% held-out accuracy after 24 steps, 1e-3 92% after 8).
DEFAULTS: dict[str, dict[str, Any]] = {
    "oasst": {"lr": 1e-4, "max_length": 128, "train_limit": 24, "heldout_limit": 24},
    "fluency": {"lr": 1e-3, "max_length": 64, "train_limit": 32, "heldout_limit": 24},
}


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--data", choices=DATA_CHOICES, default="oasst")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument(
        "--max-length", type=int, help="tokens per prompt+reply, left cut (oasst 128, fluency 64)"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="ours: rankings per step")
    parser.add_argument(
        "--match",
        choices=("sequences", "pairs"),
        default="sequences",
        help="TRL batch size: same sequences per forward pass as ours, or same pairs per optimizer step",
    )
    parser.add_argument("--trl-batch-size", type=int, default=0, help="TRL pairs per step; 0: from --match")
    parser.add_argument("--lr", type=float, help="learning rate of both (oasst 1e-4, fluency 1e-3)")
    parser.add_argument("--heldout-fraction", type=float, default=0.2, help="share of PROMPTS held out")
    parser.add_argument(
        "--train-limit", type=int, help="training rankings used, 0: all (oasst 24, fluency 32)"
    )
    parser.add_argument("--heldout-limit", type=int, help="held-out rankings used, 0: all (24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--order", choices=("ours-first", "trl-first"), default="ours-first")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train both this many times, order alternating; median throughput",
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    for key, value in DEFAULTS[args.data].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    import torch
    import transformers
    from accelerate.utils import set_seed

    from worker.data import ranking_to_pairs, split_by_prompt
    from worker.models import load_tokenizer, resolve_model_path
    from worker.reward import RewardConfig, RewardModel, build_reward_model, load_reward_model

    started = start_run(args.threads)

    rankings = oasst_rankings() if args.data == "oasst" else fluency_rankings(args.seed)
    split = split_by_prompt(rankings, args.heldout_fraction, args.seed)
    size = lambda r: len(r.candidates)  # noqa: E731 - strata of the subsets: the group size K
    usable_train = [r for r in split.train if r.pairs()]
    train = sample(usable_train, args.train_limit or None, args.seed, key=size)
    heldout = sample([r for r in split.heldout if r.pairs()], args.heldout_limit or None, args.seed, key=size)
    if {r.prompt for r in train} & {r.prompt for r in heldout}:
        raise RuntimeError("a prompt is on both sides of the split")
    print(describe(f"{args.data} train", train))
    print(describe(f"{args.data} held-out", heldout) + " (other prompts)")
    all_pairs = sum(len(r.pairs()) for r in usable_train)
    all_candidates = sum(len(r.candidates) for r in usable_train)
    print(
        f"on all {len(usable_train)} training rankings TRL would run "
        f"{2 * all_pairs / all_candidates:.2f}x the sequences ours runs "
        f"({2 * all_pairs} vs {all_candidates}); the subsets keep their mix of K"
    )

    path = resolve_model_path(args.model, args.data_dir)
    tokenizer = load_tokenizer(path, padding_side="right")
    lengths = {
        (r.prompt, c): len(tokenize_like_ours(tokenizer, r.prompt, c, args.max_length))
        for r in train
        for c in r.candidates
    }
    pairs = ranking_to_pairs(train)
    real = {
        "ours": sum(lengths[(r.prompt, c)] for r in train for c in r.candidates) * args.epochs,
        "trl": sum(lengths[(p.prompt, p.chosen)] + lengths[(p.prompt, p.rejected)] for p in pairs)
        * args.epochs,
    }
    mean_seqs_per_step = args.batch_size * statistics.fmean(len(r.candidates) for r in train)
    mean_pairs_per_step = args.batch_size * statistics.fmean(len(r.pairs()) for r in train)
    matched = mean_seqs_per_step / 2 if args.match == "sequences" else mean_pairs_per_step
    trl_batch = args.trl_batch_size or max(1, round(matched))
    truncated = sum(n >= args.max_length for n in lengths.values()) / len(lengths)
    print(
        f"max_length {args.max_length} ({truncated:.0%} of training sequences cut to it), "
        f"epochs {args.epochs}, "
        f"ours {args.batch_size} rankings/step (~{mean_seqs_per_step:.1f} sequences, "
        f"~{mean_pairs_per_step:.1f} pairs), "
        f"TRL {trl_batch} pairs/step ({2 * trl_batch} sequences), lr {args.lr}, seed {args.seed}"
    )
    print(
        f"work per epoch (real tokens): ours {real['ours'] / args.epochs:.0f}, "
        f"TRL {real['trl'] / args.epochs:.0f} "
        f"-> at equal cost per token the throughput ratio would be {real['trl'] / real['ours']:.2f}x"
    )

    cfg = RewardConfig(
        base_model=args.model,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        heldout_fraction=0.0,  # the held-out prompts are split off above, identically for both sides
    )
    vocab_size = transformers.AutoConfig.from_pretrained(path).vocab_size
    warm_up(cfg, path, tokenizer, round(mean_seqs_per_step))
    runs: dict[str, list[SideResult]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="rankloop-bench-rm-") as tmp:
        tmp_dir = Path(tmp)
        for repeat in range(args.repeats):
            order = ["ours", "trl"] if args.order == "ours-first" else ["trl", "ours"]
            if repeat % 2:
                order.reverse()
            for side in order:
                counter = PassCounter(vocab_size)
                handle = torch.nn.modules.module.register_module_forward_pre_hook(counter)
                try:
                    if side == "ours":
                        res = run_ours(cfg, train, tmp_dir / "ours", args.data_dir, counter)
                    else:
                        res = run_trl(cfg, train, tmp_dir / "trl", args.data_dir, counter, trl_batch)
                finally:
                    handle.remove()
                runs[side].append(res)
                print(
                    f"  run {repeat + 1}: {res.name} trained in {res.train_seconds:.1f} s "
                    f"(CPU {res.cpu_seconds:.1f} s), "
                    f"{1000 * res.train_seconds / counter.padded_tokens:.2f} s per 1k computed tokens, "
                    f"load {res.load_before} -> {res.load_after}",
                    flush=True,
                )
        # Training is deterministic (same seeds, same data order), so the last run's models stand for all.
        for side, model_dir in (("ours", tmp_dir / "ours"), ("trl", tmp_dir / "trl" / "model")):
            last = runs[side][-1]
            rm = load_reward_model(model_dir, data_dir=args.data_dir)
            last.accuracy, last.heldout_loss, last.correct = heldout_eval(rm, heldout)
    # The untrained model both sides start from (same seed, same construction): what training has to beat.
    set_seed(args.seed)
    untrained = build_reward_model(path, tokenizer, cfg)
    untrained.eval()
    base_accuracy, base_loss, _ = heldout_eval(RewardModel(untrained, tokenizer, args.max_length), heldout)

    ours, trl = runs["ours"][-1], runs["trl"][-1]
    n_train = len(train) * args.epochs
    n_pairs = len(pairs) * args.epochs
    seconds = {side: statistics.median(r.train_seconds for r in rs) for side, rs in runs.items()}
    cpu = {side: statistics.median(r.cpu_seconds for r in rs) for side, rs in runs.items()}
    n_eval = len(ours.correct)
    print()
    print(
        f"{'':28} {'train s':>8} {'CPU s':>7} {'steps':>6} {'1st':>5} {'median':>6} {'seqs':>6} "
        f"{'tokens':>8} "
        f"{'computed':>8} "
        f"{'s/1k tok':>8} {'rankings/s':>10} {'pairs/s':>8} {'held-out acc':>13} {'loss':>6}"
    )
    for side, res in (("ours", ours), ("trl", trl)):
        c = res.counter
        assert c is not None
        print(
            f"{res.name:28} {seconds[side]:8.1f} {cpu[side]:7.1f} {res.steps:6d} {res.step_times[0]:5.1f} "
            f"{statistics.median(res.step_times):6.1f} {c.sequences:6d} {real[side]:8.0f} "
            f"{c.padded_tokens:8d} {1000 * seconds[side] / c.padded_tokens:8.2f} "
            f"{n_train / seconds[side]:10.3f} {n_pairs / seconds[side]:8.3f} "
            f"{res.accuracy:8.1%} ±{_se(res.accuracy, n_eval):4.1%} {res.heldout_loss:6.3f}"
        )
    ratio = seconds["trl"] / seconds["ours"]
    per_run = [t.train_seconds / o.train_seconds for o, t in zip(runs["ours"], runs["trl"], strict=True)]
    cpu_ratio = cpu["trl"] / cpu["ours"]
    gap = 100 * (ours.accuracy - trl.accuracy)
    both = sum(a and b for a, b in zip(ours.correct, trl.correct, strict=True))
    only_ours = sum(a and not b for a, b in zip(ours.correct, trl.correct, strict=True))
    only_trl = sum(b and not a for a, b in zip(ours.correct, trl.correct, strict=True))
    assert ours.counter is not None and trl.counter is not None
    print()
    print(
        f"throughput ratio ours/TRL: {ratio:.2f}x (target >= 2x: {'met' if ratio >= 2 else 'NOT met'}; "
        f"per run {', '.join(f'{x:.2f}x' for x in per_run)}); TRL/ours computed tokens "
        f"{trl.counter.padded_tokens / ours.counter.padded_tokens:.2f}x, forward sequences "
        f"{trl.counter.sequences / ours.counter.sequences:.2f}x"
    )
    print(f"throughput ratio by process CPU time: {cpu_ratio:.2f}x")
    print(f"{'untrained (the common start)':28} held-out accuracy {base_accuracy:.1%}, loss {base_loss:.3f}")
    print(
        f"held-out accuracy ours - TRL: {gap:+.1f} points on {n_eval} pairs "
        f"(target >= -1: {'met' if gap >= -1 else 'NOT met'}); both right {both}, only ours {only_ours}, "
        f"only TRL {only_trl}, both wrong {n_eval - both - only_ours - only_trl}; "
        f"McNemar exact p = {mcnemar_p(only_ours, only_trl):.2f} (a difference this size by chance)"
    )
    if args.json:
        report = {
            "machine": started,
            "args": {k: str(v) for k, v in vars(args).items()},
            "train_rankings": len(train),
            "train_pairs": len(pairs),
            "heldout_rankings": len(heldout),
            "heldout_pairs": n_eval,
            "trl_batch_size": trl_batch,
            "ratio": ratio,
            "ratio_per_run": per_run,
            "cpu_ratio": cpu_ratio,
            "accuracy_gap_points": gap,
            "accuracy_discordant": {"only_ours": only_ours, "only_trl": only_trl},
            "mcnemar_p": mcnemar_p(only_ours, only_trl),
            "untrained_heldout_accuracy": base_accuracy,
            "untrained_heldout_loss": base_loss,
            "sides": {
                side: {
                    "train_seconds_median": seconds[side],
                    "runs": [
                        {
                            "train_seconds": r.train_seconds,
                            "cpu_seconds": r.cpu_seconds,
                            "step_seconds": [round(t, 3) for t in r.step_times],
                            "load_before": r.load_before,
                            "load_after": r.load_after,
                            **r.extra,
                        }
                        for r in rs
                    ],
                    "steps": rs[-1].steps,
                    "sequences": rs[-1].counter.sequences if rs[-1].counter else None,
                    "computed_tokens": rs[-1].counter.padded_tokens if rs[-1].counter else None,
                    "real_tokens": real[side],
                    "rankings_per_second": n_train / seconds[side],
                    "pairs_per_second": n_pairs / seconds[side],
                    "heldout_accuracy": rs[-1].accuracy,
                    "heldout_loss": rs[-1].heldout_loss,
                }
                for side, rs in runs.items()
            },
        }
        args.json.write_text(json.dumps(report, indent=2))


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else math.nan


if __name__ == "__main__":
    main()
