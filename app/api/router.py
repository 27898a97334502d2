"""The JSON API under /api/v1: each feature contributes its own sub-router."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
