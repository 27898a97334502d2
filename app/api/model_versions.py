"""JSON API for model versions: list them, promote a policy (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.deps import DB, AdminUser
from app.orm import ModelKind, ModelStatus, ModelVersion
from app.quality import version_stats as stats
from app.training import rounds, service
from app.training.schemas import HumanWinRateOut, ModelVersionList, ModelVersionOut

router = APIRouter(tags=["model versions"])


@router.get(
    "/model-versions", response_model=ModelVersionList, summary="Model versions, newest first (admin)"
)
def list_versions(
    db: DB,
    user: AdminUser,
    kind: ModelKind | None = None,
    status: ModelStatus | None = None,
    limit: int = Query(default=100, ge=1, le=200),
) -> ModelVersionList:
    rows = service.list_model_versions(db, kind, status, limit)
    # The dashboard's cached per-pair totals: computed once per rankings state, not per request.
    summary = stats.outcome_summary(db) if any(_has_parent(r) for r in rows) else None
    versions = []
    for row in rows:
        out = ModelVersionOut.model_validate(row)
        if summary is not None and _has_parent(row):
            assert row.parent_id is not None
            human = stats.human_win_rate(summary, row.id, row.parent_id)
            if human is not None and human.comparisons > 0:
                out.human_winrate_vs_parent = HumanWinRateOut(
                    against=row.parent_id,
                    rate=human.rate,
                    low=human.low,
                    high=human.high,
                    wins=human.wins,
                    losses=human.losses,
                    ties=human.ties,
                    comparisons=human.comparisons,
                    rankings=human.rankings,
                )
        versions.append(out)
    return ModelVersionList(versions=versions)


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
