"""JSON API for one comparison set's detail (admin): candidates, reward scores, active selection."""

from __future__ import annotations

from fastapi import APIRouter

from app.annotation import sets
from app.annotation.schemas import SetDetailOut
from app.deps import DB, AdminUser

router = APIRouter(tags=["comparison sets"])


@router.get(
    "/sets/{set_id}",
    response_model=SetDetailOut,
    responses={404: {"description": "no such comparison set"}},
    summary="A comparison set: its candidates, and how active selection chose it and scored them (admin)",
)
def get_set(set_id: int, db: DB, user: AdminUser) -> SetDetailOut:
    return sets.set_detail(db, set_id)
