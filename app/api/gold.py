"""JSON API for gold sets (admins): mark a comparison set gold with its known ranking, unmark it, list them,
and read an annotator's accuracy on gold and agreement with the consensus."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from app.annotation import gold
from app.deps import DB, AdminUser, ProjectParam
from app.quality.gold import annotator_trust
from app.quality.intervals import Proportion

router = APIRouter(tags=["gold"])


class GoldIn(BaseModel):
    tiers: list[list[int]] = Field(
        min_length=1, max_length=9, description="the known ranking: candidate ids, best tier first"
    )


class GoldOut(BaseModel):
    set_id: int
    project_id: int
    tiers: list[list[int]]
    rankings: int


class GoldList(BaseModel):
    gold_sets: list[GoldOut]


class SetCandidateOut(BaseModel):
    id: int
    text: str


class SetOut(BaseModel):
    set_id: int
    project_id: int
    prompt: str
    candidates: list[SetCandidateOut] = Field(description="visible candidates, in set order")


class SetList(BaseModel):
    sets: list[SetOut]


class RateOut(BaseModel):
    estimate: float | None
    low: float
    high: float
    pairs: int


class TrustOut(BaseModel):
    annotator_id: int
    gold_accuracy: RateOut
    gold_rankings: int
    consensus_agreement: RateOut
    gold_weight: float
    agreement_weight: float


def _rate(p: Proportion) -> RateOut:
    return RateOut(
        estimate=p.estimate if math.isfinite(p.estimate) else None, low=p.low, high=p.high, pairs=p.n
    )


@router.put(
    "/comparison-sets/{set_id}/gold",
    response_model=GoldOut,
    responses={404: {"description": "no such set"}, 422: {"description": "tiers do not rank its candidates"}},
    summary="Make a comparison set gold with its known ranking (admin)",
)
def mark_gold(set_id: int, body: GoldIn, db: DB, user: AdminUser) -> GoldOut:
    return GoldOut(**vars(gold.mark_gold(db, set_id, body.tiers)))


@router.delete(
    "/comparison-sets/{set_id}/gold", status_code=204, summary="Make a gold set ordinary again (admin)"
)
def unmark_gold(set_id: int, db: DB, user: AdminUser) -> Response:
    gold.unmark_gold(db, set_id)
    return Response(status_code=204)


@router.get("/gold-sets", response_model=GoldList, summary="Gold sets, newest first (admin)")
def list_gold(db: DB, user: AdminUser, project: ProjectParam) -> GoldList:
    return GoldList(gold_sets=[GoldOut(**vars(g)) for g in gold.gold_sets(db, project)])


@router.get(
    "/comparison-sets",
    response_model=SetList,
    summary="Open ordinary sets with their candidates, newest first, to choose gold from (admin)",
)
def open_sets(
    db: DB, user: AdminUser, project: ProjectParam, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> SetList:
    return SetList(
        sets=[
            SetOut(
                set_id=v.set_id,
                project_id=v.project_id,
                prompt=v.prompt,
                candidates=[SetCandidateOut(id=c, text=t) for c, t in v.candidates],
            )
            for v in gold.open_sets(db, project, limit)
        ]
    )


@router.get(
    "/annotators/{annotator_id}/trust",
    response_model=TrustOut,
    summary="An annotator's accuracy on gold and agreement with the consensus, 95% intervals (admin)",
)
def trust(annotator_id: int, db: DB, user: AdminUser) -> TrustOut:
    t = annotator_trust(db, annotator_id)
    return TrustOut(
        annotator_id=annotator_id,
        gold_accuracy=_rate(t.gold),
        gold_rankings=t.gold_rankings,
        consensus_agreement=_rate(t.consensus),
        gold_weight=t.gold_weight,
        agreement_weight=t.agreement_weight,
    )
