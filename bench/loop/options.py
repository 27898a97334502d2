"""bench/loop's inputs: its command-line options, the prompts and their split, the round config it queues."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from bench.loop import trust
from bench.loop.round_defaults import LOOP_ROUND_DEFAULTS
from bench.loop.simulate import DEFAULT_AGREEMENT, TIE_ABS, TIE_REL

ROOT = Path(__file__).resolve().parents[2]
OASST = ROOT / "app" / "demo" / "data" / "oasst_en_100_trees.jsonl"


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every option's default in --help."""


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """The benchmark's options, checked (argparse exits with a usage error naming the option)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=_Help)
    ap.add_argument(
        "--oracle", default="bench.loop.oracles:length_target", help="FILE.py:FUNC or module:func"
    )
    ap.add_argument("--rounds", type=int, default=4, help="training rounds after round 0")
    ap.add_argument("--annotators", type=int, default=4, help="simulated annotators (API users)")
    ap.add_argument("--agreement", type=float, default=DEFAULT_AGREEMENT, help="target pairwise agreement")
    ap.add_argument(
        "--seed", type=int, default=0, help="seeds the prompt split, annotators, sampling and rounds"
    )
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="round config override (repeatable); see GET /api/v1/rounds/config-keys",
    )
    ap.add_argument("--prompts", type=int, default=32, help="training pool size (imported)")
    ap.add_argument(
        "--product-defaults",
        action="store_true",
        help="queue rounds with the product's own round defaults instead of LOOP_ROUND_DEFAULTS (the "
        "config sized for a 2-core CPU that met the target)",
    )
    ap.add_argument("--eval-prompts", type=int, default=32, help="evaluation prompts (never imported)")
    ap.add_argument(
        "--prompt-file",
        type=Path,
        default=None,
        help='prompts: JSONL {"prompt": ...} or Open-Assistant trees, or one per line (.txt)',
    )
    ap.add_argument("--model", default=None, help="base model id or local path (RANKLOOP_BASE_MODEL)")
    ap.add_argument("--out", type=Path, default=Path("loopbench-out"), help="logs, data dir, plot, pairs")
    ap.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    ap.add_argument(
        "--database-url",
        default=None,
        help="use a fresh database on this PostgreSQL server instead of the embedded one",
    )
    ap.add_argument("--tie-abs", type=float, default=TIE_ABS, help="absolute tie epsilon on oracle scores")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch CPU threads for the worker and the bench's own sampling (RANKLOOP_TORCH_THREADS); "
        "0 = torch's default (all cores). The worker splits them between itself and a child process "
        "where a round's work allows (RANKLOOP_PARALLEL_STAGES); 1 is faster where other work shares "
        "the cores (bench/RESULTS.md)",
    )
    ap.add_argument("--tie-rel", type=float, default=TIE_REL, help="relative tie epsilon on oracle scores")
    trust.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.rounds < 0 or args.annotators < 1 or args.prompts < 2 or args.eval_prompts < 1:
        ap.error("--rounds >= 0, --annotators >= 1, --prompts >= 2, --eval-prompts >= 1")
    if not 0.5 < args.agreement < 1.0:
        ap.error("--agreement must be in (0.5, 1)")
    for item in args.sets:
        if "=" not in item:
            ap.error(f"--set wants key=value, got {item!r}")
    args.behaviours = trust.checked_behaviours(ap, args)
    return args


def read_prompts(path: Path | None) -> list[str]:
    """Distinct prompt texts, in file order."""
    path = path or OASST
    texts: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        if path.suffix == ".txt":
            texts.append(raw.strip())
            continue
        obj = json.loads(raw)
        prompt = obj.get("prompt")
        texts.append(str(prompt.get("text") if isinstance(prompt, dict) else prompt).strip())
    return list(dict.fromkeys(t for t in texts if t))


def split_prompts(prompts: list[str], n_pool: int, n_eval: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded, disjoint: (training pool, evaluation prompts)."""
    if n_pool + n_eval > len(prompts):
        raise SystemExit(f"{n_pool} + {n_eval} prompts wanted, the file holds {len(prompts)} distinct ones")
    shuffled = prompts[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[n_eval : n_eval + n_pool], shuffled[:n_eval]


def round_overrides(args: argparse.Namespace, pool: int) -> dict[str, str]:
    """The round config every run (round 0's generation and rounds 1..N) is queued with: the bench's own
    keys (LOOP_ROUND_DEFAULTS unless --product-defaults), then --set (which wins). With
    `--set selection=uncertainty` a round writes candidates for
    selection_pool times generate_prompts prompts and keeps the most uncertain; the default
    generate_prompts is the whole pool, so also set generate_prompts below it for the choice to matter."""
    return {
        **({} if args.product_defaults else LOOP_ROUND_DEFAULTS),
        "auto_promote": "yes",
        "generate_prompts": str(pool),
        "seed": str(args.seed),
        **dict(item.split("=", 1) for item in args.sets),
    }
