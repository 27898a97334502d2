"""JSON API for training rounds and generation jobs (admins): start, follow, list, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Body, Query

from app.deps import DB, AdminUser, ProjectParam, SettingsDep
from app.orm import Round, RoundStatus
from app.training import rounds, service
from app.training.config import RoundConfig
from app.training.schemas import (
    ConfigKey,
    GenerationRequest,
    RoundCreated,
    RoundDetail,
    RoundList,
    RoundOut,
    RoundProgress,
    RoundRequest,
)

router = APIRouter(tags=["rounds"])


def round_out(row: Round, detail: bool = False) -> RoundOut:
    data = {
        "id": row.id,
        "project_id": row.project_id,
        "kind": row.kind.value,
        "status": row.status.value,
        "trigger": row.trigger,
        "stage": row.stage,
        "progress": RoundProgress(
            stage=row.stage, step=row.step, total=row.total, loss=row.loss, eta_seconds=row.eta_seconds
        ),
        "metrics": row.metrics or {},
        "error": row.error,
        "attempts": row.attempts,
        "device": row.device,
        "cancel_requested": row.cancel_requested,
        "data_snapshot_id": row.data_snapshot_id,
        "reward_version_id": row.reward_version_id,
        "policy_version_id": row.policy_version_id,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "heartbeat_at": row.heartbeat_at,
        "finished_at": row.finished_at,
    }
    if detail:
        return RoundDetail(
            **data, config=row.config or {}, loss_curve=row.loss_curve or [], log_tail=row.log_tail or []
        )
    return RoundOut(**data)


@router.post(
    "/rounds",
    response_model=RoundCreated,
    status_code=202,
    responses={
        404: {"description": "no such project"},
        409: {"description": "a round is already queued or running in the project"},
        422: {"description": "bad config"},
    },
    summary="Start a training round (admin); the worker runs it",
)
def start_round(
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    project: ProjectParam,
    body: RoundRequest | None = Body(default=None),
) -> RoundCreated:
    overrides = body.overrides() if body is not None else {}
    row = rounds.start_round(db, settings, overrides, requested_by_id=user.id, project_id=project)
    return RoundCreated(id=row.id, status=row.status.value, job_id=row.job_id)


@router.post(
    "/generations",
    response_model=RoundCreated,
    status_code=202,
    responses={
        404: {"description": "no such project"},
        409: {"description": "a generation job is already queued or running in the project"},
        422: {"description": "bad settings, unknown prompt set or version, or nothing to generate"},
    },
    summary="Start a generation-only job (admin): candidates for prompts waiting for them, no training",
)
def start_generation(
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    project: ProjectParam,
    body: GenerationRequest | None = Body(default=None),
) -> RoundCreated:
    overrides = body.overrides() if body is not None else {}
    row = rounds.start_generation(db, settings, overrides, requested_by_id=user.id, project_id=project)
    return RoundCreated(id=row.id, status=row.status.value, job_id=row.job_id)


@router.get("/rounds", response_model=RoundList, summary="Rounds, newest first (admin)")
def list_rounds(
    db: DB,
    user: AdminUser,
    project: ProjectParam,
    status: RoundStatus | None = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> RoundList:
    return RoundList(rounds=[round_out(r) for r in service.list_rounds(db, status, limit, project)])


@router.get(
    "/rounds/config-keys",
    response_model=dict[str, ConfigKey],
    summary="Every round config key with its default and meaning (admin)",
)
def config_keys(user: AdminUser) -> dict[str, ConfigKey]:
    return {k: ConfigKey(**v) for k, v in RoundConfig.describe().items()}


@router.get(
    "/rounds/{round_id}",
    response_model=RoundDetail,
    summary="A round's status, stage, progress, metrics and error (admin)",
)
def get_round(round_id: int, db: DB, user: AdminUser) -> RoundOut:
    return round_out(service.get_round(db, round_id), detail=True)


@router.post(
    "/rounds/{round_id}/cancel",
    response_model=RoundDetail,
    responses={409: {"description": "the round already ended"}},
    summary="Cancel a round (admin): a queued one at once, a running one at its next progress check",
)
def cancel_round(round_id: int, db: DB, user: AdminUser) -> RoundOut:
    return round_out(service.cancel_round(db, round_id), detail=True)
