"""Rankings for the admin dashboard's tests: any tiers, display order, flags, timing and date.

Flushes only; pass the `db` fixture's session or `session_scope()` for committed data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Ranking,
    Skip,
    User,
)
from tests.factories import make_annotator, make_candidates, make_comparison_set, make_prompt, make_prompt_set

_seq = itertools.count(1)


def rank(
    session: Session,
    cset: ComparisonSet,
    annotator: User,
    tiers: Sequence[Sequence[int]],
    *,
    display_order: Sequence[int] | None = None,
    all_bad: bool = False,
    flags: dict[str, list[str]] | None = None,
    seconds: float | None = 30.0,
    client_seconds: float | None = None,
    source: str = "web",
    created_at: dt.datetime | None = None,
    dropped: bool = False,
) -> Ranking:
    """A submitted ranking of `cset` by `annotator` (tiers of candidate ids, best first).

    `seconds` is the server-measured time (lease to submission), `client_seconds` what the client reported.
    """
    now = created_at or dt.datetime.now(dt.UTC)
    shown = list(display_order) if display_order is not None else [c for tier in tiers for c in tier]
    assignment = Assignment(
        set_id=cset.id,
        annotator_id=annotator.id,
        status=AssignmentStatus.submitted,
        display_order=shown,
        leased_at=now - dt.timedelta(seconds=seconds or 0.0),
        lease_expires_at=now + dt.timedelta(minutes=30),
        completed_at=now,
    )
    session.add(assignment)
    session.flush()
    ranking = Ranking(
        assignment_id=assignment.id,
        set_id=cset.id,
        annotator_id=annotator.id,
        tiers=[sorted(t) for t in tiers],
        all_bad=all_bad,
        flags=flags or {},
        rationale="",
        display_order=shown,
        seconds_spent=client_seconds,
        server_seconds=seconds,
        source=source,
        fingerprint=f"admin-test-{next(_seq)}",
        dropped=dropped,
    )
    if created_at is not None:
        ranking.created_at = created_at
    session.add(ranking)
    session.flush()
    return ranking


def skip(session: Session, cset: ComparisonSet, annotator: User, reason: str = "unsure") -> Skip:
    """A skipped assignment of `cset` by `annotator`."""
    now = dt.datetime.now(dt.UTC)
    assignment = Assignment(
        set_id=cset.id,
        annotator_id=annotator.id,
        status=AssignmentStatus.skipped,
        display_order=[],
        leased_at=now,
        lease_expires_at=now,
        completed_at=now,
    )
    session.add(assignment)
    session.flush()
    row = Skip(assignment_id=assignment.id, set_id=cset.id, annotator_id=annotator.id, reason=reason)
    session.add(row)
    session.flush()
    return row


def random_tiers(rng: random.Random, ids: Sequence[int], tie_chance: float = 0.25) -> list[list[int]]:
    """A random ordering of `ids` where each neighbour joins the tier above with `tie_chance`."""
    order = list(ids)
    rng.shuffle(order)
    tiers: list[list[int]] = [[order[0]]]
    for c in order[1:]:
        if rng.random() < tie_chance:
            tiers[-1].append(c)
        else:
            tiers.append([c])
    return tiers


@dataclass
class Loop:
    versions: list[ModelVersion]
    annotators: list[User]
    sets: list[ComparisonSet]
    candidates: dict[int, list[Candidate]]  # set id -> its candidates
    rankings: list[Ranking]


def random_loop(
    session: Session,
    *,
    seed: int = 0,
    versions: int = 4,
    sets: int = 24,
    k: int = 4,
    annotators: int = 4,
    quality: Sequence[float] | None = None,
) -> Loop:
    """Sets mixing candidates of a policy lineage; 1-3 annotators each, with ties, all-bad, drops, imports.

    Each annotator orders candidates by the version's `quality` plus noise, so ratings have a direction.
    """
    rng = random.Random(seed)
    quality = list(quality) if quality is not None else [0.3 * i for i in range(versions)]
    ps = make_prompt_set(session, f"loop-{seed}-{next(_seq)}")
    lineage: list[ModelVersion] = []
    for i in range(versions):
        mv = ModelVersion(
            name=f"policy-{seed}-{i}-{next(_seq)}",
            kind=ModelKind.policy,
            status=ModelStatus.active if i == versions - 1 else ModelStatus.retired,
            base_model="tiny",
            parent_id=lineage[-1].id if lineage else None,
            metrics={},
            config={},
        )
        session.add(mv)
        session.flush()
        lineage.append(mv)
    people = [make_annotator(session, f"judge-{seed}-{i}-{next(_seq)}") for i in range(annotators)]
    loop = Loop(lineage, people, [], {}, [])
    for s in range(sets):
        prompt = make_prompt(session, ps, f"Question {s} of loop {seed}: why?")
        a = rng.randrange(versions)
        b = rng.choice([v for v in range(versions) if v != a])
        cands = []
        for j in range(k):
            version = lineage[a if j % 2 == 0 else b]
            cands += make_candidates(
                session, prompt, ["x" * rng.randint(5, 60) + f" {s}.{j}"], model_version=version
            )
        cset = make_comparison_set(session, prompt, candidates=cands, overlap=3)
        loop.sets.append(cset)
        loop.candidates[cset.id] = cands
        version_of = {
            c.id: lineage.index(next(v for v in lineage if v.id == c.model_version_id)) for c in cands
        }
        for person in rng.sample(people, rng.randint(1, min(3, annotators))):
            ids = [c.id for c in cands]
            noisy = {c: quality[version_of[c]] + rng.gauss(0, 0.5) for c in ids}
            order = sorted(ids, key=lambda c: -noisy[c])
            tiers: list[list[int]] = [[order[0]]]
            for c in order[1:]:
                (tiers[-1].append(c) if rng.random() < 0.2 else tiers.append([c]))
            shown = list(ids)
            rng.shuffle(shown)
            source = "web" if rng.random() < 0.85 else "import"
            loop.rankings.append(
                rank(
                    session,
                    cset,
                    person,
                    tiers,
                    display_order=shown if source == "web" else [],
                    all_bad=rng.random() < 0.08,
                    source=source,
                    seconds=round(rng.uniform(3, 200), 1),
                    dropped=rng.random() < 0.05,
                )
            )
    return loop
