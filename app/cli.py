"""The `rankloop` command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from app.orm import Role

app = typer.Typer(help="rankloop: rank LLM completions and close the RLHF loop.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
console = Console()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (creates the embedded database on first use)."""
    from app.migrate import upgrade

    upgrade(revision)
    console.print(f"[green]database at {revision}[/green]")


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
    uvicorn.run("app.asgi:app", host=host, port=port, workers=workers, proxy_headers=True)


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[Role, typer.Option(help="annotator or admin")] = Role.annotator,
    password: Annotated[str | None, typer.Option(help="generated and printed when omitted")] = None,
) -> None:
    """Create a user."""
    from app.auth import service
    from app.db import session_scope

    with session_scope() as session:
        user, pw = service.create_user(session, name, role, password)
    console.print(f"created {role.value} [bold]{user.username}[/bold]")
    if password is None:
        console.print(f"password: [bold]{pw}[/bold]")


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


def main() -> None:
    from app.errors import AppError

    try:
        app()
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(2) from exc
