"""A comparison set's detail for admins: its candidates, and how active selection chose it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.annotation import review_repository as review
from app.annotation.schemas import SetDetailOut, SetMemberOut
from app.errors import NotFound


def set_detail(session: Session, set_id: int) -> SetDetailOut:
    found = review.get_set(session, set_id)
    if found is None:
        raise NotFound(f"comparison set {set_id} not found")
    cs, prompt = found
    members = review.set_members(session, [cs.id]).get(cs.id, [])
    scores = cs.selection_scores.get("scores") or []
    return SetDetailOut(
        id=cs.id,
        project_id=cs.project_id,
        prompt_id=cs.prompt_id,
        prompt=prompt.text,
        status=cs.status.value,
        overlap=cs.overlap,
        submitted=cs.submitted_count,
        source=cs.source,
        created_at=cs.created_at,
        selection=cs.selection,
        selection_priority=cs.selection_priority,
        selection_scores=cs.selection_scores,
        candidates=[
            SetMemberOut(
                candidate_id=m.candidate.id,
                model_version=m.model_version,
                text=m.candidate.text,
                reward_score=scores[i] if i < len(scores) else None,
            )
            for i, m in enumerate(members)
        ],
    )
