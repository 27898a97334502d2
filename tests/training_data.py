"""Synthetic rankings for training-round tests, in words the tiny test tokenizer knows.

The "good" reply of every prompt mentions the marker word; annotators rank it first, so a reward model can
learn something in a few steps.
"""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy.orm import Session

from app.orm import (
    ModelKind,
    ModelStatus,
    ModelVersion,
    Project,
    Prompt,
    SetStatus,
)
from tests.admin_data import rank
from tests.factories import make_annotator, make_candidates, make_comparison_set, make_prompt, make_prompt_set

SUBJECTS = [
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "river",
    "sun",
    "moon",
    "star",
    "rain",
    "snow",
    "wind",
    "fire",
    "stone",
    "road",
    "house",
]
ADJECTIVES = [
    "red",
    "blue",
    "green",
    "big",
    "small",
    "old",
    "new",
    "fast",
    "slow",
    "happy",
    "sad",
    "good",
    "bad",
]


def tiny_model(path: Path) -> Path:
    """A tiny random Llama + word-level tokenizer saved at `path` (built by the ML core's test helper)."""
    from tests.worker.conftest import save_tiny_model

    return save_tiny_model("llama", path)


def tiny_overrides(model: Path, **extra: object) -> dict[str, object]:
    """Small enough for a CPU test: short texts, one epoch, a few prompts."""
    return {
        "base_model": str(model),
        "device": "cpu",
        "max_length": 64,
        "max_prompt_length": 32,
        "max_new_tokens": 8,
        "k": 3,
        "generate_prompts": 5,
        "eval_prompts": 2,
        "synthetic_prompts": 2,
        "synthetic_samples": 2,
        "reward_batch_size": 2,
        "policy_batch_size": 2,
        "generation_batch_size": 8,
        "heldout_fraction": 0.34,
        # A test's handful of prompts still exercises the policy's held-out split and checkpoint selection.
        "policy_min_heldout_prompts": 1,
        "reward_min_heldout_prompts": 1,
        **extra,
    }


def seed_rankings(
    session: Session,
    *,
    prompts: int = 6,
    k: int = 3,
    annotators: int = 2,
    unranked: int = 3,
    human_first: bool = False,
    seed: int = 0,
    project: Project | None = None,
) -> dict[str, list[int]]:
    """Ranked sets (closed, `annotators` rankings each) plus unranked prompts that still need candidates,
    in the default project unless given."""
    rnd = random.Random(seed)
    ps = make_prompt_set(session, f"training-{seed}", project=project)
    people = [make_annotator(session, f"ranker-{seed}-{i}") for i in range(annotators)]
    # Imported texts: an external source, not a policy of ours.
    source = ModelVersion(
        name=f"imported-{seed}", kind=ModelKind.external, status=ModelStatus.active, config={}
    )
    session.add(source)
    human = None
    if human_first:
        human = ModelVersion(
            name=f"oasst-human-{seed}", kind=ModelKind.external, status=ModelStatus.active, config={}
        )
        session.add(human)
    session.flush()
    ranking_ids, set_ids, prompt_ids = [], [], []
    for i in range(prompts):
        subject = SUBJECTS[i % len(SUBJECTS)]
        prompt = make_prompt(session, ps, f"tell me about the {subject} {i}")
        good = f"the {subject} is good banana"
        bad = [f"the {subject} is {rnd.choice(ADJECTIVES)} {w}" for w in ("no", "sad", "bad", "slow")][
            : k - 1
        ]
        cands = make_candidates(session, prompt, [good, *bad], model_version=source)
        if human is not None:
            cands[0].model_version_id = human.id
        cset = make_comparison_set(session, prompt, candidates=cands, overlap=annotators)
        cset.status = SetStatus.closed
        for person in people:
            order = [c.id for c in cands[1:]]
            rnd.shuffle(order)
            ranking_ids.append(
                rank(
                    session, cset, person, [[cands[0].id], *[[c] for c in order]], seconds=None, source="test"
                ).id
            )
        set_ids.append(cset.id)
        prompt_ids.append(prompt.id)
    for j in range(unranked):
        subject = SUBJECTS[(prompts + j) % len(SUBJECTS)]
        prompt_ids.append(make_prompt(session, ps, f"write a story about the {subject}").id)
    session.flush()
    return {"rankings": ranking_ids, "sets": set_ids, "prompts": prompt_ids}


def all_prompts(session: Session) -> list[Prompt]:
    return session.query(Prompt).order_by(Prompt.id).all()


def reset_artifacts() -> None:
    """Version directories are files, not rows: clean_db leaves them; tests that count them reset them."""
    import shutil

    from app.config import get_settings

    shutil.rmtree(get_settings().resolved_artifacts_dir, ignore_errors=True)


def clear_queue() -> None:
    """Empty procrastinate's tables: jobs, their events, periodic defers and registered workers."""
    from sqlalchemy import text

    from app.db import session_scope

    with session_scope() as s:
        s.execute(text("DELETE FROM procrastinate_events"))
        s.execute(text("DELETE FROM procrastinate_periodic_defers"))
        s.execute(text("DELETE FROM procrastinate_jobs"))
        s.execute(text("DELETE FROM procrastinate_workers"))


def run_round_jobs(round_id: int) -> str:
    """Run a round's jobs in this process as the workers would: the training job, then the generation job
    that it hands the round to once its versions are published (worker/rounds.py)."""
    from app.db import session_scope
    from app.orm import Round
    from worker.tasks import HANDED_OVER, run_round_job

    outcome = run_round_job(round_id, job_id=None)
    if outcome == HANDED_OVER:
        with session_scope() as s:
            job_id = s.get(Round, round_id).job_id
        outcome = run_round_job(round_id, job_id=job_id)
    return outcome
