"""The whole RLHF loop against a known preference: does rankloop learn what its annotators want?

    PYTHONPATH=. .venv/bin/python bench/loop/run.py --oracle bench/loop/oracles.py:length_target \
        [--rounds 4] [--annotators 4] [--agreement 0.73] [--seed 0] [--prompts 32] [--eval-prompts 32] \
        [--set key=value ...] [--model ID_OR_PATH] [--out DIR] [--json PATH] [--database-url URL] \
        [--random-annotators FRACTION] [--reverse-annotators FRACTION] [--gold N]

Set-up through the CLI (`db upgrade`, `users add/token`, `import`, `generate`), everything else through
/api/v1; a fresh data dir with the embedded PostgreSQL, its own `rankloop serve` and `rankloop worker`.

1. Prompts (the Open-Assistant prompts shipped with the demo, or --prompt-file) are split once, seeded, into
   evaluation prompts and a training pool; only the pool is imported. Evaluation prompts are never ranked,
   trained on, or used by the product.
2. Round 0: `rankloop generate` makes base-model comparison sets for the pool. The bench samples K base
   replies per evaluation prompt (the round's sampling settings, worker.generation); the annotators'
   temperature is calibrated on their oracle scores so two annotators agree on --agreement of the pairs
   (bench/loop/simulate.py); those replies, oracle-labelled, are also the reward-accuracy pairs.
3. With --gold N, N of round 0's sets are marked gold with the oracle's ranking (bench/loop/trust.py).
   Annotators (API users, one thread each) rank every open set (GET /tasks/next -> POST /rankings); with
   --random-annotators / --reverse-annotators that share of them rank at random / in reverse.
4. Rounds 1..N: POST /rounds (auto_promote=yes, generate_prompts=pool size, seed=--seed, then --set),
   waited for; then measured: `rankloop eval-rm` on the pairs with the round's reward model; the new
   policy's reply per evaluation prompt (same seed per prompt for every version) against the base model's
   and the parent's, judged by the oracle (ties half, 95% Wilson); the round's new sets (new policy mixed
   with its parent) are ranked, and GET /model-versions gives the product's blind human win-rate of the
   new policy over its parent, to compare with the oracle's.
Round 0 is the base model: its win-rates are the base against itself (0.5) and its reward accuracy the
chance level 0.5 (there is no reward model yet).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and `app` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rich.console import Console

from bench.loop import report, trust
from bench.loop.annotators import Annotator, Session, rank_all
from bench.loop.options import parse_args, read_prompts, round_overrides, split_prompts
from bench.loop.oracles import load_oracle
from bench.loop.product import Api, Product, ProductError, stage_seconds, wait_round
from bench.loop.sampling import SamplingSettings, prompt_seeds, sample_version
from bench.loop.simulate import (
    calibrate,
    expected_agreement,
    near_equal,
    observed_agreement,
    untied_gaps,
    win_rate,
)
from worker.store import open_version


def token_from(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1]


class Loop:
    """One benchmark run; `run()` returns the per-round records."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.oracle = load_oracle(args.oracle)
        self.eps = (args.tie_abs, args.tie_rel)
        self.pool, self.eval_prompts = split_prompts(
            read_prompts(args.prompt_file), args.prompts, args.eval_prompts, args.seed
        )
        self.product = Product(args.out.resolve(), args.model, args.database_url, console)
        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
            self.product.env["RANKLOOP_TORCH_THREADS"] = str(args.torch_threads)
        self.overrides = round_overrides(args, len(self.pool))
        self.samples: dict[int, list[str]] = {}  # version id -> reply per evaluation prompt
        self.win_seeds = prompt_seeds(self.eval_prompts, args.seed)
        self.extra: dict[str, Any] = {}

    def score(self, prompt: str, reply: str) -> float:
        return float(self.oracle(prompt, reply))

    # --- set-up through the CLI

    def set_up(self) -> tuple[Api, list[Annotator]]:
        p = self.product
        p.start_database()
        p.cli("db", "upgrade")
        p.cli("users", "add", "loopbench-admin", "--role", "admin")
        admin = Api(
            p.base_url, token_from(p.cli("users", "token", "loopbench-admin", "--label", "loopbench"))
        )
        annotators = []
        for i in range(self.args.annotators):
            name = f"sim-annotator-{i + 1}"
            p.cli("users", "add", name, "--role", "annotator")
            token = token_from(p.cli("users", "token", name, "--label", "loopbench"))
            behaviour = self.args.behaviours[i]
            annotators.append(Annotator(name, token, self.args.seed * 1000 + i, behaviour))
        pool_file = p.out / "train_prompts.jsonl"
        pool_file.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in self.pool), encoding="utf-8")
        p.cli("import", str(pool_file), "--kind", "prompts", "--prompt-set", "loopbench-train")
        (p.out / "eval_prompts.jsonl").write_text(
            "".join(json.dumps({"prompt": t}) + "\n" for t in self.eval_prompts), encoding="utf-8"
        )
        p.start_processes()
        return admin, annotators

    # --- measurement helpers

    def version_samples(
        self, version: dict[str, Any], base_model: str, settings: SamplingSettings
    ) -> list[str]:
        if version["id"] not in self.samples:
            # The version's location (a path, or a URL in the model store) as a verified local directory.
            adapter = (
                open_version(version["adapter_path"], self.product.data_dir / "model-cache")
                if version.get("adapter_path")
                else None
            )
            rows = sample_version(
                base_model,
                adapter,
                self.product.data_dir,
                self.eval_prompts,
                [[s] for s in self.win_seeds],
                settings,
            )
            self.samples[version["id"]] = [r[0] for r in rows]
        return self.samples[version["id"]]

    def oracle_winrate(self, new: list[str], old: list[str]) -> Any:
        return win_rate(
            [self.score(p, r) for p, r in zip(self.eval_prompts, new, strict=True)],
            [self.score(p, r) for p, r in zip(self.eval_prompts, old, strict=True)],
            *self.eps,
        )

    def reward_pairs(self, base_replies: list[list[str]]) -> Path:
        """Oracle-labelled pairs among the base replies to each evaluation prompt (ties and empties out)."""
        path = self.product.out / "eval_pairs.jsonl"
        lines = []
        for prompt, replies in zip(self.eval_prompts, base_replies, strict=True):
            scored = [(self.score(prompt, r), r) for r in dict.fromkeys(replies) if r.strip()]
            for a in range(len(scored)):
                for b in range(a + 1, len(scored)):
                    (sa, ra), (sb, rb) = scored[a], scored[b]
                    if near_equal(sa, sb, *self.eps):
                        continue
                    chosen, rejected = (ra, rb) if sa > sb else (rb, ra)
                    lines.append(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}))
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        self.extra["reward_eval_pairs"] = len(lines)
        return path

    def reward_accuracy(self, pairs: Path, reward_id: int) -> float | None:
        if not self.extra.get("reward_eval_pairs"):
            return None
        out = self.product.cli("eval-rm", str(pairs), "--version", str(reward_id))
        m = re.search(r"accuracy=([0-9.]+) pairs=(\d+)", out)
        if not m:
            raise ProductError(f"unexpected eval-rm output: {out}")
        return float(m[1])

    def rank(self, annotators: list[Annotator], temperature: float, phase: int) -> Session:
        t0 = time.monotonic()
        session = rank_all(self.product.base_url, annotators, self.oracle, temperature, phase, *self.eps)
        groups = session.by_set()
        doubles = [(g[0].tiers, g[1].tiers) for g in groups.values() if len(g) >= 2]
        gaps, ties = untied_gaps([g[0].scores for g in groups.values()], *self.eps)
        self.console.print(
            f"ranked {len(session.ranked)} tasks ({len(groups)} sets) in {time.monotonic() - t0:.1f}s; "
            f"agreement on these sets: expected {expected_agreement(gaps, temperature):.3f} "
            f"({len(gaps)} untied pairs, {ties} tied), observed {observed_agreement(doubles):.3f} "
            f"({len(doubles)} sets ranked twice)"
        )
        return session

    # --- the loop

    def run(self) -> list[dict[str, Any]]:
        args, console = self.args, self.console
        admin, annotators = self.set_up()
        sets = [f"--set={k}={v}" for k, v in self.overrides.items()]
        out = self.product.cli("generate", "--prompts", str(len(self.pool)), *sets)
        m = re.search(r"run (\d+) queued", out)
        if not m:
            raise ProductError(f"unexpected generate output: {out}")
        detail = wait_round(admin, int(m[1]), console, "round 0 (base candidates)", dead=self.product.dead)
        cfg = detail["config"]
        base_model, settings = cfg["base_model"], SamplingSettings.from_round_config(cfg)
        k = int(cfg["k"])

        # Base replies: the win-rate sample (seed per prompt) plus k-1 more for calibration and RM pairs.
        extra_seeds = [
            [s, *(random.Random(f"{s}:{j}").randrange(2**31) for j in range(1, k))] for s in self.win_seeds
        ]
        t0 = time.monotonic()
        base_replies = sample_version(
            base_model, None, self.product.data_dir, self.eval_prompts, extra_seeds, settings
        )
        console.print(
            f"sampled {k} base replies for {len(self.eval_prompts)} evaluation prompts in "
            f"{time.monotonic() - t0:.1f}s"
        )
        cal = calibrate(
            [[self.score(p, r) for r in rs] for p, rs in zip(self.eval_prompts, base_replies, strict=True)],
            args.agreement,
            *self.eps,
        )
        console.print(
            f"annotator temperature {cal.temperature:.4g}: expected agreement {cal.agreement:.3f} "
            f"(target {cal.target}) on {cal.pairs} untied pairs of base replies ({cal.tied_pairs} tied)"
        )
        self.extra["calibration"] = {
            "temperature": cal.temperature,
            "agreement": _clean(cal.agreement),
            "target": cal.target,
            "pairs": cal.pairs,
            "tied_pairs": cal.tied_pairs,
        }
        pairs = self.reward_pairs(base_replies)
        policies = {
            v["id"]: v for v in admin.json("GET", "/model-versions", params={"kind": "policy"})["versions"]
        }
        base_version = next(v for v in policies.values() if not v["adapter_path"])
        self.samples[base_version["id"]] = [r[0] for r in base_replies]
        base = self.samples[base_version["id"]]
        rows: list[dict[str, Any]] = []
        same = self.oracle_winrate(base, base)
        rows.append(self.record(0, 0, detail, same, same, 0.5, None))
        self.extra["annotator_behaviours"] = {a.name: a.behaviour for a in annotators}
        self.extra["gold_sets"] = trust.mark_gold(admin, self.oracle, args.gold, args.seed, *self.eps)
        ranked = self.rank(annotators, cal.temperature, 0)
        rows[0]["rankings_collected"] = len(ranked.ranked)

        for r in range(1, args.rounds + 1):
            started = admin.json("POST", "/rounds", json={"config": self.overrides})
            detail = wait_round(admin, started["id"], console, f"round {r}", dead=self.product.dead)
            versions = {v["id"]: v for v in admin.json("GET", "/model-versions")["versions"]}
            policy = versions[detail["policy_version_id"]]
            parent = versions[policy["parent_id"]]
            t0 = time.monotonic()
            new = self.version_samples(policy, base_model, settings)
            old = self.version_samples(parent, base_model, settings)
            vs_base, vs_parent = self.oracle_winrate(new, base), self.oracle_winrate(new, old)
            accuracy = self.reward_accuracy(pairs, detail["reward_version_id"])
            console.print(f"measured round {r} in {time.monotonic() - t0:.1f}s")
            ranked = self.rank(annotators, cal.temperature, r)
            human = _human(admin, policy["id"])
            row = self.record(
                r, int(detail["metrics"].get("rankings", 0)), detail, vs_base, vs_parent, accuracy, human
            )
            row["rankings_collected"] = len(ranked.ranked)
            row["policy_version_id"], row["parent_version_id"] = policy["id"], parent["id"]
            row["product_winrate_vs_parent_rm"] = detail["metrics"].get("winrate_vs_parent")
            row["annotator_weights"] = detail["metrics"].get("annotator_weights")
            rows.append(row)
            report.print_rounds(console, rows, args.oracle)
        return rows

    def record(
        self,
        r: int,
        rankings: int,
        detail: dict[str, Any],
        vs_base: Any,
        vs_parent: Any,
        accuracy: float | None,
        human: dict[str, Any] | None,
    ) -> dict[str, Any]:
        stages = stage_seconds(detail)
        row: dict[str, Any] = {
            "round": r,
            "rankings": rankings,
            "round_seconds": round(sum(stages.values()), 1)
            if stages
            else float(detail["metrics"].get("wall_seconds", 0.0)),
            "winrate_vs_base": vs_base.rate,
            "winrate_vs_base_ci": [vs_base.low, vs_base.high],
            "winrate_vs_parent": vs_parent.rate,
            "reward_accuracy": accuracy,
            "human_winrate": human["rate"] if human else None,
            "winrate_vs_parent_ci": [vs_parent.low, vs_parent.high],
            "winrate_vs_base_counts": [vs_base.wins, vs_base.ties, vs_base.losses],
            "stage_seconds": stages,
            "round_id": detail["id"],
        }
        if human:
            row["human_winrate_ci"] = [human["low"], human["high"]]
            row["human_comparisons"] = human["comparisons"]
            row["human_oracle_overlap"] = human["low"] <= vs_parent.high and vs_parent.low <= human["high"]
        return row


def _human(admin: Api, version_id: int, settle: float = 3.0, timeout: float = 90.0) -> dict[str, Any] | None:
    """The version's human win-rate once two reads `settle` seconds apart agree.

    The figure comes from the dashboard's statistics cache, which answers a slow-to-compute statistic from
    the previous rankings state while it recomputes in the background; the first read after ranking may be
    that previous state.
    """

    def read() -> dict[str, Any] | None:
        versions = admin.json("GET", "/model-versions", params={"kind": "policy"})["versions"]
        return next((v["human_winrate_vs_parent"] for v in versions if v["id"] == version_id), None)

    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(settle)
        now = read()
        if now == last and now is not None:
            return now
        last = now
    return last


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    # Off a terminal rich assumes 80 columns, which cut the round table's headers and wrapped its intervals.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    from bench.ml.common import start_run

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)  # before the machine line, which reports it
    machine = start_run(0)  # prints the machine line, quiets transformers' progress bars
    loop = Loop(args, console)
    console.print(
        f"oracle {args.oracle}; {len(loop.pool)} training prompts, {len(loop.eval_prompts)} evaluation "
        f"prompts; {args.annotators} annotators; data dir {loop.product.data_dir}"
    )
    t0 = time.monotonic()
    try:
        rows = loop.run()
    finally:
        loop.product.close()
    loop.extra["total_seconds"] = round(time.monotonic() - t0, 1)
    loop.extra["machine"] = {**machine, "gpu": _gpu()}
    loop.extra["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report.print_rounds(console, rows, args.oracle)
    svg = loop.product.out / "winrate.svg"
    report.write_svg(svg, rows, args.oracle)
    console.print(f"plot: {svg}; total {loop.extra['total_seconds']}s")
    meta = loop.product.out / "run_meta.json"
    meta.write_text(json.dumps(loop.extra, indent=2, default=str) + "\n", encoding="utf-8")
    if args.json:
        report.write_json(args.json, args.oracle, rows)
        console.print(f"JSON: {args.json} (calibration and settings: {meta})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
