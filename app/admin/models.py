"""The Model versions pages: lineage trees with each version's metrics, promotion and roll-back, and two
versions' completions side by side.

Promotion (at once, or "when ready": once the policy passes the promotion gate) goes through
app.training.rounds (the one rule); human win-rates come from app.quality.version_stats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin import charts
from app.admin.common import DataFormat, Page, data_response, page_router, project_context, redirect, rounded
from app.admin.learning_curve import CurvePoint, LearningCurve, curve_table, learning_curve
from app.admin.paging import Pager
from app.annotation import activity_repository as activity
from app.config import Settings
from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.errors import Invalid, NotFound
from app.orm import ModelKind, ModelStatus, ModelVersion
from app.projects import service as projects
from app.prompts import repository as prompts_repo
from app.quality import reward_accuracy as rm_accuracy
from app.quality import reward_signals, version_stats
from app.quality.promotion import GateCheck
from app.training import repository as training_repo
from app.training import rounds as training_rounds
from app.web import render

router = page_router()

COMPARE_PER_PAGE = 10


@dataclass
class VersionNode:
    version: ModelVersion
    children: list[VersionNode]
    candidates: int
    round_id: int | None
    reward_accuracy: float | None  # held-out accuracy of the reward model (its own, or its round's)
    reward_name: str
    rm_win_rate: float | None  # the new policy's win-rate over its parent judged by the reward model
    human: version_stats.HumanWinRate | None  # blind human win-rate against the parent
    can_promote: bool
    promote_label: str
    gate: GateCheck | None  # a promotable policy's standing against the promotion gate
    vs_active: reward_signals.RewardVsHuman | None  # reward-predicted vs human win-rate over the active one
    heldout: rm_accuracy.Accuracy | None  # a reward model's held-out accuracy at training time
    fresh: rm_accuracy.Accuracy | None  # ... and on rankings it never saw


@dataclass(frozen=True)
class ModelsPage:
    policies: list[VersionNode]
    rewards: list[VersionNode]
    externals: list[VersionNode]
    active: ModelVersion | None
    choices: list[ModelVersion]
    notice: str
    curve: LearningCurve


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(float(value)) else None


def _nodes(
    session: Session, settings: Settings, project_id: int
) -> tuple[list[ModelVersion], dict[int, VersionNode]]:
    versions = list(training_repo.all_model_versions(session, project_id))
    by_id = {v.id: v for v in versions}
    rounds = training_repo.rounds_by_policy(session)
    counts = activity.candidate_counts_by_version(session)
    summary = version_stats.outcome_summary(session)
    rewards_by_snapshot = {
        v.data_snapshot_id: v
        for v in versions
        if v.kind == ModelKind.reward and v.data_snapshot_id is not None
    }
    active = next(
        (v for v in versions if v.kind == ModelKind.policy and v.status == ModelStatus.active), None
    )
    signals = reward_signals.reward_vs_human(session, active.id) if active is not None else {}
    fresh = rm_accuracy.fresh_accuracy(session)
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
            human=version_stats.human_win_rate(summary, v.id, v.parent_id) if v.parent_id in by_id else None,
            can_promote=promotable,
            promote_label="Roll back to this" if v.status == ModelStatus.retired else "Promote",
            gate=training_rounds.promotion_gate(session, settings, v) if promotable else None,
            vs_active=signals.get(v.id) if v.kind == ModelKind.policy else None,
            heldout=rm_accuracy.heldout_accuracy(reward.metrics or {}) if reward else None,
            fresh=fresh.get(reward.id) if reward else None,
        )
    for v in versions:
        if v.parent_id in nodes:
            nodes[v.parent_id].children.append(nodes[v.id])
    return versions, nodes


def _curve(session: Session, versions: list[ModelVersion], nodes: dict[int, VersionNode]) -> LearningCurve:
    """The learning curve of every trained policy (one with a parent), oldest first."""
    by_id = {v.id: v for v in versions}
    summary = version_stats.outcome_summary(session)
    points = []
    for v in versions:
        if v.kind != ModelKind.policy or v.parent_id not in by_id or v.status == ModelStatus.failed:
            continue
        root = v
        while root.parent_id in by_id:
            root = by_id[root.parent_id]  # ids grow along the lineage: no cycle
        n = nodes[v.id]
        points.append(
            CurvePoint(v, n.heldout, n.fresh, n.human, version_stats.human_win_rate(summary, v.id, root.id))
        )
    return learning_curve(points)


def models_page(
    session: Session, settings: Settings, project_id: int, promoted: int | None = None
) -> ModelsPage:
    """One project's lineage trees of policies and reward models with each version's metrics, and its
    external sources (the authors of texts imported into it)."""
    versions, nodes = _nodes(session, settings, project_id)
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
        curve=_curve(session, versions, nodes),
    )


def models_table(session: Session, settings: Settings, project_id: int) -> charts.Table:
    """A project's model versions with their parents and metrics (the lineage page as data)."""
    versions, nodes = _nodes(session, settings, project_id)
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
                rounded(h.rate) if h else None,
                rounded(h.low) if h else None,
                rounded(h.high) if h else None,
                h.comparisons if h else 0,
                v.promote_when_ready,
                n.gate.more_rankings if n.gate else None,
                rounded(n.vs_active.predicted) if n.vs_active else None,
                rounded(n.vs_active.human.rate) if n.vs_active and n.vs_active.human else None,
                bool(n.vs_active and n.vs_active.hacking),
                rounded(n.fresh.accuracy) if n.fresh else None,
                rounded(n.fresh.low) if n.fresh else None,
                rounded(n.fresh.high) if n.fresh else None,
                n.fresh.pairs if n.fresh else 0,
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
            "promote_when_ready",
            "gate_more_rankings",
            "reward_predicted_win_rate_vs_active",
            "human_win_rate_vs_active",
            "reward_hacking_suspected",
            "reward_fresh_accuracy",
            "reward_fresh_ci_low",
            "reward_fresh_ci_high",
            "reward_fresh_pairs",
        ),
        rows,
    )


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
    human: version_stats.HumanWinRate | None


def compare(session: Session, version_a: int | None, version_b: int | None, page: int) -> ComparePage:
    """Completions of two versions side by side on the prompts both answered, newest first."""
    versions = list(training_repo.all_model_versions(session))
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
    pager = Pager.of(page, COMPARE_PER_PAGE, prompts_repo.count_shared_prompts(session, a.id, b.id), params)
    prompts = prompts_repo.shared_prompts(session, a.id, b.id, pager.per_page, pager.offset)
    cands = sorted(
        (
            c
            for c in prompts_repo.candidates_of_prompts(session, [p.id for p in prompts])
            if c.model_version_id in (a.id, b.id)
        ),
        key=lambda c: c.id,
    )
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
    human = version_stats.human_win_rate(version_stats.outcome_summary(session), a.id, b.id)
    return ComparePage(choices, a, b, out, pager, human)


def _one_project(session: Session, project: int | None) -> int:
    # A lineage has one active policy: the page shows one project's (default: the default project's).
    return projects.project_or_default(session, project).id


@router.get("/models", response_class=HTMLResponse)
def models_list(
    request: Request,
    db: DB,
    user: AdminUser,
    settings: SettingsDep,
    project: ProjectParam,
    promoted: int | None = None,
) -> Response:
    pid = _one_project(db, project)
    ctx = {"p": models_page(db, settings, pid, promoted), **project_context(db, pid)}
    return render(request, "admin/models.html", ctx)


@router.get("/models.{fmt}")
def models_data(
    db: DB, user: AdminUser, settings: SettingsDep, fmt: DataFormat, project: ProjectParam
) -> Response:
    return data_response(models_table(db, settings, _one_project(db, project)), fmt)


@router.get("/models/curve.{fmt}")
def curve_data(
    db: DB, user: AdminUser, settings: SettingsDep, fmt: DataFormat, project: ProjectParam
) -> Response:
    versions, nodes = _nodes(db, settings, _one_project(db, project))
    return data_response(curve_table(_curve(db, versions, nodes)), fmt)


@router.get("/models/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, db: DB, user: AdminUser, a: int | None = None, b: int | None = None, page: Page = 1
) -> Response:
    return render(request, "admin/compare.html", {"p": compare(db, a, b, page)})


@router.post("/models/{version_id}/promote")
def promote(db: DB, user: AdminUser, version_id: int) -> Response:
    # Promotion, or a roll-back to an older policy.
    version = training_rounds.promote_policy(db, version_id)
    return redirect(f"/admin/models?project={version.project_id}&promoted={version.id}")


@router.post("/models/{version_id}/promote-when-ready")
def promote_when_ready(db: DB, user: AdminUser, settings: SettingsDep, version_id: int) -> Response:
    # Promoted now if it already passes the gate; the page says which.
    version, _ = training_rounds.request_promotion(db, settings, version_id)
    return redirect(f"/admin/models?project={version.project_id}&promoted={version.id}#version-{version.id}")


@router.post("/models/{version_id}/cancel-promotion")
def cancel_promotion(db: DB, user: AdminUser, version_id: int) -> Response:
    version = training_rounds.cancel_promotion_request(db, version_id)
    return redirect(f"/admin/models?project={version.project_id}#version-{version_id}")
