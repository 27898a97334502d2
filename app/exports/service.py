"""Exports as streams of JSONL lines: raw rankings, and TRL preference pairs.

Pairs come in TRL's standard format (texts; a conversation's prompt flattened) or its conversational one
(the prompt's turns, each reply one assistant message), which DPOTrainer and RewardTrainer load as written.
A ranking line carries the prompt both ways (`text` and `messages`), so it re-imports without loss.

The filters are checked at once with the caller's session (so a bad filter is a clear 4xx before any
byte is sent); the lines are then produced lazily by a generator with its own session, reading the
rankings in batches inside one REPEATABLE READ transaction, so a long export is one consistent snapshot
and never holds more than a batch in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy.orm import Session, sessionmaker

from app.annotation import review_repository as review
from app.annotation.review_repository import SetMember
from app.conversation import from_stored, to_messages
from app.db import session_factory
from app.errors import Invalid, NotFound
from app.exports import repository as repo
from app.exports.repository import ExportFilter, RankingRow
from app.exports.schemas import (
    ConversationalPreferencePair,
    ExportedCandidate,
    ExportedPrompt,
    ExportFormat,
    Message,
    PreferencePair,
    RankingRecord,
)
from app.prompts.repository import get_prompt_set_by_name, prompt_sets_named
from app.training.pairs import pairs_from_tiers

BATCH_SIZE = 500
Render = Callable[[RankingRow, list[SetMember]], Iterator[str]]


def parse_since(value: str | dt.datetime | None) -> dt.datetime | None:
    """An ISO date or datetime (naive means UTC), or None for an empty value."""
    if value is None or isinstance(value, dt.datetime):
        return _aware(value) if value else None
    value = value.strip()
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(f"since must be an ISO date or datetime such as 2025-01-31, got {value!r}") from None
    return _aware(parsed)


def _aware(moment: dt.datetime) -> dt.datetime:
    """The moment with UTC attached when it has no time zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def rankings_export(
    session: Session,
    prompt_set: str | None = None,
    since: str | dt.datetime | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    sessions: sessionmaker[Session] | None = None,
    project_id: int | None = None,
) -> Iterator[str]:
    """Check the filters, then stream one JSON line per live ranking (rankings.jsonl), of one project if
    given."""
    filters = _filters(session, prompt_set, since, exclude_all_bad=False, project_id=project_id)
    return _stream(filters, _ranking_lines, batch_size, sessions)


def pairs_export(
    session: Session,
    prompt_set: str | None = None,
    since: str | dt.datetime | None = None,
    *,
    format: ExportFormat = ExportFormat.standard,
    batch_size: int = BATCH_SIZE,
    sessions: sessionmaker[Session] | None = None,
    project_id: int | None = None,
) -> Iterator[str]:
    """Check the filters, then stream TRL preference pairs, one JSON line each (pairs.jsonl), of one
    project if given, in TRL's standard or conversational format."""
    filters = _filters(session, prompt_set, since, exclude_all_bad=True, project_id=project_id)
    render = _conversational_pair_lines if format == ExportFormat.conversational else _pair_lines
    return _stream(filters, render, batch_size, sessions)


def _filters(
    session: Session,
    prompt_set: str | None,
    since: str | dt.datetime | None,
    *,
    exclude_all_bad: bool,
    project_id: int | None = None,
) -> ExportFilter:
    """Resolve a prompt set name to its id (404 if unknown) and parse `since`. Names are unique per
    project: without a project, a name two projects use is refused (422 naming the field)."""
    prompt_set_id = None
    if prompt_set:
        prompt_set_id = _prompt_set_id(session, prompt_set, project_id)
    return ExportFilter(prompt_set_id, parse_since(since), project_id, exclude_all_bad)


def _prompt_set_id(session: Session, name: str, project_id: int | None) -> int:
    # A name no prompt set can have (NUL) must not reach PostgreSQL, which refuses it outright.
    if "\x00" in name:
        raise NotFound(f"no prompt set named {name!r}")
    if project_id is not None:
        found = get_prompt_set_by_name(session, name, project_id)
        if found is None:
            raise NotFound(f"no prompt set named {name!r} in project {project_id}")
        return found.id
    named = prompt_sets_named(session, name)
    if not named:
        raise NotFound(f"no prompt set named {name!r}")
    if len(named) > 1:
        ids = ", ".join(str(p.project_id) for p in named)
        raise Invalid(
            f"prompt_set: {name!r} names a prompt set in several projects ({ids}); give the project"
        )
    return named[0].id


def _stream(
    filters: ExportFilter, render: Render, batch_size: int, sessions: sessionmaker[Session] | None
) -> Iterator[str]:
    """Lines for every matching ranking, read `batch_size` at a time in one snapshot."""
    session = (sessions or session_factory())()
    try:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        after = 0
        while True:
            rows = repo.rankings_page(session, filters, after, batch_size)
            if not rows:
                break
            members = review.set_members(session, sorted({r.ranking.set_id for r in rows}))
            for row in rows:
                yield from render(row, members.get(row.ranking.set_id, []))
            after = rows[-1].ranking.id
            session.expunge_all()
    finally:
        session.rollback()
        session.close()


def _ranking_lines(row: RankingRow, members: Sequence[SetMember]) -> Iterator[str]:
    """The one rankings.jsonl line of a ranking."""
    r, p = row.ranking, row.prompt
    record = RankingRecord(
        ranking_id=r.id,
        set_id=r.set_id,
        prompt=ExportedPrompt(
            id=p.id,
            text=p.text,
            messages=_messages(row),
            tags=list(p.tags),
            prompt_set=row.prompt_set,
        ),
        candidates=[
            ExportedCandidate(
                id=m.candidate.id,
                text=m.candidate.text,
                model_version_id=m.candidate.model_version_id,
                model_version=m.model_version,
                hidden=m.candidate.hidden,
            )
            for m in members
        ],
        tiers=r.tiers,
        all_bad=r.all_bad,
        flags=r.flags,
        rationale=r.rationale,
        annotator_id=r.annotator_id,
        display_order=list(r.display_order),
        seconds_spent=r.seconds_spent,
        server_seconds=r.server_seconds,
        created_at=r.created_at,
        source=r.source,
    )
    yield record.model_dump_json() + "\n"


def _pairs(row: RankingRow, members: Sequence[SetMember]) -> Iterator[PreferencePair]:
    """Every strict preference of a ranking, none with a hidden candidate (the prompt as its text)."""
    r = row.ranking
    texts = {m.candidate.id: m.candidate.text for m in members if not m.candidate.hidden}
    for pair in pairs_from_tiers(r.tiers):
        if pair.chosen not in texts or pair.rejected not in texts:
            continue
        yield PreferencePair(
            prompt=row.prompt.text,
            chosen=texts[pair.chosen],
            rejected=texts[pair.rejected],
            margin=pair.margin,
            ranking_id=r.id,
            set_id=r.set_id,
            prompt_id=row.prompt.id,
            chosen_id=pair.chosen,
            rejected_id=pair.rejected,
            annotator_id=r.annotator_id,
        )


def _pair_lines(row: RankingRow, members: Sequence[SetMember]) -> Iterator[str]:
    """The pairs.jsonl lines of a ranking, TRL's standard format."""
    for pair in _pairs(row, members):
        yield pair.model_dump_json() + "\n"


def _messages(row: RankingRow) -> list[Message]:
    """The prompt as TRL's conversational prompt (a plain prompt is one user turn)."""
    prompt = from_stored(row.prompt.text, row.prompt.messages)
    return [Message.model_validate(m) for m in to_messages(prompt)]


def _conversational_pair_lines(row: RankingRow, members: Sequence[SetMember]) -> Iterator[str]:
    """The pairs.jsonl lines of a ranking in TRL's conversational format (the same pairs as above)."""
    prompt = _messages(row)
    for pair in _pairs(row, members):
        yield (
            ConversationalPreferencePair(
                **pair.model_dump(exclude={"prompt", "chosen", "rejected"}),
                prompt=prompt,
                chosen=[Message(role="assistant", content=pair.chosen)],
                rejected=[Message(role="assistant", content=pair.rejected)],
            ).model_dump_json()
            + "\n"
        )
