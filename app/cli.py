"""The `rankloop` command line: the composition root, the one place in app/ that imports worker/."""

from __future__ import annotations

import enum
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from app.orm import Role
from app.prompts.schemas import ImportKind
from app.training import cli as training_cli
from worker import cli as worker_cli

if TYPE_CHECKING:
    from app.config import Settings

app = typer.Typer(help="rankloop: rank LLM completions and close the RLHF loop.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Accounts and API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
training_cli.register(app)  # round, generate, import-demonstrations
worker_cli.register(app)  # worker, eval-rm
console = Console()
err_console = Console(stderr=True)


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
    # Proxy headers are the app's to read (RANKLOOP_TRUSTED_PROXIES): uvicorn's default trusts any client
    # on 127.0.0.1, so anyone on the host could claim any address and dodge the login throttle.
    uvicorn.run("app.asgi:app", host=host, port=port, workers=workers, proxy_headers=False)


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


class ExportKind(enum.StrEnum):
    rankings = "rankings"
    pairs = "pairs"


@app.command("import")
def import_data(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSONL or CSV")],
    kind: Annotated[ImportKind, typer.Option(help="what the file holds (oasst: Open-Assistant trees)")],
    prompt_set: Annotated[
        str | None, typer.Option(help='prompt set to import into, created if missing (default "imported")')
    ] = None,
) -> None:
    """Import prompts, TRL preference pairs or ranked groups; a malformed line imports nothing."""
    from app.config import get_settings
    from app.db import session_scope
    from app.errors import AppError
    from app.prompts import service

    data = file.read_bytes()
    try:
        with session_scope() as session:
            summary = service.import_file(session, get_settings(), data, kind, prompt_set, file.name)
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
    ):
        table.add_row(label, str(getattr(summary, label)))
    console.print(table)


@app.command("export")
def export_data(
    what: Annotated[ExportKind, typer.Argument(help="rankings (raw JSONL) or pairs (TRL preference pairs)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write; - for stdout")],
    prompt_set: Annotated[str | None, typer.Option(help="only this prompt set")] = None,
    since: Annotated[str | None, typer.Option(help="only rankings created at or after (ISO date)")] = None,
) -> None:
    """Export rankings or preference pairs as JSONL (streamed; the file appears complete or not at all)."""
    import sys

    from app.db import session_scope
    from app.errors import AppError
    from app.exports import service

    try:
        with session_scope() as session:
            export = service.rankings_export if what == ExportKind.rankings else service.pairs_export
            lines = export(session, prompt_set, since)
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


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    serve_app: Annotated[bool, typer.Option("--serve/--no-serve", help="serve after seeding")] = True,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run the training worker beside the app")
    ] = True,
) -> None:
    """Migrate, seed Open-Assistant prompts and demo logins (first run only), then serve app and worker."""
    from app.config import get_settings
    from app.db import session_scope
    from app.demo import seed as demo_seed
    from app.migrate import upgrade

    settings = get_settings()
    upgrade()
    with session_scope() as session:
        result = demo_seed.seed(session, settings)
    if result.seeded and result.summary is not None:
        s = result.summary
        console.print(
            f"seeded prompt set [bold]{demo_seed.DEMO_PROMPT_SET}[/bold]: {s.prompts} prompts, "
            f"{s.candidates} candidates, {s.sets} open comparison sets"
        )
    else:
        console.print(f"demo data already seeded (prompt set [bold]{demo_seed.DEMO_PROMPT_SET}[/bold])")

    address = f"http://{host}:{port}/"
    lines = [f"rankloop is at [bold]{escape(address)}[/bold]", ""]
    if result.credentials:
        lines.append("Demo logins (shown only now; also saved, readable only by you, in")
        lines.append(f"{escape(str(result.credentials_path))}):")
        lines += [
            f"  [bold]{escape(c.username)}[/bold] ({c.role}) password [bold]{escape(c.password)}[/bold]"
            for c in result.credentials
        ]
    elif result.credentials_path.exists():
        lines.append(f"Demo logins: see {escape(str(result.credentials_path))}")
    else:
        lines.append("Demo logins were printed on the first run; create more with `rankloop users add`.")
    if with_worker:
        lines += ["", f"Worker log: {escape(str(settings.data_dir.resolve() / 'worker.log'))}"]
    console.print(Panel("\n".join(lines), title="rankloop demo", expand=False))
    if not serve_app:
        return
    worker_proc = _start_demo_worker(settings) if with_worker else None
    try:
        _serve_demo(host, port, first_round=_demo_generation() if with_worker else None)
    finally:
        if worker_proc is not None:
            # A job cut short is requeued (SIGTERM) or retried by the stalled-job sweep (SIGKILL).
            worker_proc.terminate()
            try:
                worker_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker_proc.kill()


def _demo_generation() -> int | None:
    """On the first start, queue candidates from the default model for the demo's model prompts."""
    from app.config import get_settings
    from app.db import session_scope
    from app.demo.seed import MODEL_PROMPTS
    from app.orm import ACTIVE_ROUND_STATUSES, RoundKind
    from app.training import rounds
    from app.training import service as training_service

    with session_scope() as session:
        earlier = [r for r in training_service.list_rounds(session, limit=1000) if r.trigger == "demo"]
        if earlier:
            # Follow it again if an earlier demo was stopped before the worker finished it.
            active = [r.id for r in earlier if r.status in ACTIVE_ROUND_STATUSES]
            return active[0] if active else None
        row = rounds.start_round(
            session,
            get_settings(),
            {"generate_prompts": MODEL_PROMPTS},
            requested_by_id=None,
            kind=RoundKind.generate,
            trigger="demo",
        )
        return row.id


def _start_demo_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The worker as a child process (its own interpreter: torch stays out of the web server)."""
    log_path = settings.data_dir.resolve() / "worker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed when we exit
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], stdout=log, stderr=subprocess.STDOUT)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_demo(host: str, port: int, first_round: int | None) -> None:
    """Serve in a thread so the main thread can draw the first generation's progress bar."""
    import threading

    import uvicorn

    from app.training.cli import follow

    server = uvicorn.Server(uvicorn.Config("app.asgi:app", host=host, port=port, proxy_headers=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    # SIGTERM (a service manager, `timeout`) takes the same path as Ctrl+C, so the worker is stopped too.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    thread.start()
    try:
        if first_round is not None:
            console.print(
                "Generating the first model candidates with the default model (worker log has details):"
            )
            follow(first_round)
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)


def main() -> None:
    from app.errors import AppError

    try:
        app()
    except AppError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(2) from exc
