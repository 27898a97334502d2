"""Simulated annotators: API users looping GET /tasks/next -> rank (bench.loop.simulate) -> POST /rankings."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.loop.simulate import TIE_ABS, TIE_REL, annotator_tiers

Oracle = Callable[[str, str], float]


@dataclass
class Annotator:
    name: str
    token: str
    seed: int
    behaviour: str = "oracle"  # bench.loop.simulate.BEHAVIOURS


@dataclass
class RankedSet:
    """What one annotator saw and submitted (for the agreement check afterwards)."""

    annotator: str
    prompt: str
    candidate_ids: list[int]
    scores: list[float]
    tiers: list[list[int]]  # candidate ids


@dataclass
class Session:
    """Rankings made in one ranking phase, by every annotator."""

    ranked: list[RankedSet] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: RankedSet) -> None:
        with self.lock:
            self.ranked.append(item)

    def by_set(self) -> dict[tuple[int, ...], list[RankedSet]]:
        """Rankings grouped by comparison set (identified by its sorted candidate ids)."""
        groups: dict[tuple[int, ...], list[RankedSet]] = {}
        for r in self.ranked:
            groups.setdefault(tuple(sorted(r.candidate_ids)), []).append(r)
        return groups


def rank_all(
    base_url: str,
    annotators: list[Annotator],
    oracle: Oracle,
    temperature: float,
    phase: int,
    abs_eps: float = TIE_ABS,
    rel_eps: float = TIE_REL,
    max_tasks: int = 1_000_000,
) -> Session:
    """Every annotator ranks until the API has nothing left for it (204); all run concurrently."""
    session = Session()

    def work(a: Annotator) -> int:
        rng = random.Random(f"{a.seed}:{phase}")
        done = 0
        with httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {a.token}"}, timeout=60
        ) as client:
            while done < max_tasks:
                resp = client.get("/tasks/next")
                if resp.status_code == 204:
                    break
                resp.raise_for_status()
                task: dict[str, Any] = resp.json()
                cands = task["candidates"]
                scores = [float(oracle(task["prompt"], c["text"])) for c in cands]
                order = annotator_tiers(a.behaviour, scores, temperature, rng, abs_eps, rel_eps)
                tiers = [[cands[i]["id"] for i in tier] for tier in order]
                sent = client.post(
                    "/rankings",
                    json={"assignment_id": task["assignment_id"], "tiers": tiers, "seconds_spent": 10.0},
                )
                sent.raise_for_status()
                session.add(RankedSet(a.name, task["prompt"], [c["id"] for c in cands], scores, tiers))
                done += 1
        return done

    with ThreadPoolExecutor(max_workers=len(annotators), thread_name_prefix="annotator") as pool:
        list(pool.map(work, annotators))
    return session
