"""The JSON API under /api/v1: each feature contributes its own sub-router."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.data import router as data_router
from app.api.gold import router as gold_router
from app.api.model_versions import router as model_versions_router
from app.api.projects import router as projects_router
from app.api.rounds import router as rounds_router
from app.api.sets import router as sets_router
from app.api.tasks import router as tasks_router

router = APIRouter(prefix="/api/v1")
router.include_router(tasks_router)
router.include_router(data_router)
router.include_router(rounds_router)
router.include_router(model_versions_router)
router.include_router(projects_router)
router.include_router(gold_router)
router.include_router(sets_router)
