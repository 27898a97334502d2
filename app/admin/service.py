"""What the admin pages show and the moderation and account actions they offer. Flushes, never commits."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.admin import charts, stats
from app.admin import repository as repo
from app.admin import stats_repository as stats_repo
from app.admin.paging import Pager
from app.admin.schemas import FLAG_FILTERS, STATUS_FILTERS, RankingQuery, parse_day, parse_int
from app.auth import service as auth
from app.config import Settings
from app.errors import Invalid, NotFound
from app.orm import ApiToken, ModelVersion, Role, Round, User
from app.quality.stats import RankingRecord, consensus_tiers, mean_tier_consensus

PER_PAGE = 50
OVERVIEW_DAYS = 30
MAX_PRIORITY = 1_000_000
# Timing histogram bucket edges in seconds: fine where most tasks fall, coarse in the long tail.
TIMING_EDGES = (0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)


@dataclass(frozen=True)
class Overview:
    prompt_sets: int
    prompts: int
    sets: int
    open_sets: int
    rankings: int
    users: int


def overview(session: Session) -> Overview:
    """Counts of prompt sets, prompts, comparison sets, live rankings and users."""
    return Overview(**repo.table_counts(session))


def prompt_set_names(session: Session) -> list[str]:
    """The prompt sets an export can be limited to."""
    return repo.prompt_set_names(session)


# --- overview ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    counts: Overview
    per_day: charts.BarChart
    per_day_total: int
    days: int
    active_annotators: int  # with a live ranking in the last 7 days
    open_sets: repo.OpenSets
    active_policy: ModelVersion | None
    reward_model: ModelVersion | None
    current_round: Round | None
    latest_round: Round | None
    auto_round_threshold: int
    rankings_since_last_round: int


def _per_day(session: Session, days: int) -> list[tuple[dt.date, int]]:
    """Live rankings per UTC day for the last `days` days, zeros included."""
    today = repo.db_now(session).astimezone(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    counts = dict(repo.rankings_per_day(session, start))
    return [(start + dt.timedelta(days=i), counts.get(start + dt.timedelta(days=i), 0)) for i in range(days)]


def dashboard(session: Session, settings: Settings) -> Dashboard:
    """The overview: activity, open work, the models in use and the round in progress."""
    per_day = _per_day(session, OVERVIEW_DAYS)
    now = repo.db_now(session)
    return Dashboard(
        counts=overview(session),
        per_day=charts.bar_chart(
            [d.strftime("%b %d") for d, _ in per_day],
            [float(n) for _, n in per_day],
            title="Rankings per day (UTC)",
            label_every=5,
        ),
        per_day_total=sum(n for _, n in per_day),
        days=OVERVIEW_DAYS,
        active_annotators=repo.active_annotators(session, now - dt.timedelta(days=7)),
        open_sets=repo.open_sets(session),
        active_policy=repo.active_policy(session),
        reward_model=repo.newest_reward_model(session),
        current_round=repo.current_round(session),
        latest_round=repo.latest_round(session),
        auto_round_threshold=settings.auto_round_min_rankings,
        rankings_since_last_round=repo.rankings_since_last_training_round(session),
    )


def rankings_per_day_table(session: Session, days: int = OVERVIEW_DAYS) -> charts.Table:
    """The rankings-per-day chart's data."""
    if not 1 <= days <= 3660:
        raise Invalid("days must be between 1 and 3660")
    return charts.Table(
        "rankings-per-day", ("day", "rankings"), [(d.isoformat(), n) for d, n in _per_day(session, days)]
    )


# --- leaderboard -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderRow:
    version: int
    name: str
    kind: str
    status: str
    rating: float
    low: float
    high: float
    comparisons: int
    component: int


@dataclass(frozen=True)
class Leaderboard:
    rows: list[LeaderRow]
    chart: charts.IntervalChart
    rankings: int
    rounds: int
    components: int
    computed_at: dt.datetime


def leaderboard(session: Session) -> Leaderboard:
    """Every version's Bradley-Terry rating from the blind human rankings, with 95% bootstrap intervals."""
    ratings = stats.leaderboard_ratings(session)
    versions = repo.model_versions_by_id(session, [r.version for r in ratings.ratings])
    rows = [
        LeaderRow(
            version=r.version,
            name=versions[r.version].name if r.version in versions else f"#{r.version}",
            kind=versions[r.version].kind.value if r.version in versions else "?",
            status=versions[r.version].status.value if r.version in versions else "?",
            rating=r.rating,
            low=r.low,
            high=r.high,
            comparisons=r.comparisons,
            component=r.component,
        )
        for r in ratings.ratings
    ]
    chart = charts.interval_chart(
        [(row.name, row.rating, row.low, row.high) for row in rows],
        title="Bradley-Terry rating with 95% bootstrap interval",
        reference=stats.BASE_RATING,
        reference_label="1000 = average",
        highlight=[row.name for row in rows if row.status == "active" and row.kind == "policy"],
    )
    return Leaderboard(
        rows=rows,
        chart=chart,
        rankings=ratings.rankings,
        rounds=ratings.rounds,
        components=len({r.component for r in rows}),
        computed_at=dt.datetime.fromtimestamp(ratings.computed_at, dt.UTC),
    )


def leaderboard_table(session: Session) -> charts.Table:
    """The leaderboard chart's data."""
    board = leaderboard(session)
    return charts.Table(
        "leaderboard",
        (
            "rank",
            "version_id",
            "name",
            "kind",
            "status",
            "rating",
            "ci_low",
            "ci_high",
            "comparisons",
            "component",
        ),
        [
            (
                i + 1,
                r.version,
                r.name,
                r.kind,
                r.status,
                round(r.rating, 1),
                round(r.low, 1),
                round(r.high, 1),
                r.comparisons,
                r.component,
            )
            for i, r in enumerate(board.rows)
        ],
    )


# --- annotators --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnotatorView:
    row: repo.AnnotatorRow
    skip_rate: float
    agreement: stats.Agreement | None
    consensus_rate: float
    consensus_sets: int


@dataclass(frozen=True)
class AnnotatorsPage:
    annotators: list[AnnotatorView]
    pager: Pager
    overall: stats.Agreement
    consensus_window: int
    as_of: dt.datetime | None


def _skip_rate(row: repo.AnnotatorRow) -> float:
    done = row.rankings + row.dropped + row.skips
    return row.skips / done if done else math.nan


def _views(session: Session, rows: Sequence[repo.AnnotatorRow]) -> list[AnnotatorView]:
    agreement = stats.agreement_summary(session)
    window = stats.window_stats(session)
    views = []
    for row in rows:
        consensus = window.consensus.get(row.id)
        views.append(
            AnnotatorView(
                row=row,
                skip_rate=_skip_rate(row),
                agreement=agreement.by_annotator.get(row.id),
                consensus_rate=consensus.rate if consensus else math.nan,
                consensus_sets=consensus.sets if consensus else 0,
            )
        )
    return views


def annotators_page(session: Session, page: int) -> AnnotatorsPage:
    """Per annotator: output, speed, skips, and agreement with the others and with the consensus."""
    pager = Pager.of(page, PER_PAGE, repo.count_annotators(session))
    rows = repo.annotator_rows(session, pager.per_page, pager.offset)
    return AnnotatorsPage(
        annotators=_views(session, rows),
        pager=pager,
        overall=stats.agreement_summary(session).overall,
        consensus_window=stats.window_stats(session).consensus_sets,
        as_of=stats.computed_at("agreement", "window"),
    )


def annotators_table(session: Session) -> charts.Table:
    """Every annotator's figures (the annotators page as data)."""
    rows = repo.annotator_rows(session, 100_000, 0)
    return charts.Table(
        "annotators",
        (
            "annotator_id",
            "username",
            "rankings",
            "dropped",
            "skips",
            "skip_rate",
            "median_seconds",
            "pairwise_agreement",
            "compared_pairs",
            "mean_kendall_tau_b",
            "consensus_agreement",
            "consensus_sets",
        ),
        [
            (
                v.row.id,
                v.row.username,
                v.row.rankings,
                v.row.dropped,
                v.row.skips,
                _round(v.skip_rate),
                _round(v.row.median_seconds, 1),
                _round(v.agreement.rate) if v.agreement else None,
                v.agreement.compared if v.agreement else 0,
                _round(v.agreement.mean_tau_b) if v.agreement else None,
                _round(v.consensus_rate),
                v.consensus_sets,
            )
            for v in _views(session, rows)
        ],
    )


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


@dataclass(frozen=True)
class PeerAgreement:
    annotator_id: int
    username: str
    agreement: stats.Agreement


@dataclass(frozen=True)
class TierLabel:
    label: str  # A, B, ... by position in the set
    version: str
    hidden: bool


@dataclass(frozen=True)
class RankingView:
    row: repo.RankingRow
    tiers: list[list[TierLabel]]
    flags: list[tuple[str, str]]  # (candidate label, flag)


@dataclass(frozen=True)
class AnnotatorDetail:
    view: AnnotatorView
    peers: list[PeerAgreement]
    consensus: Any
    histogram: charts.BarChart
    recent: list[RankingView]
    pager: Pager
    flags: list[RankingView]


def _user(session: Session, user_id: int) -> repo.AnnotatorRow:
    row = repo.annotator_row(session, user_id)
    if row is None:
        raise NotFound(f"no annotator {user_id}")
    return row


def _histogram(session: Session, user_id: int) -> list[tuple[str, int]]:
    """(bucket label, rankings) over TIMING_EDGES; the last bucket is open-ended."""
    counts = dict(repo.timing_histogram(session, user_id, [float(e) for e in TIMING_EDGES]))
    labels = [f"{a}-{b}s" for a, b in itertools.pairwise(TIMING_EDGES)]
    labels.append(f"≥{TIMING_EDGES[-1]}s")
    return [(label, counts.get(i + 1, 0)) for i, label in enumerate(labels)]


def annotator_timing_table(session: Session, user_id: int) -> charts.Table:
    """An annotator's timing histogram as data."""
    _user(session, user_id)
    return charts.Table(
        f"annotator-{user_id}-timing",
        ("seconds", "rankings"),
        [(label, n) for label, n in _histogram(session, user_id)],
    )


def ranking_views(session: Session, rows: Sequence[repo.RankingRow]) -> list[RankingView]:
    """Tiers and flags of rankings with candidates named by their letter in the set and their version."""
    items = repo.set_items(session, sorted({r.set_id for r in rows}))
    ids = sorted(
        {c for r in rows for tier in r.tiers for c in tier} | {c for cs in items.values() for c in cs}
    )
    versions = repo.candidate_versions(session, ids)
    views = []
    for r in rows:
        letter = {c: _letter(i) for i, c in enumerate(items.get(r.set_id, []))}

        def label(c: int, letter: dict[int, str] = letter) -> TierLabel:
            _, name, hidden, _text = versions.get(c, (0, "?", False, ""))
            return TierLabel(letter.get(c, f"#{c}"), name, hidden)

        tiers = [[label(int(c)) for c in tier] for tier in r.tiers]
        flags = [
            (letter.get(int(c), f"#{c}"), str(value))
            for c, values in sorted(r.flags.items())
            if str(c).isdigit()
            for value in values
        ]
        views.append(RankingView(r, tiers, flags))
    return views


def _letter(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"#{i + 1}"


def annotator_detail(session: Session, user_id: int, page: int) -> AnnotatorDetail:
    """One annotator: figures, agreement with each peer, timing histogram, recent rankings and flags."""
    row = _user(session, user_id)
    summary = stats.agreement_summary(session)
    names = repo.usernames(
        session, [b if a == user_id else a for a, b in summary.by_pair if user_id in (a, b)]
    )
    peers = sorted(
        (
            PeerAgreement(other, names.get(other, f"#{other}"), agreement)
            for (a, b), agreement in summary.by_pair.items()
            if user_id in (a, b)
            for other in [b if a == user_id else a]
        ),
        key=lambda p: (-p.agreement.compared, p.username),
    )
    histogram = _histogram(session, user_id)
    filt = repo.RankingFilter(annotator_id=user_id, status="all")
    pager = Pager.of(page, 20, repo.count_rankings(session, filt))
    recent = repo.rankings(session, filt, pager.per_page, pager.offset)
    return AnnotatorDetail(
        view=_views(session, [row])[0],
        peers=peers,
        consensus=stats.annotator_consensus(session, user_id),
        histogram=charts.bar_chart(
            [label for label, _ in histogram],
            [float(n) for _, n in histogram],
            title="Seconds per ranking",
            width=560,
            label_every=2,
        ),
        recent=ranking_views(session, recent),
        pager=pager,
        flags=ranking_views(session, repo.flags_raised_by(session, user_id, 20)),
    )


# --- data: prompt sets, rankings, flags ----------------------------------------------------------


@dataclass(frozen=True)
class PromptSetsPage:
    prompt_sets: list[repo.PromptSetRow]
    pager: Pager


def prompt_sets_page(session: Session, page: int) -> PromptSetsPage:
    """Prompt sets with their size, tags, priority, pause state and progress."""
    pager = Pager.of(page, PER_PAGE, repo.count_prompt_sets(session))
    return PromptSetsPage(repo.prompt_set_rows(session, pager.per_page, pager.offset), pager)


def set_prompt_set_priority(session: Session, prompt_set_id: int, priority: int) -> None:
    """Higher-priority prompt sets are handed out first."""
    if abs(priority) > MAX_PRIORITY:
        raise Invalid(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    ps = repo.get_prompt_set(session, prompt_set_id)
    if ps is None:
        raise NotFound(f"no prompt set {prompt_set_id}")
    ps.priority = priority
    session.flush()


def set_prompt_set_paused(session: Session, prompt_set_id: int, paused: bool) -> None:
    """A paused prompt set hands out no tasks; its sets keep their rankings."""
    ps = repo.get_prompt_set(session, prompt_set_id)
    if ps is None:
        raise NotFound(f"no prompt set {prompt_set_id}")
    ps.paused = paused
    session.flush()


@dataclass(frozen=True)
class RankingsPage:
    rankings: list[RankingView]
    pager: Pager
    query: RankingQuery
    annotators: list[tuple[int, str]]
    prompt_sets: list[tuple[int, str]]
    flag_filters: tuple[str, ...] = FLAG_FILTERS
    status_filters: tuple[str, ...] = STATUS_FILTERS


def ranking_filter(query: RankingQuery) -> repo.RankingFilter:
    """The query string's filters, checked (422 naming the bad one)."""
    if query.flag not in FLAG_FILTERS:
        raise Invalid(f"flag must be one of {', '.join(f for f in FLAG_FILTERS if f)}")
    if query.status not in STATUS_FILTERS:
        raise Invalid(f"status must be one of {', '.join(STATUS_FILTERS)}")
    until = parse_day(query.until, "until")
    return repo.RankingFilter(
        annotator_id=parse_int(query.annotator, "annotator"),
        prompt_set_id=parse_int(query.prompt_set, "prompt_set"),
        flag=query.flag or None,
        since=parse_day(query.since, "since"),
        # "until" names a day: rankings of that whole day are included.
        until=until + dt.timedelta(days=1) if until is not None else None,
        status=query.status,
    )


def rankings_page(session: Session, query: RankingQuery) -> RankingsPage:
    """Rankings filtered by annotator, prompt set, flag, date and drop state; newest first."""
    filt = ranking_filter(query)
    pager = Pager.of(query.page, PER_PAGE, repo.count_rankings(session, filt), query.params())
    rows = repo.rankings(session, filt, pager.per_page, pager.offset)
    return RankingsPage(
        rankings=ranking_views(session, rows),
        pager=pager,
        query=query,
        annotators=repo.annotator_options(session),
        prompt_sets=repo.all_prompt_sets(session),
    )


@dataclass(frozen=True)
class FlagsPage:
    items: list[repo.FlaggedCandidate]
    pager: Pager
    flag: str


def flags_page(session: Session, flag: str, page: int) -> FlagsPage:
    """The moderation queue: visible candidates flagged in live rankings, most recent first."""
    if flag not in ("", "unsafe", "incorrect"):
        raise Invalid("flag must be unsafe or incorrect")
    value = flag or None
    pager = Pager.of(page, 20, repo.count_flagged_candidates(session, value), {"flag": flag})
    return FlagsPage(repo.flagged_candidates(session, value, pager.per_page, pager.offset), pager, flag)


def set_candidate_hidden(session: Session, candidate_id: int, hidden: bool) -> None:
    """Hide a candidate from every future task and export (or show it again)."""
    candidate = repo.get_candidate(session, candidate_id)
    if candidate is None:
        raise NotFound(f"no candidate {candidate_id}")
    candidate.hidden = hidden
    session.flush()


def set_ranking_dropped(session: Session, ranking_id: int, dropped: bool) -> None:
    """Drop a ranking from statistics, exports and training (or restore it)."""
    ranking = repo.get_ranking(session, ranking_id)
    if ranking is None:
        raise NotFound(f"no ranking {ranking_id}")
    ranking.dropped = dropped
    session.flush()


# --- quality -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityPage:
    agreement: stats.Agreement
    window: stats.WindowStats
    biases: list[stats.Rate]
    bias_chart: charts.IntervalChart
    pairs: list[PeerPair]
    overlapped_sets: int
    as_of: dt.datetime | None


@dataclass(frozen=True)
class PeerPair:
    a: str
    b: str
    agreement: stats.Agreement


def quality_page(session: Session) -> QualityPage:
    """Inter-annotator agreement, Krippendorff's alpha, position and length bias."""
    summary = stats.agreement_summary(session)
    names = repo.usernames(session, sorted({a for pair in summary.by_pair for a in pair}))
    pairs = sorted(
        (
            PeerPair(names.get(a, f"#{a}"), names.get(b, f"#{b}"), ag)
            for (a, b), ag in summary.by_pair.items()
        ),
        key=lambda p: (-p.agreement.compared, p.a, p.b),
    )
    biases = stats.bias_rates(session)
    return QualityPage(
        agreement=summary.overall,
        window=stats.window_stats(session),
        biases=biases,
        bias_chart=charts.interval_chart(
            [(b.label, b.rate, b.low, b.high) for b in biases],
            title="Observed rate with 95% interval; expected without bias marked",
            value_format="{:.3f}",
            bounds=(0.0, 1.0),
            expected=[b.expected for b in biases],
        ),
        pairs=pairs[:20],
        overlapped_sets=stats_repo.count_overlapped_sets(session),
        as_of=stats.computed_at("agreement", "window", "bias"),
    )


def bias_table(session: Session) -> charts.Table:
    """The bias chart's data."""
    return charts.Table(
        "bias",
        ("statistic", "description", "rate", "ci_low", "ci_high", "n", "expected"),
        [
            (b.name, b.label, _round(b.rate), _round(b.low), _round(b.high), b.n, _round(b.expected))
            for b in stats.bias_rates(session)
        ],
    )


def agreement_table(session: Session) -> charts.Table:
    """Agreement of every annotator pair that shared a set, as data."""
    summary = stats.agreement_summary(session)
    names = repo.usernames(session, sorted({a for pair in summary.by_pair for a in pair}))
    return charts.Table(
        "annotator-agreement",
        (
            "annotator_a",
            "annotator_b",
            "shared_sets",
            "agreeing_pairs",
            "compared_pairs",
            "rate",
            "mean_tau_b",
        ),
        [
            (
                names.get(a, a),
                names.get(b, b),
                ag.sets,
                ag.agreeing,
                ag.compared,
                _round(ag.rate),
                _round(ag.mean_tau_b),
            )
            for (a, b), ag in sorted(summary.by_pair.items())
        ],
    )


@dataclass(frozen=True)
class SetCandidate:
    label: str
    version: str
    text: str
    hidden: bool


@dataclass(frozen=True)
class ConsensusSet:
    set_id: int
    prompt: str
    candidates: list[SetCandidate]
    rankings: list[tuple[str, list[list[str]], bool]]  # (annotator, tiers as labels, all bad)
    consensus: list[list[str]]  # Bradley-Terry consensus (what the agreement statistics compare with)
    training: list[list[str]]  # the mean-tier merge training uses with multi_annotator=consensus
    training_all_bad: bool


@dataclass(frozen=True)
class ConsensusPage:
    sets: list[ConsensusSet]
    pager: Pager


def consensus_page(session: Session, page: int) -> ConsensusPage:
    """Overlapped sets, newest first: each annotator's ranking, their consensus and training's merge."""
    pager = Pager.of(page, 20, stats_repo.count_overlapped_sets(session))
    set_ids = stats_repo.newest_overlapped_sets(session, pager.per_page, pager.offset)
    rankings = stats_repo.live_rankings_of_sets(session, set_ids)
    candidates = stats_repo.candidates_of_sets(session, set_ids)
    prompts = stats_repo.prompts_of_sets(session, set_ids)
    versions = repo.model_versions_by_id(session, sorted({c.model_version_id for c in candidates}))
    names = repo.usernames(session, sorted({r.annotator_id for r in rankings}))
    by_set: dict[int, list[Any]] = {}
    for c in candidates:
        by_set.setdefault(c.set_id, []).append(c)
    out = []
    for set_id in set_ids:
        cands = by_set.get(set_id, [])
        letter = {c.id: _letter(i) for i, c in enumerate(cands)}
        mine = [r for r in rankings if r.set_id == set_id]

        def labels(tiers: Sequence[Sequence[int]], letter: dict[int, str] = letter) -> list[list[str]]:
            return [[letter.get(int(c), f"#{c}") for c in tier] for tier in tiers]

        merged, merged_bad = (
            mean_tier_consensus([(r.tiers, bool(r.all_bad)) for r in mine]) if mine else ([], False)
        )
        out.append(
            ConsensusSet(
                set_id=set_id,
                prompt=prompts.get(set_id, ""),
                candidates=[
                    SetCandidate(
                        letter[c.id],
                        versions[c.model_version_id].name if c.model_version_id in versions else "?",
                        c.text,
                        c.hidden,
                    )
                    for c in cands
                ],
                rankings=[(names.get(r.annotator_id, "?"), labels(r.tiers), bool(r.all_bad)) for r in mine],
                consensus=labels(consensus_tiers([RankingRecord.of(r).tiers for r in mine])) if mine else [],
                training=labels(merged),
                training_all_bad=merged_bad,
            )
        )
    return ConsensusPage(out, pager)


# --- users ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsersPage:
    users: list[repo.UserRow]
    pager: Pager
    roles: list[str] = field(default_factory=lambda: [r.value for r in Role])
    created: str | None = None  # username just created
    secret: str | None = None  # its generated password, shown once


def users_page(session: Session, page: int) -> UsersPage:
    """Every account with its role, state and live API tokens."""
    pager = Pager.of(page, PER_PAGE, repo.count_users(session))
    return UsersPage(repo.user_rows(session, pager.per_page, pager.offset), pager)


def create_user(session: Session, username: str, role: str) -> UsersPage:
    """Create an account with a generated password, shown once on the returned page."""
    user, password = auth.create_user(session, username.strip(), _role(role))
    page = users_page(session, 1)
    return UsersPage(page.users, page.pager, created=user.username, secret=password)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}") from None


@dataclass(frozen=True)
class UserDetail:
    user: User
    tokens: list[ApiToken]
    row: repo.AnnotatorRow | None
    roles: list[str] = field(default_factory=lambda: [r.value for r in Role])
    notice: str = ""
    secret: str | None = None  # a password or token just generated, shown once
    revealed_what: str = ""


def user_detail(session: Session, user_id: int, notice: str = "") -> UserDetail:
    """One account: role, state, API tokens, and its ranking figures."""
    user = auth.get_user(session, user_id)
    return UserDetail(
        user, auth.api_tokens(session, user_id), repo.annotator_row(session, user_id), notice=notice
    )


def set_user_role(session: Session, actor: User, user_id: int, role: str) -> UserDetail:
    """Change a user's role."""
    user = auth.set_role(session, actor, user_id, _role(role))
    return user_detail(session, user_id, f"{user.username} is now {user.role.value}.")


def set_user_active(session: Session, actor: User, user_id: int, active: bool) -> UserDetail:
    """Deactivate (sessions revoked) or reactivate a user."""
    user = auth.set_active(session, actor, user_id, active)
    state = "active again" if active else "deactivated; their sessions were ended and API tokens stop working"
    return user_detail(session, user_id, f"{user.username} is {state}.")


def reset_user_password(session: Session, actor: User, user_id: int) -> UserDetail:
    """A new generated password for a user, shown once."""
    user, password = auth.reset_password(session, actor, user_id)
    detail = user_detail(session, user_id, f"New password for {user.username}; their sessions were ended.")
    return UserDetail(
        detail.user,
        detail.tokens,
        detail.row,
        notice=detail.notice,
        secret=password,
        revealed_what="password",
    )


def issue_user_token(session: Session, user_id: int, name: str) -> UserDetail:
    """A new API token for a user, shown once."""
    user, token = auth.issue_api_token_for(session, user_id, name)
    detail = user_detail(session, user_id, f"New API token for {user.username}.")
    return UserDetail(
        detail.user, detail.tokens, detail.row, notice=detail.notice, secret=token, revealed_what="API token"
    )


def revoke_user_token(session: Session, user_id: int, token_id: int) -> UserDetail:
    """Revoke one of a user's API tokens."""
    token = auth.revoke_api_token(session, user_id, token_id)
    return user_detail(session, user_id, f"Token {token.prefix}… revoked.")
