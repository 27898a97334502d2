"""Queries on projects and their members."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Integer, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.orm import ComparisonSet, Project, ProjectMember, Ranking, Role, SetStatus, User


def default_project_id(session: Session) -> int:
    """The default project's id; the database creates it on first use (rankloop_default_project)."""
    return int(session.execute(select(func.rankloop_default_project())).scalar_one())


def get_project(session: Session, project_id: int) -> Project | None:
    """One project by id."""
    return session.get(Project, project_id)


def get_project_by_name(session: Session, name: str) -> Project | None:
    """One project by its (unique) name."""
    return session.scalars(select(Project).where(Project.name == name)).one_or_none()


def list_projects(session: Session, user_id: int | None = None) -> Sequence[Project]:
    """Every project by id, or only those `user_id` is a member of."""
    stmt = select(Project).order_by(Project.id)
    if user_id is not None:
        stmt = stmt.where(
            exists().where(ProjectMember.project_id == Project.id, ProjectMember.user_id == user_id)
        )
    return session.scalars(stmt).all()


def add_project(session: Session, project: Project) -> Project:
    """Insert a project and flush (its id)."""
    session.add(project)
    session.flush()
    return project


def is_member(session: Session, project_id: int, user_id: int) -> bool:
    """Whether the user is a member of the project."""
    return bool(
        session.scalar(
            select(exists().where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id))
        )
    )


def add_member(session: Session, project_id: int, user_id: int) -> None:
    """Make the user a member (nothing happens if they already are)."""
    session.execute(
        pg_insert(ProjectMember)
        .values(project_id=project_id, user_id=user_id)
        .on_conflict_do_nothing(index_elements=[ProjectMember.project_id, ProjectMember.user_id])
    )


def remove_member(session: Session, project_id: int, user_id: int) -> None:
    """End the user's membership (nothing happens if there is none)."""
    session.execute(
        delete(ProjectMember).where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    )


def member_ids(session: Session, project_id: int) -> list[int]:
    """The user ids of a project's members."""
    return list(
        session.scalars(
            select(ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id)
            .order_by(ProjectMember.user_id)
        )
    )


def memberships(session: Session) -> dict[int, list[int]]:
    """User id -> the ids of their projects (the users page shows them)."""
    out: dict[int, list[int]] = {}
    for user_id, project_id in session.execute(
        select(ProjectMember.user_id, ProjectMember.project_id).order_by(ProjectMember.project_id)
    ):
        out.setdefault(user_id, []).append(project_id)
    return out


def visible_project_ids(
    user_id: int | ColumnElement[int], project_id: ColumnElement[int] | None = None
) -> ColumnElement[list[int]]:
    """The ids of the projects a user may see, as one array expression evaluated once per statement (an
    InitPlan): every project for an admin, their memberships for anyone else; narrowed to `project_id`
    when that (possibly NULL) parameter is given. An array, not an IN (subquery): the planner cannot turn
    it into a join, so a hand-out keeps walking its index in order and tests each row against the array.
    """
    is_admin = exists().where(User.id == user_id, User.role == Role.admin)
    member = exists().where(ProjectMember.project_id == Project.id, ProjectMember.user_id == user_id)
    stmt = select(Project.id).where(or_(is_admin, member))
    if project_id is not None:
        stmt = stmt.where(or_(project_id.is_(None), Project.id == project_id))
    return func.array(stmt.scalar_subquery(), type_=Integer)


def open_sets_per_project(session: Session) -> dict[int, int]:
    """Project id -> its open comparison sets (the work left for annotators)."""
    rows = session.execute(
        select(ComparisonSet.project_id, func.count())
        .where(ComparisonSet.status == SetStatus.open)
        .group_by(ComparisonSet.project_id)
    )
    return {int(p): int(n) for p, n in rows}


def rankings_per_project_day(session: Session, since: dt.datetime) -> dict[int, dict[dt.date, int]]:
    """Project id -> UTC day -> live rankings of the project stored that day, since a moment."""
    day = func.date(func.timezone("UTC", Ranking.created_at))
    rows = session.execute(
        select(ComparisonSet.project_id, day, func.count())
        .join(ComparisonSet, ComparisonSet.id == Ranking.set_id)
        .where(Ranking.dropped.is_(False), Ranking.created_at >= since)
        .group_by(ComparisonSet.project_id, day)
    )
    out: dict[int, dict[dt.date, int]] = {}
    for project_id, when, n in rows:
        out.setdefault(int(project_id), {})[when] = int(n)
    return out


def member_counts(session: Session) -> dict[int, int]:
    """Project id -> how many members it has."""
    rows = session.execute(select(ProjectMember.project_id, func.count()).group_by(ProjectMember.project_id))
    return {int(p): int(n) for p, n in rows}
