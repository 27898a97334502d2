"""JSON API for annotators: fetch the next task, submit a ranking, skip a task."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.annotation import service
from app.annotation.schemas import CandidateOut, MessageOut, RankingIn, RankingOut, SkipIn, SkipOut, TaskOut
from app.deps import DB, CurrentUser, ProjectParam, SettingsDep

router = APIRouter(tags=["tasks"])


def _task_out(view: service.TaskView) -> TaskOut:
    return TaskOut(
        assignment_id=view.assignment.id,
        project_id=view.project.id,
        flag_types=list(view.project.flag_types),
        prompt=view.prompt.text,
        messages=[MessageOut.model_validate(m) for m in view.prompt.messages]
        if view.prompt.messages
        else None,
        candidates=[CandidateOut(id=c.id, text=c.text, truncated=c.truncated) for c in view.candidates],
        lease_expires_at=view.assignment.lease_expires_at,
    )


@router.get(
    "/tasks/next",
    response_model=TaskOut,
    responses={
        204: {"description": "nothing is left for this annotator (in the project asked for)"},
        404: {"description": "no such project among yours"},
    },
    summary="Lease the next ranking task of your projects (or of one), or get the one already leased",
)
def next_task(db: DB, settings: SettingsDep, user: CurrentUser, project: ProjectParam) -> TaskOut | Response:
    view = service.next_task(db, settings, user, project)
    if view is None:
        return Response(status_code=204)
    return _task_out(view)


@router.get("/tasks/{assignment_id}", response_model=TaskOut, summary="One of your own tasks")
def get_task(assignment_id: int, db: DB, user: CurrentUser) -> TaskOut:
    return _task_out(service.get_task(db, user, assignment_id))


@router.post(
    "/rankings",
    response_model=RankingOut,
    status_code=201,
    responses={200: {"model": RankingOut, "description": "identical repeat: the stored ranking"}},
    summary="Submit a ranking for a leased task (idempotent)",
)
def submit_ranking(
    body: RankingIn, response: Response, db: DB, settings: SettingsDep, user: CurrentUser
) -> RankingOut:
    result = service.submit_ranking(db, settings, user, body, source="api")
    if not result.created:
        response.status_code = 200
    return RankingOut.model_validate(result.ranking)


@router.post(
    "/tasks/{assignment_id}/skip", response_model=SkipOut, summary="Skip a leased task with a reason"
)
def skip_task(assignment_id: int, body: SkipIn, db: DB, user: CurrentUser) -> SkipOut:
    return SkipOut.model_validate(service.skip_task(db, user, assignment_id, body.reason).skip)
