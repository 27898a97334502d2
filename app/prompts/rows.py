"""The rows an import writes, each found and reused where it already exists (app.prompts.service decides
what to write; this module builds and stores it): prompts by their text, the project's external model
versions by name, candidates by (prompt, model version, text), existing comparison sets by their prompt and
candidates, and the imported annotator's submitted rankings. What writes flushes; nothing commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from app.annotation.service import fingerprint
from app.annotation.tiers import validate_tiers
from app.conversation import PromptLike, flatten, stored_messages
from app.orm import (
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ModelVersion,
    Prompt,
    Ranking,
)
from app.prompts import repository as repo
from app.prompts.importers import Record

RANKING_SOURCE = "import"
# A comparison set's identity for re-imports: its prompt and the candidates in it.
SetKey = tuple[int, frozenset[int]]
# A ranking's identity: tiers of candidate ids, best first.
Verdict = tuple[frozenset[int], ...]


class ToRank(NamedTuple):
    """A new closed set and the outside judgement to store for it (tiers of candidate ids)."""

    comparison_set: ComparisonSet
    candidate_ids: list[int]
    tiers: list[list[int]]
    all_bad: bool


def verdict(tiers: Sequence[Sequence[int]]) -> Verdict:
    """A ranking's identity for re-imports: its tiers of candidate ids, order within a tier ignored."""
    return tuple(frozenset(tier) for tier in tiers)


def repeated_prompts(records: Sequence[Record], preexisting: set[PromptLike]) -> int:
    """How many prompt-only records name a prompt that existed already or came earlier in the file."""
    seen = set(preexisting)
    repeated = 0
    for r in records:
        repeated += r.prompt in seen
        seen.add(r.prompt)
    return repeated


def prompts(
    session: Session, prompt_set_id: int, records: Sequence[Record], origin: str
) -> tuple[dict[PromptLike, Prompt], set[PromptLike]]:
    """Prompts by what they ask (a text or a conversation), created where missing; also those that existed.

    A prompt is found by its text (a conversation's flattened text). A plain prompt found for a
    conversation gets the conversation's turns: it was imported flattened before conversations were kept.
    """
    tags: dict[PromptLike, list[str]] = {}
    sources: dict[PromptLike, str] = {}
    for r in records:
        tags.setdefault(r.prompt, [])
        tags[r.prompt].extend(t for t in r.tags if t not in tags[r.prompt])
        sources.setdefault(r.prompt, f"{r.source}:{origin}" if origin else r.source)
    by_text = repo.prompts_by_text(session, prompt_set_id, list({flatten(p) for p in tags}))
    found: dict[PromptLike, Prompt] = {}
    for prompt in tags:
        row = by_text.get(flatten(prompt))
        if row is None:
            continue
        if row.messages is None and not isinstance(prompt, str):
            row.messages = stored_messages(prompt)
        found[prompt] = row
    preexisting = set(found)
    new: dict[PromptLike, Prompt] = {}
    for prompt in tags:
        if prompt in found:
            continue
        text = flatten(prompt)
        # Two records may flatten to one text (a text and a conversation): one row, the first one's.
        if text in by_text:
            found[prompt] = by_text[text]
            continue
        row = Prompt(
            prompt_set_id=prompt_set_id,
            text=text,
            messages=stored_messages(prompt),
            tags=tags[prompt],
            source=sources[prompt][:200],
        )
        new[prompt] = by_text[text] = row
    repo.add_all(session, list(new.values()))
    found.update(new)
    return found, preexisting


def model_versions(
    session: Session, names: set[str], origin: str, project_id: int
) -> dict[str, ModelVersion]:
    """The project's model versions named by the records, created as active external versions of the
    project where missing (another project's version of the name is never used)."""
    versions: dict[str, ModelVersion] = {}
    for name in sorted(names):
        config: dict[str, object] = {"source": "import", "first_imported_from": origin}
        versions[name] = repo.get_or_add_external_model_version(session, name, config, project_id)
    return versions


def candidates(
    session: Session,
    records: Sequence[Record],
    prompts: dict[PromptLike, Prompt],
    versions: dict[str, ModelVersion],
) -> tuple[list[list[int]], int]:
    """Candidate ids per record, reusing one with the same prompt, model and text; and how many are new."""
    prompt_ids = sorted({prompts[r.prompt].id for r in records})
    known: dict[tuple[int, int, str], Candidate] = {
        (c.prompt_id, c.model_version_id, c.text): c for c in repo.candidates_of_prompts(session, prompt_ids)
    }
    new: list[Candidate] = []
    ids: list[list[int]] = []
    for r in records:
        prompt_id = prompts[r.prompt].id
        keys = [(prompt_id, versions[m].id, text) for m, text in zip(r.models(), r.completions, strict=True)]
        for index, key in enumerate(keys):
            if key not in known:
                params: dict[str, Any] = (
                    r.completion_meta[index] if r.completion_meta else {"source": r.source}
                )
                known[key] = Candidate(
                    prompt_id=key[0], model_version_id=key[1], text=key[2], generation_params=params
                )
                new.append(known[key])
    repo.add_all(session, new)
    for r in records:
        prompt_id = prompts[r.prompt].id
        ids.append(
            [
                known[(prompt_id, versions[m].id, text)].id
                for m, text in zip(r.models(), r.completions, strict=True)
            ]
        )
    return ids, len(new)


def existing_sets(session: Session, prompt_ids: Sequence[int]) -> dict[SetKey, list[int]]:
    """Existing comparison sets of these prompts, by (prompt id, candidate ids)."""
    members: dict[int, tuple[int, set[int]]] = {}
    for set_id, prompt_id, candidate_id in repo.set_items_of_prompts(session, prompt_ids):
        members.setdefault(set_id, (prompt_id, set()))[1].add(candidate_id)
    by_key: dict[SetKey, list[int]] = {}
    for set_id, (prompt_id, ids) in members.items():
        by_key.setdefault((prompt_id, frozenset(ids)), []).append(set_id)
    return by_key


def imported_rankings(
    session: Session,
    annotator_id: int,
    to_rank: Sequence[ToRank],
) -> int:
    """A submitted assignment and a ranking by the imported annotator for each newly ranked set."""
    now = dt.datetime.now(dt.UTC)
    assignments = [
        Assignment(
            set_id=s.id,
            annotator_id=annotator_id,
            status=AssignmentStatus.submitted,
            display_order=ids,
            leased_at=now,
            lease_expires_at=now,
            completed_at=now,
        )
        for s, ids, _, _ in to_rank
    ]
    repo.add_all(session, assignments)
    rankings = []
    for assignment, (s, ids, tiers, all_bad) in zip(assignments, to_rank, strict=True):
        normalised = validate_tiers(tiers, ids)
        rankings.append(
            Ranking(
                assignment_id=assignment.id,
                set_id=s.id,
                annotator_id=annotator_id,
                tiers=normalised,
                all_bad=all_bad,
                flags={},
                rationale="",
                display_order=ids,
                seconds_spent=None,
                source=RANKING_SOURCE,
                fingerprint=fingerprint(assignment.id, normalised, all_bad, {}, ""),
            )
        )
    repo.add_all(session, rankings)
    return len(rankings)
