"""The `--project` option every command that works on one project's data takes (name or id, default:
the default project), as the API's `project` parameter."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.orm import Session

ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        help="the project, by name or id (default: the default project), as the API's `project` parameter",
    ),
]


def project_id(session: Session, ref: str | None) -> int:
    """The id of the project `--project` names (NotFound, exit 2, for none)."""
    from app.projects import service

    return service.by_ref(session, ref).id
