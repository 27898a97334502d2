"""The `rankloop` command line: the composition root, the one place in app/ that imports worker/."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.demo import cli as demo_cli
from app.exports.schemas import ExportFormat
from app.orm import Role
from app.projects.cli import ProjectOption, project_id
from app.prompts.schemas import ImportKind
from app.training import cli as training_cli
from worker import cli as worker_cli

app = typer.Typer(help="rankloop: rank LLM completions and close the RLHF loop.", no_args_is_help=True)
db_app = typer.Typer(help="Database: schema, and the embedded server.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
training_cli.register(app)  # round, generate, import-demonstrations
demo_cli.register(app)  # demo
worker_cli.register(app)  # worker, eval-rm
console = Console()
err_console = Console(stderr=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (creates the embedded database on first use)."""
    from app.migrate import upgrade

    upgrade(revision)
    console.print(f"[green]database at {revision}[/green]")


@db_app.command("status")
def db_status() -> None:
    """Report the embedded PostgreSQL of the data dir (exit 0 running, 3 stopped, as pg_ctl status)."""
    from app import embedded_db
    from app.config import get_settings

    settings = get_settings()
    if settings.database_url:
        console.print("DATABASE_URL is set: rankloop uses that server, not an embedded one")
    state = embedded_db.status(settings)
    where = escape(str(state.pgdata))
    if state.running:
        since = f"{state.started_at:%Y-%m-%d %H:%M}"
        console.print(f"embedded PostgreSQL [green]running[/green] (pid {state.pid}, since {since})")
        console.print(f"data:    {where}")
        console.print(f"connect: {escape(state.url or '')}")
        return
    if state.initialised:
        console.print("embedded PostgreSQL stopped (the next command that needs it starts it)")
    else:
        console.print("no embedded PostgreSQL yet (the first command that needs one creates it)")
    console.print(f"data:    {where}")
    raise typer.Exit(3)


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL of the data dir (its clients are disconnected)."""
    from app import embedded_db
    from app.config import get_settings

    settings = get_settings()
    where = escape(str(embedded_db.pgdata_dir(settings)))
    if embedded_db.stop(settings):
        console.print(f"stopped the embedded PostgreSQL in {where}")
    else:
        console.print(f"the embedded PostgreSQL in {where} was not running")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the web app and the JSON API."""
    import uvicorn

    from app.db import database_url

    database_url()  # start the embedded server once, before workers fork
    # Proxy headers are the app's to read (RANKLOOP_TRUSTED_PROXIES): uvicorn's default trusts any client
    # on 127.0.0.1, so anyone on the host could claim any address and dodge the login throttle.
    uvicorn.run("app.asgi:app", host=host, port=port, workers=workers, proxy_headers=False)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[Role, typer.Option(help="annotator or admin")] = Role.annotator,
    password: Annotated[str | None, typer.Option(help="generated and printed when omitted")] = None,
    project: Annotated[
        list[str] | None,
        typer.Option(
            "--project", help="a project to join, by name or id (repeatable; default: the default project)"
        ),
    ] = None,
) -> None:
    """Create a user, a member of the projects given (default: the default project)."""
    from app.auth import service
    from app.db import session_scope
    from app.projects import service as projects

    with session_scope() as session:
        wanted = [project_id(session, ref) for ref in project or []]
        user, pw = service.create_user(session, name, role, password)
        if wanted:
            projects.set_memberships(session, user.id, wanted)
        joined = [p.name for p in projects.all_projects(session) if projects.can_see(session, user, p.id)]
    console.print(f"created {role.value} [bold]{user.username}[/bold] in {escape(', '.join(joined))}")
    if password is None:
        console.print(f"password: [bold]{pw}[/bold]")


def _user_id(session: object, name: str) -> int:
    from app.auth import repository
    from app.errors import NotFound

    user = repository.get_user_by_name(session, name)  # type: ignore[arg-type]
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user.id


@users_app.command("join")
def users_join(name: str, project: ProjectOption = None) -> None:
    """Make a user a member of a project: they are handed its tasks and see its data."""
    from app.db import session_scope
    from app.projects import service as projects

    with session_scope() as session:
        pid = project_id(session, project)
        projects.add_member(session, pid, _user_id(session, name))
        label = projects.project_or_default(session, pid).name
    console.print(f"{escape(name)} is a member of {escape(label)}")


@users_app.command("leave")
def users_leave(name: str, project: ProjectOption = None) -> None:
    """End a user's membership of a project (their rankings stay)."""
    from app.db import session_scope
    from app.projects import service as projects

    with session_scope() as session:
        pid = project_id(session, project)
        projects.remove_member(session, pid, _user_id(session, name))
        label = projects.project_or_default(session, pid).name
    console.print(f"{escape(name)} is no longer a member of {escape(label)}")


@users_app.command("token")
def users_token(name: str, label: Annotated[str, typer.Option(help="what the token is for")] = "cli") -> None:
    """Print a new API token for a user (shown once; only its digest is stored)."""
    from app.auth import repository, service
    from app.db import session_scope

    with session_scope() as session:
        user = repository.get_user_by_name(session, name)
        if user is None:
            console.print(f"[red]no user {name!r}[/red]")
            raise typer.Exit(1)
        token = service.issue_api_token(session, user, label)
    print(token)


class ExportKind(enum.StrEnum):
    rankings = "rankings"
    pairs = "pairs"


@app.command("import")
def import_data(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSONL or CSV")],
    kind: Annotated[
        ImportKind,
        typer.Option(
            help="what the file holds (oasst: Open-Assistant trees; gold: ranked groups as gold sets)"
        ),
    ],
    prompt_set: Annotated[
        str | None, typer.Option(help='prompt set to import into, created if missing (default "imported")')
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Import prompts, TRL preference pairs or ranked groups; a malformed line imports nothing."""
    from app.config import get_settings
    from app.db import session_scope
    from app.errors import AppError
    from app.prompts import service

    data = file.read_bytes()
    try:
        with session_scope() as session:
            pid = project_id(session, project)
            summary = service.import_file(
                session, get_settings(), data, kind, prompt_set, file.name, project_id=pid
            )
    except AppError as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from exc
    table = Table(title=f"imported {escape(file.name)} into prompt set {escape(summary.prompt_set)!r}")
    table.add_column("")
    table.add_column("count", justify="right")
    for label in (
        "records",
        "prompts",
        "candidates",
        "sets",
        "rankings",
        "duplicates",
        "conflicts",
        "left_out",
        "gold",
    ):
        table.add_row(label, str(getattr(summary, label)))
    console.print(table)


@app.command("export")
def export_data(
    what: Annotated[ExportKind, typer.Argument(help="rankings (raw JSONL) or pairs (TRL preference pairs)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write; - for stdout")],
    prompt_set: Annotated[str | None, typer.Option(help="only this prompt set")] = None,
    since: Annotated[str | None, typer.Option(help="only rankings created at or after (ISO date)")] = None,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="pairs in TRL's standard format (texts) or its conversational one (message lists); "
            "rankings always carry both",
        ),
    ] = ExportFormat.standard,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", help="only this project, by name or id (default: every project, as the API's export)"
        ),
    ] = None,
) -> None:
    """Export rankings or preference pairs as JSONL (streamed; the file appears complete or not at all)."""

    from app.db import session_scope
    from app.errors import AppError
    from app.exports import service

    try:
        with session_scope() as session:
            pid = None if project is None else project_id(session, project)
            if what == ExportKind.rankings:
                lines = service.rankings_export(session, prompt_set, since, project_id=pid)
            else:
                lines = service.pairs_export(session, prompt_set, since, format=format, project_id=pid)
    except AppError as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(2) from exc
    count = 0
    if str(output) == "-":
        for line in lines:
            sys.stdout.write(line)
            count += 1
    else:
        partial = output.with_name(output.name + ".part")
        with partial.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                count += 1
        partial.replace(output)
    err_console.print(f"wrote {count} {what.value} line(s) to {escape(str(output))}")


def main() -> None:
    from app.errors import AppError

    try:
        app()
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(2) from exc
