"""JSON API for projects: list and read them (members see their own, admins all), create and change them,
and manage their members (admins). Everything else per project takes the `project` query parameter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.deps import DB, AdminUser, CurrentUser
from app.projects import service
from app.projects.schemas import MemberList, ProjectIn, ProjectList, ProjectOut, ProjectPatch

router = APIRouter(tags=["projects"])

NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"description": "no such project among those you see"}}


@router.get("/projects", response_model=ProjectList, summary="The projects you see (admins: every project)")
def list_projects(db: DB, user: CurrentUser) -> ProjectList:
    return ProjectList(projects=[ProjectOut.model_validate(p) for p in service.projects_of(db, user)])


@router.post(
    "/projects",
    response_model=ProjectOut,
    status_code=201,
    responses={409: {"description": "the name is taken"}, 422: {"description": "a bad field"}},
    summary="Create a project (admin)",
)
def create_project(body: ProjectIn, db: DB, user: AdminUser) -> ProjectOut:
    return ProjectOut.model_validate(service.create_project(db, body))


@router.get("/projects/{project_id}", response_model=ProjectOut, responses=NOT_YOURS, summary="One project")
def get_project(project_id: int, db: DB, user: CurrentUser) -> ProjectOut:
    return ProjectOut.model_validate(service.visible(db, user, project_id))


@router.patch(
    "/projects/{project_id}",
    response_model=ProjectOut,
    responses={**NOT_YOURS, 409: {"description": "the name is taken"}},
    summary="Change a project's name, guidelines, flag types, settings or schedule (admin); null resets a "
    "setting to the server's",
)
def update_project(project_id: int, body: ProjectPatch, db: DB, user: AdminUser) -> ProjectOut:
    return ProjectOut.model_validate(service.update_project(db, project_id, body))


@router.get(
    "/projects/{project_id}/members",
    response_model=MemberList,
    responses=NOT_YOURS,
    summary="Members (admin)",
)
def list_members(project_id: int, db: DB, user: AdminUser) -> MemberList:
    return MemberList(user_ids=service.member_ids(db, project_id))


@router.put(
    "/projects/{project_id}/members/{user_id}",
    status_code=204,
    responses=NOT_YOURS,
    summary="Make a user a member of the project (admin)",
)
def add_member(project_id: int, user_id: int, db: DB, user: AdminUser) -> Response:
    service.add_member(db, project_id, user_id)
    return Response(status_code=204)


@router.delete(
    "/projects/{project_id}/members/{user_id}",
    status_code=204,
    responses=NOT_YOURS,
    summary="End a user's membership of the project (admin)",
)
def remove_member(project_id: int, user_id: int, db: DB, user: AdminUser) -> Response:
    service.remove_member(db, project_id, user_id)
    return Response(status_code=204)
