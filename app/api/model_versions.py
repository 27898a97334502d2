"""JSON API for model versions: list them, promote a policy at once or once it passes the gate (admin)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Query

from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.orm import ModelKind, ModelStatus, ModelVersion
from app.quality import reward_accuracy, reward_signals
from app.quality import version_stats as stats
from app.quality.promotion import GateCheck
from app.training import rounds, service
from app.training.schemas import (
    AccuracyOut,
    HumanWinRateOut,
    ModelVersionList,
    ModelVersionOut,
    PromotionGateOut,
    RewardAccuracyOut,
    RewardVsHumanOut,
)

router = APIRouter(tags=["model versions"])


@router.get(
    "/model-versions", response_model=ModelVersionList, summary="Model versions, newest first (admin)"
)
def list_versions(
    db: DB,
    user: AdminUser,
    settings: SettingsDep,
    project: ProjectParam,
    kind: ModelKind | None = None,
    status: ModelStatus | None = None,
    limit: int = Query(default=100, ge=1, le=200),
) -> ModelVersionList:
    rows = service.list_model_versions(db, kind, status, limit, project)
    # The dashboard's cached per-pair totals: computed once per rankings state, not per request.
    summary = stats.outcome_summary(db) if any(_has_parent(r) for r in rows) else None
    # Each version against its own project's active policy: one policy line per project.
    signals: dict[int, reward_signals.RewardVsHuman] = {}
    for active in service.active_policies(db).values():
        if any(r.project_id == active.project_id for r in rows):
            signals.update(reward_signals.reward_vs_human(db, active.id))
    fresh = reward_accuracy.fresh_accuracy(db) if any(r.kind == ModelKind.reward for r in rows) else {}
    versions = []
    for row in rows:
        out = ModelVersionOut.model_validate(row)
        if summary is not None and _has_parent(row):
            assert row.parent_id is not None
            human = stats.human_win_rate(summary, row.id, row.parent_id)
            if human is not None and human.comparisons > 0:
                out.human_winrate_vs_parent = _human_out(human)
        signal = signals.get(row.id)
        if signal is not None:
            out.reward_vs_active = RewardVsHumanOut(
                against=signal.against,
                reward_version_id=signal.reward_version,
                pairs=signal.pairs,
                predicted=signal.predicted,
                predicted_low=signal.predicted_low,
                predicted_high=signal.predicted_high,
                human=_human_out(signal.human) if signal.human and signal.human.comparisons else None,
                hacking=signal.hacking,
            )
        if _gated(row):
            out.promotion_gate = _gate_out(rounds.promotion_gate(db, settings, row))
        if row.kind == ModelKind.reward:
            out.reward_accuracy = RewardAccuracyOut(
                heldout=_accuracy_out(reward_accuracy.heldout_accuracy(row.metrics or {})),
                fresh=_accuracy_out(fresh.get(row.id)),
            )
        versions.append(out)
    return ModelVersionList(versions=versions)


def _accuracy_out(a: reward_accuracy.Accuracy | None) -> AccuracyOut | None:
    if a is None:
        return None
    finite = math.isfinite(a.low)
    return AccuracyOut(
        accuracy=a.accuracy,
        low=a.low if finite else None,
        high=a.high if finite else None,
        pairs=a.pairs,
        rankings=a.rankings,
    )


def _human_out(human: stats.HumanWinRate) -> HumanWinRateOut:
    return HumanWinRateOut(
        against=human.version_b,
        rate=human.rate,
        low=human.low,
        high=human.high,
        wins=human.wins,
        losses=human.losses,
        ties=human.ties,
        comparisons=human.comparisons,
        rankings=human.rankings,
    )


def _gated(row: ModelVersion) -> bool:
    return row.kind == ModelKind.policy and row.status in (ModelStatus.candidate, ModelStatus.retired)


def _gate_out(check: GateCheck) -> PromotionGateOut:
    return PromotionGateOut(passed=check.passed, reason=check.reason, more_rankings=check.more_rankings)


def _has_parent(row: ModelVersion) -> bool:
    return row.kind == ModelKind.policy and row.parent_id is not None


@router.post(
    "/model-versions/{version_id}/promote",
    response_model=ModelVersionOut,
    responses={409: {"description": "not a policy, or a failed one"}},
    summary="Make a policy the active one; the previous active policy is retired (admin)",
)
def promote(version_id: int, db: DB, user: AdminUser) -> ModelVersionOut:
    return ModelVersionOut.model_validate(rounds.promote_policy(db, version_id))


@router.post(
    "/model-versions/{version_id}/promote-when-ready",
    response_model=ModelVersionOut,
    responses={409: {"description": "not a policy, or a failed one"}},
    summary="Make a policy active once it passes the promotion gate, or now if it already does (admin)",
)
def promote_when_ready(version_id: int, db: DB, user: AdminUser, settings: SettingsDep) -> ModelVersionOut:
    row, check = rounds.request_promotion(db, settings, version_id)
    out = ModelVersionOut.model_validate(row)
    if _gated(row):
        out.promotion_gate = _gate_out(check)
    return out


@router.delete(
    "/model-versions/{version_id}/promote-when-ready",
    response_model=ModelVersionOut,
    summary="Stop waiting for the promotion gate (admin)",
)
def cancel_promote_when_ready(version_id: int, db: DB, user: AdminUser) -> ModelVersionOut:
    return ModelVersionOut.model_validate(rounds.cancel_promotion_request(db, version_id))
