"""Imports: turn checked records into prompts, candidates, comparison sets and imported rankings.

An import is all or nothing: `importers.parse` checks every line before anything is written, and the
caller commits once. Re-importing is safe: a prompt is identified by its text within the prompt set, a
candidate by (prompt, model version, text), and a set by its prompt and candidates, so a record whose set
(or, for a ranked record, whose imported ranking) already exists is counted as a duplicate, not stored twice.
Two rankings of the same candidates that disagree (A>B from one judge, B>A from another) are both kept,
each in its own closed set, and counted as conflicts; only an identical ranking is a duplicate, so what
survives never depends on the order of the lines.
Demonstrations (`import_demonstrations`) become candidates of the human "demonstrations" version, in no set.

A prompt set's hand-out settings (priority, pause) are set here too, from the admin Data page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.orm import Session

from app.annotation.tiers import validate_tiers
from app.auth.service import imported_annotator
from app.config import Settings
from app.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from app.orm import (
    ComparisonSet,
    ComparisonSetItem,
    ModelKind,
    PromptSet,
    SetStatus,
)
from app.projects import service as projects
from app.prompts import importers, rows
from app.prompts import repository as repo
from app.prompts.importers import Record
from app.prompts.schemas import DemonstrationSummary, ImportKind, ImportSummary
from app.text import check_name
from app.training.rounds import DEMONSTRATION_SOURCE

DEFAULT_PROMPT_SET = "imported"
MAX_PRIORITY = 1_000_000


def set_prompt_set_priority(session: Session, prompt_set_id: int, priority: int) -> None:
    """Higher-priority prompt sets are handed out first; 422 beyond +-MAX_PRIORITY, 404 if unknown."""
    if abs(priority) > MAX_PRIORITY:
        raise Invalid(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    ps = repo.get_prompt_set(session, prompt_set_id)
    if ps is None:
        raise NotFound(f"no prompt set {prompt_set_id}")
    ps.priority = priority
    session.flush()


def set_prompt_set_paused(session: Session, prompt_set_id: int, paused: bool) -> None:
    """A paused prompt set hands out no tasks; its sets keep their rankings. 404 if unknown."""
    ps = repo.get_prompt_set(session, prompt_set_id)
    if ps is None:
        raise NotFound(f"no prompt set {prompt_set_id}")
    ps.paused = paused
    session.flush()


def import_file(
    session: Session,
    settings: Settings,
    data: bytes,
    kind: ImportKind,
    prompt_set: str | None = None,
    filename: str = "",
    project_id: int | None = None,
) -> ImportSummary:
    """Check a whole file, then write it (into a prompt set of the project; None: the default project, or
    the prompt set's own); on any malformed line raise Invalid and write nothing."""
    if kind == ImportKind.demonstrations:
        return _import_demonstrations(session, settings, data, prompt_set, project_id)
    name = _prompt_set_name(prompt_set)
    parsed = importers.parse_file(data, kind, filename)
    # The file name is only a label (stored in Prompt.source); keep it storable whatever the client sent.
    origin = filename.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")[:100]
    summary = import_records(
        session,
        settings,
        parsed.records,
        name,
        origin=origin,
        project_id=project_id,
        gold=kind == ImportKind.gold,
    )
    summary.left_out = parsed.left_out
    return summary


def import_demonstrations(
    session: Session,
    settings: Settings,
    data: bytes,
    prompt_set: str | None = None,
    project_id: int | None = None,
) -> DemonstrationSummary:
    """Store `{"prompt","completion"}` lines as demonstrations for SFT; flushes, never commits.

    Each completion becomes a candidate of the active external "demonstrations" version (config
    `{"source": "demonstration", "human": True}`), which the worker's SFT stage trains on. Raises
    PayloadTooLarge over max_upload_bytes, Invalid (nothing written) naming every malformed line, and
    Conflict when a non-external model version of the project already has that name. Everything lands in
    the project given (None: the default project).
    """
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the file is larger than {settings.max_upload_bytes} bytes")
    name = _prompt_set_name(prompt_set, default=importers.DEMONSTRATIONS_MODEL)
    records = [
        replace(r, completion_meta=[{"source": DEMONSTRATION_SOURCE}])
        for r in importers.parse(data, ImportKind.demonstrations)
    ]
    project_id = projects.project_or_default(session, project_id).id
    prompt_set_row = repo.get_or_add_prompt_set(
        session, name, "prompts with human-written demonstrations", project_id
    )
    version = repo.get_or_add_external_model_version(
        session, importers.DEMONSTRATIONS_MODEL, {"source": DEMONSTRATION_SOURCE, "human": True}, project_id
    )
    if version.kind != ModelKind.external:
        raise Conflict(
            f"model version {importers.DEMONSTRATIONS_MODEL!r} exists and is not an external source"
        )
    prompts, preexisting = rows.prompts(session, prompt_set_row.id, records, origin="")
    _, stored = rows.candidates(session, records, prompts, {importers.DEMONSTRATIONS_MODEL: version})
    return DemonstrationSummary(
        prompt_set=name,
        lines=len(records),
        prompts=len(prompts) - len(preexisting),
        demonstrations=stored,
        duplicates=len(records) - stored,
    )


def _import_demonstrations(
    session: Session, settings: Settings, data: bytes, prompt_set: str | None, project_id: int | None
) -> ImportSummary:
    done = import_demonstrations(session, settings, data, prompt_set, project_id)
    return ImportSummary(
        prompt_set=done.prompt_set,
        records=done.lines,
        prompts=done.prompts,
        candidates=done.demonstrations,
        sets=0,
        rankings=0,
        duplicates=done.duplicates,
    )


def import_records(
    session: Session,
    settings: Settings,
    records: Sequence[Record],
    prompt_set: str,
    *,
    description: str = "",
    origin: str = "",
    project_id: int | None = None,
    gold: bool = False,
) -> ImportSummary:
    """Write checked records into a prompt set (created if missing, in the project given or the default
    one); flushes, never commits. New open sets want the project's overlap. With `gold`, each ranked record
    is an open gold set with its ranking as the known one (a set of the same candidates: a duplicate)."""
    name = _prompt_set_name(prompt_set)
    prompt_set_row = _prompt_set_in(session, name, description, project_id)
    overlap_wanted = projects.resolved(
        projects.project_or_default(session, prompt_set_row.project_id), settings
    ).overlap
    prompts, preexisting = rows.prompts(session, prompt_set_row.id, records, origin)
    grouped = [r for r in records if r.completions]
    summary = ImportSummary(
        prompt_set=name,
        records=len(records),
        prompts=len({r.prompt for r in records} - preexisting),
        candidates=0,
        sets=0,
        rankings=0,
        duplicates=rows.repeated_prompts([r for r in records if not r.completions], preexisting),
        prompt_set_id=prompt_set_row.id,
    )
    if not grouped:
        return _with_next_step(session, summary, prompt_set_row.id)

    versions = rows.model_versions(
        session, {m for r in grouped for m in r.models()}, origin, prompt_set_row.project_id
    )
    candidate_ids, summary.candidates = rows.candidates(session, grouped, prompts, versions)
    prompt_ids = sorted({prompts[r.prompt].id for r in grouped})
    existing_sets = rows.existing_sets(session, prompt_ids)
    ranked = not gold and any(r.tiers is not None for r in grouped)
    annotator_id = imported_annotator(session).id if ranked else None
    if annotator_id is not None:
        # Its rankings are the project's like any member's (the account cannot log in).
        projects.add_member(session, prompt_set_row.project_id, annotator_id)
    # The outside judgements already stored, by set key: an identical one is a duplicate, another one
    # of the same candidates a conflict (kept: both judges' word counts).
    judged: dict[rows.SetKey, set[rows.Verdict]] = {}
    if annotator_id is not None:
        by_set = {s: key for key, ids in existing_sets.items() for s in ids}
        for set_id, tiers in repo.rankings_of_annotator(session, annotator_id, list(by_set)):
            judged.setdefault(by_set[set_id], set()).add(rows.verdict(tiers))

    new_open: set[rows.SetKey] = set()
    to_rank: list[rows.ToRank] = []
    new_sets: list[ComparisonSet] = []
    for record, ids in zip(grouped, candidate_ids, strict=True):
        key = (prompts[record.prompt].id, frozenset(ids))
        gold_tiers = [[ids[i] for i in tier] for tier in record.tiers or []] if gold else None
        if record.tiers is None or gold:
            if key in existing_sets or key in new_open:
                summary.duplicates += 1
                continue
            new_open.add(key)
            overlap, status = overlap_wanted, SetStatus.open
        else:
            verdict = rows.verdict([[ids[i] for i in tier] for tier in record.tiers])
            seen = judged.setdefault(key, set())
            if verdict in seen:
                summary.duplicates += 1
                continue
            summary.conflicts += bool(seen)
            seen.add(verdict)
            # Already judged outside: nobody here is asked again, the outside judgement is the one ranking.
            overlap, status = 1, SetStatus.closed
        comparison_set = ComparisonSet(
            prompt_id=key[0],
            overlap=overlap,
            status=status,
            source=record.source[:200],
            items=[ComparisonSetItem(candidate_id=c, position=i) for i, c in enumerate(ids)],
            gold_tiers=validate_tiers(gold_tiers, ids) if gold_tiers else None,
        )
        new_sets.append(comparison_set)
        summary.gold += bool(gold_tiers)
        if record.tiers is not None and not gold:
            tiers = [[ids[i] for i in tier] for tier in record.tiers]
            to_rank.append(rows.ToRank(comparison_set, ids, tiers, record.all_bad))
    repo.add_all(session, new_sets)
    summary.sets = len(new_sets)

    if to_rank and annotator_id is not None:
        summary.rankings = rows.imported_rankings(session, annotator_id, to_rank)
    return _with_next_step(session, summary, prompt_set_row.id)


def _prompt_set_in(session: Session, name: str, description: str, project_id: int | None) -> PromptSet:
    """The project's prompt set of this name (None: the default project), created if missing; names are
    unique per project, so another project's set of the name is never touched."""
    target = projects.project_or_default(session, project_id)
    return repo.get_or_add_prompt_set(session, name, description, target.id)


def _with_next_step(session: Session, summary: ImportSummary, prompt_set_id: int) -> ImportSummary:
    """The summary with how many of the set's prompts wait for candidates (no annotator sees them yet)."""
    session.flush()
    summary.waiting_for_candidates = repo.count_prompts_without_sets(session, prompt_set_id)
    return summary


def import_replies(
    session: Session,
    records: Sequence[Record],
    prompt_set: str,
    *,
    description: str = "",
    origin: str = "",
    project_id: int | None = None,
) -> int:
    """Prompts with their replies as candidates of each record's model, in no comparison set: they wait for
    a generation job with `human_replies` to put them beside a model's (the demo's people-vs-model sets).
    Flushes, never commits; returns how many candidates are new."""
    prompt_set_row = repo.get_or_add_prompt_set(
        session, _prompt_set_name(prompt_set), description, project_id
    )
    prompts, _ = rows.prompts(session, prompt_set_row.id, records, origin)
    with_replies = [r for r in records if r.completions]
    if not with_replies:
        return 0
    versions = rows.model_versions(
        session, {m for r in with_replies for m in r.models()}, origin, prompt_set_row.project_id
    )
    _, stored = rows.candidates(session, with_replies, prompts, versions)
    return stored


def _prompt_set_name(name: str | None, default: str = DEFAULT_PROMPT_SET) -> str:
    """The prompt set name to use, the same for every import kind: the given one, trimmed, or the default;
    one line of at most NAME_CHARS under app.text's rule (422 otherwise)."""
    return check_name(name, "prompt_set", default=default)
