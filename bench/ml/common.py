"""Shared by the ML benchmarks: the repo on sys.path, the Open-Assistant rankings and the synthetic fluency
rankings made from them, machine facts."""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OASST_FILE = ROOT / "app" / "demo" / "data" / "oasst_en_100_trees.jsonl"


def model_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the options every one shares: the model and where it is cached."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="default name, HF id or local dir")
    parser.add_argument("--data-dir", type=Path, default=Path(".rankloop"), help="holds the cached model")
    return parser


def oasst_rankings() -> list[Any]:
    """The 212 ranked groups of the demo file as `worker.data.Ranking`s, parsed by the app's importer."""
    from app.prompts.importers import parse
    from app.prompts.schemas import ImportKind
    from worker.data import Ranking

    records = parse(OASST_FILE.read_bytes(), ImportKind.oasst, OASST_FILE.name)
    return [Ranking(r.prompt, list(r.completions), r.tiers or []) for r in records if r.tiers]


def fluency_rankings(seed: int, prompt_words: int = 20, reply_words: int = 24) -> list[Any]:
    """One K=4 ranking per Open-Assistant group: the real reply first, then ever more words replaced."""
    from worker.data import Ranking

    rng = random.Random(seed)
    groups = oasst_rankings()
    vocab = sorted(
        {w for g in groups for c in g.candidates for w in c.split() if re.fullmatch(r"[A-Za-z]+[.,]?", w)}
    )
    out = []
    seen: set[str] = set()
    for g in groups:
        # The last user turn: a multi-turn prompt starts with the same root text as its siblings.
        # (The importer now gives a multi-turn prompt as a conversation; its last turn is the user's.)
        last = g.prompt if isinstance(g.prompt, str) else g.prompt[-1].content
        prompt = " ".join(last.rsplit("User: ", 1)[-1].split()[:prompt_words])
        if prompt in seen:
            continue
        seen.add(prompt)
        words = g.candidates[g.tiers[0][0]].split()[:reply_words]
        replies = []
        for fraction in (0.0, 0.3, 0.6, 1.0):
            changed = list(words)
            for i in rng.sample(range(len(words)), round(fraction * len(words))):
                changed[i] = rng.choice(vocab)
            replies.append(" ".join(changed))
        order = list(range(4))
        rng.shuffle(order)  # candidate i is replies[order[i]]
        candidates = [replies[j] for j in order]
        tiers = [[order.index(level)] for level in range(4)]
        out.append(Ranking(prompt, candidates, tiers))
    return out


def sample(
    items: list[Any], limit: int | None, seed: int, key: Callable[[Any], Any] | None = None
) -> list[Any]:
    """A seeded random subset of `limit` items (all of them when limit is None or larger), order kept.

    With `key`, stratified: each key value (e.g. the group size K) gets its share of the subset, by largest
    remainder, so a small subset has the same mix as the whole (a K=9 group by luck would skew it).
    """
    if limit is None or limit >= len(items):
        return list(items)
    rng = random.Random(seed)
    if key is None:
        keep = set(rng.sample(range(len(items)), limit))
    else:
        strata: dict[Any, list[int]] = {}
        for i, x in enumerate(items):
            strata.setdefault(key(x), []).append(i)
        quotas = {k: limit * len(ix) / len(items) for k, ix in strata.items()}
        counts = {k: int(q) for k, q in quotas.items()}
        by_remainder = sorted(quotas, key=lambda k: (quotas[k] - counts[k], len(strata[k])), reverse=True)
        for k in by_remainder[: limit - sum(counts.values())]:
            counts[k] += 1
        keep = {i for k in sorted(strata) for i in rng.sample(strata[k], counts[k])}
    return [x for i, x in enumerate(items) if i in keep]


def machine() -> dict[str, Any]:
    """What the report needs to say about where and with what the figures were produced."""
    import accelerate
    import peft
    import torch
    import transformers
    import trl

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    """The 1/5/15-minute load averages: other people's work on the same cores slows every figure down."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def start_run(threads: int) -> dict[str, Any]:
    """Common start of an ML benchmark: torch threads (0: torch's default), libraries quiet, and the machine
    line printed; returns those machine facts as of the start, for the JSON report."""
    import datasets
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    m = machine()
    print_machine(m)
    return m


def print_machine(m: dict[str, Any]) -> None:
    print(
        f"{m['date']} | {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']} | "
        f"python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}, "
        f"peft {m['peft']}, accelerate {m['accelerate']} | load {load()}"
    )
