"""The Rounds and Model versions pages: start, follow and cancel rounds; lineage, metrics, promotion.

Starting, cancelling and promoting go through app.training.service; this module only reads (through the
admin repository) and shapes what the pages show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.admin import charts, stats
from app.admin import repository as repo
from app.admin.paging import Pager
from app.admin.schemas import ROUND_FIELDS, RoundForm
from app.config import Settings
from app.errors import Invalid, NotFound
from app.orm import ModelKind, ModelStatus, ModelVersion, Round, RoundStatus, User
from app.training import service as training

ROUNDS_PER_PAGE = 20
COMPARE_PER_PAGE = 10


@dataclass(frozen=True)
class FieldView:
    key: str
    label: str
    kind: str
    default: Any
    help: str
    choices: list[str]
    value: str


@dataclass(frozen=True)
class RoundsPage:
    rounds: Sequence[Round]
    pager: Pager
    fields: list[FieldView]
    extra: str
    active: Round | None
    error: str | None = None


def _fields(values: dict[str, str]) -> list[FieldView]:
    from worker.config import RoundConfig

    described = RoundConfig.describe()
    return [
        FieldView(
            key=key,
            label=label,
            kind=kind,
            default=described[key]["default"],
            help=described[key]["help"],
            choices=described[key]["choices"],
            value=values.get(key, ""),
        )
        for key, label, kind in ROUND_FIELDS
    ]


def rounds_page(
    session: Session, page: int, form: RoundForm | None = None, error: str | None = None
) -> RoundsPage:
    """Rounds newest first, the start form (defaults shown), and the round in progress if any."""
    pager = Pager.of(page, ROUNDS_PER_PAGE, repo.count_rounds(session))
    form = form or RoundForm()
    return RoundsPage(
        rounds=repo.rounds_page(session, pager.per_page, pager.offset),
        pager=pager,
        fields=_fields(form.values),
        extra=form.extra,
        active=repo.current_round(session),
        error=error,
    )


def start_round(session: Session, settings: Settings, form: RoundForm, user: User) -> Round:
    """Queue a training round with the form's overrides (409 while another round is active)."""
    return training.start_round(session, settings, form.overrides(), requested_by_id=user.id)


@dataclass(frozen=True)
class RoundView:
    round: Round
    charts: list[charts.LineChart]
    percent: float | None
    eta: str
    elapsed: str
    active: bool
    versions: dict[int, ModelVersion]
    requested_by: str
    metric_rows: list[tuple[str, str]] = field(default_factory=list)


def _duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 12s; empty for unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def loss_series(curve: Sequence[Any]) -> dict[str, list[tuple[float, float]]]:
    """The round's [stage, step, loss] points grouped by stage, in the order stages first appear."""
    series: dict[str, list[tuple[float, float]]] = {}
    for point in curve or []:
        if not isinstance(point, list | tuple) or len(point) != 3:
            continue
        stage, step, loss = point
        try:
            series.setdefault(str(stage), []).append((float(step), float(loss)))
        except (TypeError, ValueError):
            continue
    return series


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (dotted key, printable value) rows."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4g}"))
        else:
            rows.append((name, str(value)))
    return rows


def round_view(session: Session, round_id: int) -> RoundView:
    """A round's stage, progress, per-stage loss curves, ETA, log tail and metrics."""
    row = repo.get_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    series = loss_series(row.loss_curve)
    drawn = [
        charts.line_chart(
            {stage: points}, title=f"{stage} loss", x_label="step", y_label="loss", width=360, height=200
        )
        for stage, points in series.items()
    ]
    active = row.status in (RoundStatus.queued, RoundStatus.running)
    end = row.finished_at or (repo.db_now(session) if row.started_at else None)
    elapsed = (end - row.started_at).total_seconds() if end and row.started_at else None
    versions = repo.model_versions_by_id(
        session, [v for v in (row.policy_version_id, row.reward_version_id) if v is not None]
    )
    requested = repo.usernames(session, [row.requested_by_id] if row.requested_by_id else [])
    return RoundView(
        round=row,
        charts=drawn,
        percent=round(100 * row.step / row.total, 1) if row.total else None,
        eta=_duration(row.eta_seconds) if active else "",
        elapsed=_duration(elapsed),
        active=active,
        versions=versions,
        requested_by=requested.get(row.requested_by_id or 0, row.trigger),
        metric_rows=_flatten(row.metrics or {}),
    )


def loss_table(session: Session, round_id: int) -> charts.Table:
    """A round's loss curve as data."""
    row = repo.get_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    points = [
        (stage, int(step), loss) for stage, pts in loss_series(row.loss_curve).items() for step, loss in pts
    ]
    return charts.Table(f"round-{round_id}-loss", ("stage", "step", "loss"), points)


def cancel_round(session: Session, round_id: int) -> Round:
    """Cancel a queued round now, or a running one at its next progress check."""
    return training.cancel_round(session, round_id)


# --- model versions ----------------------------------------------------------------------------------


@dataclass
class VersionNode:
    version: ModelVersion
    children: list[VersionNode]
    candidates: int
    round_id: int | None
    reward_accuracy: float | None  # held-out accuracy of the reward model (its own, or its round's)
    reward_name: str
    rm_win_rate: float | None  # the new policy's win-rate over its parent judged by the reward model
    human: stats.HumanWinRate | None  # blind human win-rate against the parent
    can_promote: bool
    promote_label: str


@dataclass(frozen=True)
class ModelsPage:
    policies: list[VersionNode]
    rewards: list[VersionNode]
    externals: list[VersionNode]
    active: ModelVersion | None
    choices: list[ModelVersion]
    notice: str


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(float(value)) else None


def _nodes(session: Session) -> tuple[list[ModelVersion], dict[int, VersionNode]]:
    versions = list(repo.all_model_versions(session))
    by_id = {v.id: v for v in versions}
    rounds = repo.rounds_by_policy(session)
    counts = repo.candidate_counts_by_version(session)
    summary = stats.outcome_summary(session)
    rewards_by_snapshot = {
        v.data_snapshot_id: v
        for v in versions
        if v.kind == ModelKind.reward and v.data_snapshot_id is not None
    }
    nodes: dict[int, VersionNode] = {}
    for v in versions:
        reward: ModelVersion | None = None
        if v.kind == ModelKind.reward:
            reward = v
        elif v.kind == ModelKind.policy:
            r = rounds.get(v.id)
            if r is not None and r.reward_version_id in by_id:
                reward = by_id[r.reward_version_id]
            elif v.data_snapshot_id is not None:
                reward = rewards_by_snapshot.get(v.data_snapshot_id)
        promotable = v.kind == ModelKind.policy and v.status not in (ModelStatus.active, ModelStatus.failed)
        nodes[v.id] = VersionNode(
            version=v,
            children=[],
            candidates=counts.get(v.id, 0),
            round_id=rounds[v.id].id if v.id in rounds else None,
            reward_accuracy=_number((reward.metrics or {}).get("heldout_accuracy")) if reward else None,
            reward_name=reward.name if reward and reward is not v else "",
            rm_win_rate=_number((v.metrics or {}).get("winrate_vs_parent")),
            human=stats.human_win_rate(summary, v.id, v.parent_id) if v.parent_id in by_id else None,
            can_promote=promotable,
            promote_label="Roll back to this" if v.status == ModelStatus.retired else "Promote",
        )
    for v in versions:
        if v.parent_id in nodes:
            nodes[v.parent_id].children.append(nodes[v.id])
    return versions, nodes


def models_page(session: Session, promoted: int | None = None) -> ModelsPage:
    """The lineage trees of policies and reward models with each version's metrics, and external sources."""
    versions, nodes = _nodes(session)
    by_id = {v.id: v for v in versions}
    # After a promotion the page says what happened, from the database rather than from the URL.
    notice = ""
    if promoted in by_id and by_id[promoted].status == ModelStatus.active:
        notice = f"{by_id[promoted].name} is now the active policy."

    def roots(kind: ModelKind) -> list[VersionNode]:
        return [nodes[v.id] for v in versions if v.kind == kind and v.parent_id not in by_id]

    active = next(
        (v for v in versions if v.kind == ModelKind.policy and v.status == ModelStatus.active), None
    )
    return ModelsPage(
        policies=roots(ModelKind.policy),
        rewards=roots(ModelKind.reward),
        externals=roots(ModelKind.external),
        active=active,
        choices=[v for v in reversed(versions) if v.kind != ModelKind.reward],
        notice=notice,
    )


def models_table(session: Session) -> charts.Table:
    """Every model version with its parent and metrics (the lineage page as data)."""
    versions, nodes = _nodes(session)
    names = {v.id: v.name for v in versions}
    rows = []
    for v in versions:
        n = nodes[v.id]
        h = n.human
        rows.append(
            (
                v.id,
                v.name,
                v.kind.value,
                v.status.value,
                names.get(v.parent_id or 0),
                n.round_id,
                n.candidates,
                n.reward_accuracy,
                n.rm_win_rate,
                _finite(h.rate) if h else None,
                _finite(h.low) if h else None,
                _finite(h.high) if h else None,
                h.comparisons if h else 0,
            )
        )
    return charts.Table(
        "model-versions",
        (
            "version_id",
            "name",
            "kind",
            "status",
            "parent",
            "round_id",
            "candidates",
            "reward_heldout_accuracy",
            "reward_scored_win_rate_vs_parent",
            "human_win_rate_vs_parent",
            "human_ci_low",
            "human_ci_high",
            "human_comparisons",
        ),
        rows,
    )


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def promote(session: Session, version_id: int) -> ModelVersion:
    """Make a policy the active one (promotion, or a roll-back to an older policy)."""
    return training.promote(session, version_id)


@dataclass(frozen=True)
class ComparedPrompt:
    prompt: str
    a: list[str]
    b: list[str]


@dataclass(frozen=True)
class ComparePage:
    choices: list[ModelVersion]
    a: ModelVersion | None
    b: ModelVersion | None
    prompts: list[ComparedPrompt]
    pager: Pager
    human: stats.HumanWinRate | None


def compare(session: Session, version_a: int | None, version_b: int | None, page: int) -> ComparePage:
    """Completions of two versions side by side on the prompts both answered, newest first."""
    versions = list(repo.all_model_versions(session))
    choices = [v for v in reversed(versions) if v.kind != ModelKind.reward]
    by_id = {v.id: v for v in versions}
    if version_a is None and version_b is None:
        # A sensible first view: the active policy against its parent.
        active = next(
            (v for v in choices if v.kind == ModelKind.policy and v.status == ModelStatus.active), None
        )
        if active is not None and active.parent_id in by_id:
            version_a, version_b = active.id, active.parent_id
    for vid in (version_a, version_b):
        if vid is not None and vid not in by_id:
            raise NotFound(f"no model version {vid}")
    a = by_id.get(version_a) if version_a is not None else None
    b = by_id.get(version_b) if version_b is not None else None
    params = {"a": str(version_a or ""), "b": str(version_b or "")}
    if a is None or b is None or a.id == b.id:
        if a is not None and b is not None:
            raise Invalid("pick two different versions")
        return ComparePage(choices, a, b, [], Pager.of(1, COMPARE_PER_PAGE, 0, params), None)
    pager = Pager.of(page, COMPARE_PER_PAGE, repo.count_shared_prompts(session, a.id, b.id), params)
    prompts = repo.shared_prompts(session, a.id, b.id, pager.per_page, pager.offset)
    cands = repo.candidates_of(session, [p.id for p in prompts], [a.id, b.id])
    out = []
    for p in prompts:
        mine = [c for c in cands if c.prompt_id == p.id]
        out.append(
            ComparedPrompt(
                p.text,
                [c.text for c in mine if c.model_version_id == a.id],
                [c.text for c in mine if c.model_version_id == b.id],
            )
        )
    human = stats.human_win_rate(stats.outcome_summary(session), a.id, b.id)
    return ComparePage(choices, a, b, out, pager, human)
