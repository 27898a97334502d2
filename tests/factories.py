"""Helpers that build prompt sets, prompts, model versions, candidates and comparison sets through the ORM.

They only flush (never commit): pass the `db` fixture's session, or `session_scope()` for committed data.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.config import get_settings
from app.orm import (
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Project,
    Prompt,
    PromptSet,
    Role,
    User,
)
from app.projects import service as projects

_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


def make_prompt_set(
    session: Session,
    name: str | None = None,
    *,
    priority: int = 0,
    paused: bool = False,
    project: Project | None = None,
) -> PromptSet:
    """A prompt set (unique name generated when none is given), in the default project unless given."""
    ps = PromptSet(name=name or f"prompt-set-{_n()}", priority=priority, paused=paused)
    if project is not None:
        ps.project_id = project.id
    session.add(ps)
    session.flush()
    return ps


def make_prompt(
    session: Session,
    prompt_set: PromptSet | None = None,
    text: str | None = None,
    *,
    priority: int = 0,
    tags: Sequence[str] = (),
    messages: list[dict[str, str]] | None = None,
) -> Prompt:
    """A prompt in `prompt_set` (a new set when none is given); a conversation when `messages` is given."""
    prompt_set = prompt_set or make_prompt_set(session)
    prompt = Prompt(
        prompt_set_id=prompt_set.id,
        text=text or f"Prompt number {_n()}?",
        priority=priority,
        tags=list(tags),
        messages=messages,
    )
    session.add(prompt)
    session.flush()
    return prompt


def make_model_version(
    session: Session,
    name: str | None = None,
    *,
    kind: ModelKind = ModelKind.policy,
    status: ModelStatus = ModelStatus.active,
    project: Project | None = None,
) -> ModelVersion:
    """A model version (an active policy by default), in the default project unless given."""
    mv = ModelVersion(name=name or f"model-{_n()}", kind=kind, status=status, base_model="test-base")
    if project is not None:
        mv.project_id = project.id
    session.add(mv)
    session.flush()
    return mv


def make_candidates(
    session: Session,
    prompt: Prompt,
    texts: Sequence[str],
    *,
    model_version: ModelVersion | None = None,
    hidden: Sequence[bool] = (),
) -> list[Candidate]:
    """One candidate per text for `prompt`."""
    mv = model_version or make_model_version(session)
    cands = [
        Candidate(
            prompt_id=prompt.id,
            model_version_id=mv.id,
            text=text,
            hidden=hidden[i] if i < len(hidden) else False,
            generation_params={"temperature": 0.7},
            seed=i,
        )
        for i, text in enumerate(texts)
    ]
    session.add_all(cands)
    session.flush()
    return cands


def make_comparison_set(
    session: Session,
    prompt: Prompt | None = None,
    *,
    texts: Sequence[str] | None = None,
    k: int = 3,
    overlap: int | None = None,
    candidates: Sequence[Candidate] | None = None,
    hidden: Sequence[bool] = (),
    source: str = "test",
) -> ComparisonSet:
    """A comparison set over `candidates` (or new ones from `texts`, or `k` generated texts).

    `overlap` defaults to settings.overlap, as the app does.
    """
    prompt = prompt or make_prompt(session)
    if candidates is None:
        texts = (
            list(texts) if texts is not None else [f"Answer {i + 1} to prompt {prompt.id}" for i in range(k)]
        )
        candidates = make_candidates(session, prompt, texts, hidden=hidden)
    cset = ComparisonSet(
        prompt_id=prompt.id,
        overlap=overlap if overlap is not None else get_settings().overlap,
        source=source,
    )
    session.add(cset)
    session.flush()
    session.add_all(
        ComparisonSetItem(set_id=cset.id, candidate_id=c.id, position=i) for i, c in enumerate(candidates)
    )
    session.flush()
    session.expire(cset, ["items"])
    return cset


def make_project(session: Session, name: str | None = None, **fields: object) -> Project:
    """A project (unique name generated when none is given) with these column values."""
    project = Project(name=name or f"project-{_n()}", **fields)
    session.add(project)
    session.flush()
    return project


def make_annotator(session: Session, name: str | None = None, role: Role = Role.annotator) -> User:
    """A user without a password (fast: no hashing), for service tests."""
    user = User(username=name or f"annotator-{_n()}", role=role, password_hash=None)
    session.add(user)
    session.flush()
    projects.join_default(session, user.id)  # as app.auth.service.create_user does
    return user
