"""Trust in the loop benchmark: unreliable simulated annotators (--random-annotators, --reverse-annotators;
their behaviours are bench.loop.simulate's) and gold sets (--gold N).

Gold goes through the public API only: a seeded sample of the open comparison sets (GET /comparison-sets)
marked gold (PUT /comparison-sets/{id}/gold) with the oracle's ranking, ties where the oracle's scores are
near-equal (bench.loop.simulate.tie_groups). Weighting is a round setting: --set annotator_weight=gold.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from typing import Any

from bench.loop.simulate import TIE_ABS, TIE_REL, behaviours, tie_groups

Oracle = Callable[[str, str], float]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--random-annotators",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of the annotators who rank at random (at least one when above 0)",
    )
    ap.add_argument(
        "--reverse-annotators",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of the annotators who rank in reverse of their oracle draw",
    )
    ap.add_argument(
        "--gold", type=int, default=0, metavar="N", help="round-0 sets marked gold with the oracle's ranking"
    )


def checked_behaviours(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Each annotator's behaviour from the options, or the parser's error."""
    if args.gold < 0:
        ap.error("--gold >= 0")
    try:
        return behaviours(args.annotators, args.random_annotators, args.reverse_annotators)
    except ValueError as exc:
        ap.error(str(exc))


def oracle_tiers(
    oracle: Oracle,
    prompt: str,
    candidates: list[dict[str, Any]],
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
) -> list[list[int]]:
    """The oracle's ranking of a set's candidates: tiers of candidate ids, best first."""
    scores = [float(oracle(prompt, c["text"])) for c in candidates]
    return [[candidates[i]["id"] for i in group] for group in tie_groups(scores, abs_eps, rel_eps)]


def mark_gold(
    api: Any, oracle: Oracle, n: int, seed: int, abs_eps: float = TIE_ABS, rel_eps: float = TIE_REL
) -> list[int]:
    """Mark n of the open sets gold with the oracle's ranking (fewer if there are fewer); their ids."""
    if n <= 0:
        return []
    open_sets = api.json("GET", "/comparison-sets", params={"limit": 500})["sets"]
    chosen = random.Random(f"gold:{seed}").sample(open_sets, min(n, len(open_sets)))
    for s in chosen:
        tiers = oracle_tiers(oracle, s["prompt"], s["candidates"], abs_eps, rel_eps)
        api.call("PUT", f"/comparison-sets/{s['set_id']}/gold", json={"tiers": tiers})
    return sorted(s["set_id"] for s in chosen)
