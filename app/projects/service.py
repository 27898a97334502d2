"""The project rules: who sees which project, what a project's settings resolve to, and admins' changes.

Visibility: an admin sees every project; anyone else only the projects they are a member of. A project
someone may not see answers exactly like a missing one (NotFound), so ids reveal nothing. New accounts
join the default project (the migration made every existing user a member of it); admins change that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from croniter import croniter
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.errors import Conflict, Invalid, NotFound
from app.orm import DEFAULT_FLAG_TYPES, Project, Role, User
from app.projects import repository as repo
from app.projects.schemas import FLAG_PATTERN, ProjectFields, ProjectIn, ProjectPatch
from app.text import check_text
from app.training.config import ConfigError, RoundConfig

MIN_K, MAX_K = 2, 9  # the page ranks 2..9 candidates (one digit key each)


@dataclass(frozen=True)
class Resolved:
    """A project's settings with the server-wide ones filled in where the project states none."""

    overlap: int
    lease_minutes: int
    gold_rate: float
    base_model: str
    k_min: int
    k_max: int
    flag_types: tuple[str, ...]
    min_rankings: int
    cron: str | None


def resolved(project: Project, settings: Settings) -> Resolved:
    """The settings a project works with (NULL fields: the server's settings)."""
    return Resolved(
        overlap=project.overlap if project.overlap is not None else settings.overlap,
        lease_minutes=project.lease_minutes if project.lease_minutes is not None else settings.lease_minutes,
        gold_rate=project.gold_rate if project.gold_rate is not None else settings.gold_rate,
        base_model=project.base_model or settings.base_model,
        k_min=project.k_min if project.k_min is not None else MIN_K,
        k_max=project.k_max if project.k_max is not None else MAX_K,
        flag_types=tuple(project.flag_types or DEFAULT_FLAG_TYPES),
        min_rankings=(
            project.schedule_min_rankings
            if project.schedule_min_rankings is not None
            else settings.auto_round_min_rankings
        ),
        cron=project.schedule_cron or None,
    )


def default_project(session: Session) -> Project:
    """The default project (created on first use)."""
    project = repo.get_project(session, repo.default_project_id(session))
    assert project is not None
    return project


def project_or_default(session: Session, project_id: int | None) -> Project:
    """The project with this id (NotFound if none), or the default project for None."""
    if project_id is None:
        return default_project(session)
    project = repo.get_project(session, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}")
    return project


def by_ref(session: Session, ref: str | None) -> Project:
    """A project named by the command line's `--project`: its id or its name (None: the default project);
    NotFound if there is none."""
    if ref is None:
        return default_project(session)
    ref = ref.strip()
    found = repo.get_project_by_name(session, ref) if "\x00" not in ref else None
    if found is None and ref.isascii() and ref.isdigit() and len(ref) <= 9:
        found = repo.get_project(session, int(ref))
    if found is None:
        raise NotFound(f"project: no project named or numbered {ref[:100]!r}")
    return found


def visible(session: Session, user: User, project_id: int) -> Project:
    """A project the user may see; NotFound otherwise (as if it did not exist)."""
    project = repo.get_project(session, project_id)
    if project is None or not can_see(session, user, project.id):
        raise NotFound(f"no project {project_id}")
    return project


def can_see(session: Session, user: User, project_id: int) -> bool:
    """Admins see every project; others their own."""
    return user.role == Role.admin or repo.is_member(session, project_id, user.id)


def projects_of(session: Session, user: User) -> Sequence[Project]:
    """The projects a user sees, by id."""
    return repo.list_projects(session, None if user.role == Role.admin else user.id)


def all_projects(session: Session) -> Sequence[Project]:
    """Every project, by id (admins)."""
    return repo.list_projects(session)


def _cron(value: str) -> str | None:
    value = " ".join(value.split())
    if not value:
        return None
    if not croniter.is_valid(value):
        raise Invalid(f"schedule_cron: {value[:100]!r} is not a cron expression (e.g. '0 3 * * 1')")
    return value


def _apply(project: Project, fields: ProjectFields, explicit: set[str]) -> None:
    """Copy the given fields onto the project, checking each (Invalid names the field)."""
    data: dict[str, Any] = fields.model_dump(include=explicit)
    if "guidelines" in data:
        data["guidelines"] = check_text(data["guidelines"] or "", "guidelines")
    if "flag_types" in data:
        flags = [f.strip().lower() for f in data["flag_types"] or []]
        for flag in flags:
            if not re.match(FLAG_PATTERN, flag):
                raise Invalid(f"flag_types: {flag[:40]!r} is not a lowercase word (letters, digits, _ or -)")
        data["flag_types"] = list(dict.fromkeys(flags)) or list(DEFAULT_FLAG_TYPES)
    if "base_model" in data and data["base_model"] is not None:
        data["base_model"] = check_text(data["base_model"].strip(), "base_model", one_line=True) or None
    if "schedule_cron" in data:
        data["schedule_cron"] = _cron(data["schedule_cron"] or "")
    if "round_defaults" in data:
        data["round_defaults"] = _round_defaults(data["round_defaults"] or {})
    for key, value in data.items():
        setattr(project, key, value)
    if project.k_min is not None and project.k_max is not None and project.k_min > project.k_max:
        raise Invalid(f"k_min ({project.k_min}) must not be above k_max ({project.k_max})")


def _round_defaults(values: dict[str, Any]) -> dict[str, Any]:
    # Checked now, against the round config's keys and ranges, so a typo fails here and not in a round.
    try:
        RoundConfig.resolve(values, get_settings())
    except ConfigError as exc:
        raise Invalid(f"round_defaults: {exc}") from exc
    return dict(values)


def _name(session: Session, name: str, current: Project | None = None) -> str:
    name = check_text(name.strip(), "name", one_line=True, blank_ok=False, max_chars=100)
    other = repo.get_project_by_name(session, name)
    if other is not None and other is not current:
        raise Conflict(f"a project named {name!r} exists already")
    return name


def create_project(session: Session, data: ProjectIn) -> Project:
    """A new project (Invalid for a bad field, Conflict for a taken name)."""
    project = Project(name=_name(session, data.name), flag_types=list(DEFAULT_FLAG_TYPES), round_defaults={})
    _apply(project, data, set(data.model_fields_set) - {"name"})
    return repo.add_project(session, project)


def update_project(session: Session, project_id: int, data: ProjectPatch) -> Project:
    """Change the fields given (explicit nulls reset a setting to the server's)."""
    project = project_or_default(session, project_id)
    explicit = set(data.model_fields_set)
    if "name" in explicit and data.name is not None:
        project.name = _name(session, data.name, project)
    _apply(project, data, explicit - {"name"})
    session.flush()
    return project


def add_member(session: Session, project_id: int, user_id: int) -> None:
    """Make a user a member of a project (NotFound for either unknown)."""
    project_or_default(session, project_id)
    _user(session, user_id)
    repo.add_member(session, project_id, user_id)


def remove_member(session: Session, project_id: int, user_id: int) -> None:
    """End a user's membership of a project."""
    project_or_default(session, project_id)
    repo.remove_member(session, project_id, user_id)


def set_memberships(session: Session, user_id: int, project_ids: Sequence[int]) -> None:
    """Make the user a member of exactly these projects (the users page's checkboxes)."""
    wanted = set(project_ids)
    for project in repo.list_projects(session):
        if project.id in wanted:
            repo.add_member(session, project.id, user_id)
        else:
            repo.remove_member(session, project.id, user_id)


def member_ids(session: Session, project_id: int) -> list[int]:
    """A project's members' user ids."""
    project_or_default(session, project_id)
    return repo.member_ids(session, project_id)


def join_default(session: Session, user_id: int) -> None:
    """A new account joins the default project."""
    repo.add_member(session, repo.default_project_id(session), user_id)


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user
