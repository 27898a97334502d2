"""Queries behind the admin pages (the heavy statistics live in stats_repository.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from app.orm import (
    ACTIVE_ROUND_STATUSES,
    ApiToken,
    Assignment,
    AssignmentStatus,
    Candidate,
    ComparisonSet,
    ComparisonSetItem,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Ranking,
    Round,
    RoundKind,
    SetStatus,
    Skip,
    User,
)


def table_counts(session: Session) -> dict[str, int]:
    """Row counts of the tables the admin overview shows (live rankings only; users who can log in)."""
    queries = {
        "prompt_sets": select(func.count()).select_from(PromptSet),
        "prompts": select(func.count()).select_from(Prompt),
        "sets": select(func.count()).select_from(ComparisonSet),
        "open_sets": select(func.count())
        .select_from(ComparisonSet)
        .where(ComparisonSet.status == SetStatus.open),
        "rankings": select(func.count()).select_from(Ranking).where(Ranking.dropped.is_(False)),
        "users": select(func.count()).select_from(User).where(User.password_hash.is_not(None)),
    }
    return {name: int(session.scalar(query) or 0) for name, query in queries.items()}


def prompt_set_names(session: Session) -> list[str]:
    """Every prompt set name, alphabetically."""
    return list(session.scalars(select(PromptSet.name).order_by(PromptSet.name)))


def db_now(session: Session) -> dt.datetime:
    """The database's clock, so day boundaries and "last 7 days" agree with the stored timestamps."""
    return session.execute(select(func.now())).scalar_one()


# --- overview -------------------------------------------------------------------------------------------


def rankings_per_day(session: Session, since: dt.date) -> list[tuple[dt.date, int]]:
    """Live rankings per UTC day from `since` on (days without rankings are absent)."""
    day = func.date(func.timezone("UTC", Ranking.created_at))
    stmt = (
        select(day, func.count()).where(Ranking.dropped.is_(False), day >= since).group_by(day).order_by(day)
    )
    return [(d, int(n)) for d, n in session.execute(stmt)]


def active_annotators(session: Session, since: dt.datetime) -> int:
    """Distinct annotators with a live ranking since a moment."""
    stmt = select(func.count(func.distinct(Ranking.annotator_id))).where(
        Ranking.dropped.is_(False), Ranking.created_at >= since
    )
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True)
class OpenSets:
    sets: int  # open sets that still want rankings
    rankings_wanted: int  # sum over them of overlap - submitted
    paused: int  # of those, in paused prompt sets (not handed out)


def open_sets(session: Session) -> OpenSets:
    """Open comparison sets that still need rankings, and how many rankings they want in all."""
    submitted = (
        select(Assignment.set_id, func.count().label("done"))
        .where(Assignment.status == AssignmentStatus.submitted)
        .group_by(Assignment.set_id)
        .subquery()
    )
    wanted = ComparisonSet.overlap - func.coalesce(submitted.c.done, 0)
    stmt = (
        select(
            func.count(),
            func.coalesce(func.sum(wanted), 0),
            func.count().filter(PromptSet.paused.is_(True)),
        )
        .select_from(ComparisonSet)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
        .outerjoin(submitted, submitted.c.set_id == ComparisonSet.id)
        .where(ComparisonSet.status == SetStatus.open, wanted > 0)
    )
    sets, rankings, paused = session.execute(stmt).one()
    return OpenSets(int(sets), int(rankings), int(paused))


def active_policy(session: Session) -> ModelVersion | None:
    """The policy currently serving candidates."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.kind == ModelKind.policy, ModelVersion.status == ModelStatus.active)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    ).first()


def newest_reward_model(session: Session) -> ModelVersion | None:
    """The reward model the next round builds on: the newest published one."""
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.kind == ModelKind.reward, ModelVersion.status != ModelStatus.failed)
        .order_by(ModelVersion.id.desc())
        .limit(1)
    ).first()


def current_round(session: Session) -> Round | None:
    """The oldest queued or running round (training first)."""
    return session.scalars(
        select(Round)
        .where(Round.status.in_(ACTIVE_ROUND_STATUSES))
        .order_by((Round.kind == RoundKind.train).desc(), Round.id)
        .limit(1)
    ).first()


def latest_round(session: Session) -> Round | None:
    """The newest round of any status."""
    return session.scalars(select(Round).order_by(Round.id.desc()).limit(1)).first()


def rankings_since_last_training_round(session: Session) -> int:
    """Live rankings stored after the newest training round was started (what auto rounds count)."""
    last = session.scalar(select(func.max(Round.created_at)).where(Round.kind == RoundKind.train))
    stmt = select(func.count()).select_from(Ranking).where(Ranking.dropped.is_(False))
    if last is not None:
        stmt = stmt.where(Ranking.created_at > last)
    return int(session.scalar(stmt) or 0)


# --- rounds and model versions ----------------------------------------------------------------------


def count_rounds(session: Session) -> int:
    """How many rounds there are."""
    return int(session.scalar(select(func.count()).select_from(Round)) or 0)


def rounds_page(session: Session, limit: int, offset: int) -> Sequence[Round]:
    """Rounds, newest first."""
    return session.scalars(select(Round).order_by(Round.id.desc()).limit(limit).offset(offset)).all()


def get_round(session: Session, round_id: int) -> Round | None:
    """One round by id."""
    return session.get(Round, round_id)


def all_model_versions(session: Session) -> Sequence[ModelVersion]:
    """Every model version, oldest first (a handful per round: the lineage tree shows them all)."""
    return session.scalars(select(ModelVersion).order_by(ModelVersion.id)).all()


def model_versions_by_id(session: Session, ids: Sequence[int]) -> dict[int, ModelVersion]:
    """These model versions, keyed by id."""
    if not ids:
        return {}
    rows = session.scalars(select(ModelVersion).where(ModelVersion.id.in_(list(ids))))
    return {v.id: v for v in rows}


def rounds_by_policy(session: Session) -> dict[int, Round]:
    """Policy version id -> the round that published it."""
    rows = session.scalars(select(Round).where(Round.policy_version_id.is_not(None)).order_by(Round.id))
    return {r.policy_version_id: r for r in rows if r.policy_version_id is not None}


def candidate_counts_by_version(session: Session) -> dict[int, int]:
    """Model version id -> how many candidates it produced."""
    rows = session.execute(
        select(Candidate.model_version_id, func.count()).group_by(Candidate.model_version_id)
    )
    return {int(v): int(n) for v, n in rows}


def _shared_prompts(version_a: int, version_b: int) -> Any:
    """Prompts with candidates from both versions."""
    has_a = select(Candidate.id).where(
        Candidate.prompt_id == Prompt.id, Candidate.model_version_id == version_a
    )
    has_b = select(Candidate.id).where(
        Candidate.prompt_id == Prompt.id, Candidate.model_version_id == version_b
    )
    return and_(has_a.exists(), has_b.exists())


def count_shared_prompts(session: Session, version_a: int, version_b: int) -> int:
    """How many prompts both versions answered."""
    stmt = select(func.count()).select_from(Prompt).where(_shared_prompts(version_a, version_b))
    return int(session.scalar(stmt) or 0)


def shared_prompts(
    session: Session, version_a: int, version_b: int, limit: int, offset: int
) -> Sequence[Prompt]:
    """Prompts both versions answered, newest first."""
    stmt = (
        select(Prompt)
        .where(_shared_prompts(version_a, version_b))
        .order_by(Prompt.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return session.scalars(stmt).all()


def candidates_of(
    session: Session, prompt_ids: Sequence[int], version_ids: Sequence[int]
) -> Sequence[Candidate]:
    """The candidates of these prompts by these versions, by id."""
    if not prompt_ids:
        return []
    stmt = (
        select(Candidate)
        .where(Candidate.prompt_id.in_(list(prompt_ids)), Candidate.model_version_id.in_(list(version_ids)))
        .order_by(Candidate.id)
    )
    return session.scalars(stmt).all()


# --- annotators -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorRow:
    id: int
    username: str
    role: str
    active: bool
    rankings: int
    dropped: int
    skips: int
    flagged: int
    median_seconds: float | None
    last_ranked_at: dt.datetime | None


def _annotator_stats() -> Any:
    """Per user: live and dropped rankings, skips, flags raised, median seconds, last ranking."""
    ranked = (
        select(
            Ranking.annotator_id.label("annotator_id"),
            func.count().filter(Ranking.dropped.is_(False)).label("rankings"),
            func.count().filter(Ranking.dropped.is_(True)).label("dropped"),
            func.count()
            .filter(Ranking.dropped.is_(False), Ranking.flags != text("'{}'::jsonb"))
            .label("flagged"),
            func.percentile_cont(0.5)
            .within_group(Ranking.seconds_spent)
            .filter(Ranking.dropped.is_(False))
            .label("median_seconds"),
            func.max(Ranking.created_at).label("last_ranked_at"),
        )
        .group_by(Ranking.annotator_id)
        .subquery()
    )
    skipped = select(Skip.annotator_id, func.count().label("skips")).group_by(Skip.annotator_id).subquery()
    return (
        select(
            User.id,
            User.username,
            User.role,
            User.active,
            func.coalesce(ranked.c.rankings, 0).label("rankings"),
            func.coalesce(ranked.c.dropped, 0).label("dropped"),
            func.coalesce(skipped.c.skips, 0).label("skips"),
            func.coalesce(ranked.c.flagged, 0).label("flagged"),
            ranked.c.median_seconds,
            ranked.c.last_ranked_at,
        )
        .outerjoin(ranked, ranked.c.annotator_id == User.id)
        .outerjoin(skipped, skipped.c.annotator_id == User.id)
        # Annotators, and anyone else who ranked or skipped (admins may rank too).
        .where(
            or_(
                User.role == "annotator",
                ranked.c.annotator_id.is_not(None),
                skipped.c.annotator_id.is_not(None),
            )
        )
    )


def _annotator_row(row: Any) -> AnnotatorRow:
    uid, name, role, active, rankings, dropped, skips, flagged, median, last = row
    return AnnotatorRow(
        id=int(uid),
        username=str(name),
        role=str(getattr(role, "value", role)),
        active=bool(active),
        rankings=int(rankings),
        dropped=int(dropped),
        skips=int(skips),
        flagged=int(flagged),
        median_seconds=float(median) if median is not None else None,
        last_ranked_at=last,
    )


def count_annotators(session: Session) -> int:
    """How many people the annotators page lists."""
    sub = _annotator_stats().subquery()
    return int(session.scalar(select(func.count()).select_from(sub)) or 0)


def annotator_rows(session: Session, limit: int, offset: int) -> list[AnnotatorRow]:
    """Per annotator: rankings, drops, skips, flags raised, median seconds per ranking; busiest first."""
    sub = _annotator_stats().subquery()
    ordered = select(sub).order_by(sub.c.rankings.desc(), sub.c.id).limit(limit).offset(offset)
    return [_annotator_row(r) for r in session.execute(ordered)]


def annotator_row(session: Session, user_id: int) -> AnnotatorRow | None:
    """One annotator's row of the annotators page."""
    row = session.execute(_annotator_stats().where(User.id == user_id)).first()
    return _annotator_row(row) if row is not None else None


def usernames(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """User id -> username."""
    if not ids:
        return {}
    return {
        int(i): str(n)
        for i, n in session.execute(select(User.id, User.username).where(User.id.in_(list(ids))))
    }


def timing_histogram(session: Session, annotator_id: int, edges: Sequence[float]) -> list[tuple[int, int]]:
    """(bucket, count) of an annotator's live rankings by seconds; bucket i is [edges[i-1], edges[i])."""
    bucket = func.width_bucket(
        Ranking.seconds_spent, text("CAST(:edges AS float8[])").bindparams(edges=list(edges))
    )
    stmt = (
        select(bucket, func.count())
        .where(
            Ranking.annotator_id == annotator_id,
            Ranking.dropped.is_(False),
            Ranking.seconds_spent.is_not(None),
        )
        .group_by(bucket)
        .order_by(bucket)
    )
    return [(int(b), int(n)) for b, n in session.execute(stmt)]


# --- rankings browser and flags ---------------------------------------------------------------------


@dataclass(frozen=True)
class RankingFilter:
    annotator_id: int | None = None
    prompt_set_id: int | None = None
    flag: str | None = None  # "any", "none", or a flag value
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    status: str = "live"  # live, dropped, all


def _ranking_conditions(f: RankingFilter) -> list[Any]:
    conditions: list[Any] = []
    if f.annotator_id is not None:
        conditions.append(Ranking.annotator_id == f.annotator_id)
    if f.prompt_set_id is not None:
        conditions.append(Prompt.prompt_set_id == f.prompt_set_id)
    if f.flag == "any":
        conditions.append(Ranking.flags != text("'{}'::jsonb"))
    elif f.flag == "none":
        conditions.append(Ranking.flags == text("'{}'::jsonb"))
    elif f.flag:
        conditions.append(
            func.jsonb_path_exists(
                Ranking.flags,
                text("'$.*[*] ? (@ == $flag)'::jsonpath"),
                func.jsonb_build_object("flag", f.flag),
            )
        )
    if f.since is not None:
        conditions.append(Ranking.created_at >= f.since)
    if f.until is not None:
        conditions.append(Ranking.created_at < f.until)
    if f.status == "live":
        conditions.append(Ranking.dropped.is_(False))
    elif f.status == "dropped":
        conditions.append(Ranking.dropped.is_(True))
    return conditions


@dataclass(frozen=True)
class RankingRow:
    id: int
    set_id: int
    annotator_id: int
    annotator: str
    prompt_set: str
    prompt: str
    tiers: list[list[int]]
    all_bad: bool
    flags: dict[str, list[str]]
    rationale: str
    seconds_spent: float | None
    source: str
    dropped: bool
    created_at: dt.datetime


def _ranking_rows_stmt() -> Any:
    return (
        select(
            Ranking.id,
            Ranking.set_id,
            Ranking.annotator_id,
            User.username,
            PromptSet.name,
            Prompt.text,
            Ranking.tiers,
            Ranking.all_bad,
            Ranking.flags,
            Ranking.rationale,
            Ranking.seconds_spent,
            Ranking.source,
            Ranking.dropped,
            Ranking.created_at,
        )
        .join(User, User.id == Ranking.annotator_id)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .join(PromptSet, PromptSet.id == Prompt.prompt_set_id)
    )


def count_rankings(session: Session, f: RankingFilter) -> int:
    """How many rankings match the filter."""
    stmt = (
        select(func.count())
        .select_from(Ranking)
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .join(Prompt, Prompt.id == ComparisonSet.prompt_id)
        .where(*_ranking_conditions(f))
    )
    return int(session.scalar(stmt) or 0)


def rankings(session: Session, f: RankingFilter, limit: int, offset: int) -> list[RankingRow]:
    """Rankings matching the filter, newest first, with annotator, prompt set and prompt."""
    stmt = (
        _ranking_rows_stmt()
        .where(*_ranking_conditions(f))
        .order_by(Ranking.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [RankingRow(*row) for row in session.execute(stmt)]


def candidate_versions(
    session: Session, candidate_ids: Sequence[int]
) -> dict[int, tuple[int, str, bool, str]]:
    """Candidate id -> (version id, version name, hidden, text)."""
    if not candidate_ids:
        return {}
    stmt = (
        select(Candidate.id, ModelVersion.id, ModelVersion.name, Candidate.hidden, Candidate.text)
        .join(ModelVersion, ModelVersion.id == Candidate.model_version_id)
        .where(Candidate.id.in_(list(candidate_ids)))
    )
    return {int(c): (int(v), str(n), bool(h), str(t)) for c, v, n, h, t in session.execute(stmt)}


@dataclass(frozen=True)
class FlaggedCandidate:
    candidate_id: int
    text: str
    version: str
    prompt: str
    flags: list[str]
    ranking_ids: list[int]
    annotators: list[str]
    last_flagged_at: dt.datetime


# Each (live ranking, flagged visible candidate, flag value); :flag NULL means any flag. Spliced into the
# queries below as {rows}: a constant, every value is a bound parameter.
_FLAG_ROWS = """
    SELECT r.id AS ranking_id, r.created_at, u.username, c.id AS candidate_id, f.flag
    FROM rankings r
    CROSS JOIN LATERAL jsonb_each(r.flags) AS e(candidate, flags)
    CROSS JOIN LATERAL jsonb_array_elements_text(e.flags) AS f(flag)
    JOIN candidates c ON c.id = e.candidate::int
    JOIN users u ON u.id = r.annotator_id
    WHERE NOT r.dropped AND r.flags <> '{}'::jsonb AND NOT c.hidden
      AND (CAST(:flag AS text) IS NULL OR f.flag = CAST(:flag AS text))
"""

_COUNT_FLAGGED = text(
    "SELECT count(DISTINCT candidate_id) FROM ({rows}) flagged".replace("{rows}", _FLAG_ROWS)
)

_FLAGGED_PAGE = text(
    """
    SELECT c.id, c.text, mv.name, p.text, fr.flags, fr.rankings, fr.annotators, fr.last_at
    FROM (
        SELECT candidate_id, array_agg(DISTINCT flag ORDER BY flag) AS flags,
               array_agg(DISTINCT ranking_id ORDER BY ranking_id) AS rankings,
               array_agg(DISTINCT username ORDER BY username) AS annotators, max(created_at) AS last_at
        FROM ({rows}) flagged
        GROUP BY candidate_id
        ORDER BY max(created_at) DESC, candidate_id DESC
        LIMIT :limit OFFSET :offset
    ) fr
    JOIN candidates c ON c.id = fr.candidate_id
    JOIN model_versions mv ON mv.id = c.model_version_id
    JOIN prompts p ON p.id = c.prompt_id
    ORDER BY fr.last_at DESC, c.id DESC
    """.replace("{rows}", _FLAG_ROWS)
)


def count_flagged_candidates(session: Session, flag: str | None) -> int:
    """Visible candidates flagged in a live ranking (optionally with one flag value)."""
    return int(session.execute(_COUNT_FLAGGED, {"flag": flag}).scalar_one())


def flagged_candidates(session: Session, flag: str | None, limit: int, offset: int) -> list[FlaggedCandidate]:
    """The moderation queue: visible flagged candidates, most recently flagged first."""
    rows = session.execute(_FLAGGED_PAGE, {"flag": flag, "limit": limit, "offset": offset})
    return [
        FlaggedCandidate(int(cid), str(t), str(v), str(p), list(fl), [int(i) for i in ids], list(us), last)
        for cid, t, v, p, fl, ids, us, last in rows
    ]


def flags_raised_by(session: Session, annotator_id: int, limit: int) -> list[RankingRow]:
    """An annotator's newest rankings that flag a candidate."""
    stmt = (
        _ranking_rows_stmt()
        .where(Ranking.annotator_id == annotator_id, Ranking.flags != text("'{}'::jsonb"))
        .order_by(Ranking.id.desc())
        .limit(limit)
    )
    return [RankingRow(*row) for row in session.execute(stmt)]


def get_candidate(session: Session, candidate_id: int) -> Candidate | None:
    """One candidate by id."""
    return session.get(Candidate, candidate_id)


def get_ranking(session: Session, ranking_id: int) -> Ranking | None:
    """One ranking by id."""
    return session.get(Ranking, ranking_id)


# --- prompt sets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSetRow:
    id: int
    name: str
    description: str
    priority: int
    paused: bool
    prompts: int
    tags: list[str]
    open_sets: int
    sets: int
    rankings: int


def count_prompt_sets(session: Session) -> int:
    """How many prompt sets there are."""
    return int(session.scalar(select(func.count()).select_from(PromptSet)) or 0)


def prompt_set_rows(session: Session, limit: int, offset: int) -> list[PromptSetRow]:
    """Prompt sets by priority then name, with prompt, set and ranking counts and their most common tags."""
    page = (
        select(PromptSet.id)
        .order_by(PromptSet.priority.desc(), PromptSet.name)
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    prompts = (
        select(Prompt.prompt_set_id, func.count().label("n"))
        .where(Prompt.prompt_set_id.in_(select(page.c.id)))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    sets = (
        select(
            Prompt.prompt_set_id,
            func.count().label("n"),
            func.count().filter(ComparisonSet.status == SetStatus.open).label("open"),
        )
        .join(ComparisonSet, ComparisonSet.prompt_id == Prompt.id)
        .where(Prompt.prompt_set_id.in_(select(page.c.id)))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    ranked = (
        select(Prompt.prompt_set_id, func.count().label("n"))
        .join(ComparisonSet, ComparisonSet.prompt_id == Prompt.id)
        .join(Ranking, Ranking.set_id == ComparisonSet.id)
        .where(Prompt.prompt_set_id.in_(select(page.c.id)), Ranking.dropped.is_(False))
        .group_by(Prompt.prompt_set_id)
        .subquery()
    )
    stmt = (
        select(
            PromptSet,
            func.coalesce(prompts.c.n, 0),
            func.coalesce(sets.c.open, 0),
            func.coalesce(sets.c.n, 0),
            func.coalesce(ranked.c.n, 0),
        )
        .join(page, page.c.id == PromptSet.id)
        .outerjoin(prompts, prompts.c.prompt_set_id == PromptSet.id)
        .outerjoin(sets, sets.c.prompt_set_id == PromptSet.id)
        .outerjoin(ranked, ranked.c.prompt_set_id == PromptSet.id)
        .order_by(PromptSet.priority.desc(), PromptSet.name)
    )
    rows = session.execute(stmt).all()
    tags = top_tags(session, [ps.id for ps, *_ in rows], 6)
    return [
        PromptSetRow(
            ps.id,
            ps.name,
            ps.description,
            ps.priority,
            ps.paused,
            int(n),
            tags.get(ps.id, []),
            int(o),
            int(s),
            int(r),
        )
        for ps, n, o, s, r in rows
    ]


def top_tags(session: Session, prompt_set_ids: Sequence[int], per_set: int) -> dict[int, list[str]]:
    """Prompt set id -> its most used tags (most prompts first)."""
    if not prompt_set_ids:
        return {}
    tag = func.unnest(Prompt.tags).label("tag")
    tagged = (
        select(Prompt.prompt_set_id, tag).where(Prompt.prompt_set_id.in_(list(prompt_set_ids))).subquery()
    )
    counted = (
        select(
            tagged.c.prompt_set_id,
            tagged.c.tag,
            func.row_number()
            .over(partition_by=tagged.c.prompt_set_id, order_by=(func.count().desc(), tagged.c.tag))
            .label("rank"),
        )
        .group_by(tagged.c.prompt_set_id, tagged.c.tag)
        .subquery()
    )
    stmt = (
        select(counted.c.prompt_set_id, counted.c.tag)
        .where(counted.c.rank <= per_set)
        .order_by(counted.c.prompt_set_id, counted.c.rank)
    )
    out: dict[int, list[str]] = {}
    for set_id, name in session.execute(stmt):
        out.setdefault(int(set_id), []).append(str(name))
    return out


def all_prompt_sets(session: Session) -> list[tuple[int, str]]:
    """(id, name) of every prompt set, by name."""
    return [
        (int(i), str(n))
        for i, n in session.execute(select(PromptSet.id, PromptSet.name).order_by(PromptSet.name))
    ]


def get_prompt_set(session: Session, prompt_set_id: int) -> PromptSet | None:
    """One prompt set by id."""
    return session.get(PromptSet, prompt_set_id)


# --- users ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserRow:
    id: int
    username: str
    role: str
    active: bool
    can_log_in: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None
    tokens: int  # unrevoked API tokens


def count_users(session: Session) -> int:
    """How many users there are."""
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def user_rows(session: Session, limit: int, offset: int) -> list[UserRow]:
    """Users by name, with their number of live API tokens."""
    tokens = (
        select(ApiToken.user_id, func.count().label("n"))
        .where(ApiToken.revoked_at.is_(None))
        .group_by(ApiToken.user_id)
        .subquery()
    )
    stmt = (
        select(User, func.coalesce(tokens.c.n, 0))
        .outerjoin(tokens, tokens.c.user_id == User.id)
        .order_by(User.username)
        .limit(limit)
        .offset(offset)
    )
    return [
        UserRow(
            u.id,
            u.username,
            u.role.value,
            u.active,
            u.password_hash is not None,
            u.created_at,
            u.last_login_at,
            int(n),
        )
        for u, n in session.execute(stmt)
    ]


def annotator_options(session: Session) -> list[tuple[int, str]]:
    """(id, username) of everyone who ranked something, for the rankings filter."""
    ranked = select(Ranking.annotator_id).distinct().subquery()
    stmt = (
        select(User.id, User.username).join(ranked, ranked.c.annotator_id == User.id).order_by(User.username)
    )
    return [(int(i), str(n)) for i, n in session.execute(stmt)]


def set_items(session: Session, set_ids: Sequence[int]) -> dict[int, list[int]]:
    """Set id -> its candidate ids in set order."""
    if not set_ids:
        return {}
    out: dict[int, list[int]] = {}
    stmt = (
        select(ComparisonSetItem.set_id, ComparisonSetItem.candidate_id)
        .where(ComparisonSetItem.set_id.in_(list(set_ids)))
        .order_by(ComparisonSetItem.set_id, ComparisonSetItem.position)
    )
    for set_id, cid in session.execute(stmt):
        out.setdefault(int(set_id), []).append(int(cid))
    return out
