"""Liveness that means something: 200 only when the database answers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from app.db import ping, session_factory

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> JSONResponse:
    try:
        with session_factory()() as session:
            ping(session)
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "detail": str(exc.__class__.__name__)}, status_code=503)
    return JSONResponse({"status": "ok"})
