"""JSON API for model versions: list them, promote a policy (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.deps import DB, AdminUser
from app.orm import ModelKind, ModelStatus
from app.training import rounds, service
from app.training.schemas import ModelVersionList, ModelVersionOut

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
    return ModelVersionList(versions=[ModelVersionOut.model_validate(r) for r in rows])


@router.post(
    "/model-versions/{version_id}/promote",
    response_model=ModelVersionOut,
    responses={409: {"description": "not a policy, or a failed one"}},
    summary="Make a policy the active one; the previous active policy is retired (admin)",
)
def promote(version_id: int, db: DB, user: AdminUser) -> ModelVersionOut:
    return ModelVersionOut.model_validate(rounds.promote_policy(db, version_id))
