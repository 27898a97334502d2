"""`rankloop demo`: migrate, seed, then serve the app with the worker beside it, and tidy up on exit.

What it prints is meant for an 80-column terminal: every line fits as written (rich never has to wrap
one mid-phrase), uvicorn's request log is off and its warnings go through the same console as the
progress bar, so nothing is written across the bar. When it started the embedded PostgreSQL it stops it
on exit; a server that was already running (another app, worker or shell) is left running.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.panel import Panel

if TYPE_CHECKING:
    from app.config import Settings
    from app.demo.seed import SeedResult

console = Console()


def register(app: typer.Typer) -> None:
    """Add `demo` to the main `rankloop` app."""
    app.command("demo")(demo)


def demo(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    serve_app: Annotated[bool, typer.Option("--serve/--no-serve", help="serve after seeding")] = True,
    with_worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run the training worker beside the app")
    ] = True,
) -> None:
    """Migrate, seed Open-Assistant prompts and demo logins (first run only), then serve app and worker."""
    from app import embedded_db
    from app.config import get_settings

    settings = get_settings()
    # Only a server this command starts is stopped at the end: one already running has other users.
    owns_database = not settings.database_url and not embedded_db.status(settings).running
    try:
        _run(settings, host, port, serve_app, with_worker)
    finally:
        if owns_database and embedded_db.stop(settings):
            console.print("Stopped the embedded PostgreSQL the demo started.")


def _run(settings: Settings, host: str, port: int, serve_app: bool, with_worker: bool) -> None:
    from app.db import session_scope
    from app.demo import seed as demo_seed
    from app.migrate import upgrade

    upgrade()
    with session_scope() as session:
        result = demo_seed.seed(session, settings)
    print_intro(console, result, f"http://{host}:{port}/", settings, with_worker)
    if not serve_app:
        return
    worker_proc = _start_worker(settings) if with_worker else None
    try:
        serve(console, host, port, first_round=first_generation() if with_worker else None)
    finally:
        if worker_proc is not None:
            # A job cut short is requeued (SIGTERM) or retried by the stalled-job sweep (SIGKILL).
            worker_proc.terminate()
            try:
                worker_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker_proc.kill()


def print_intro(
    out: Console, result: SeedResult, address: str, settings: Settings, with_worker: bool
) -> None:
    """What was seeded, the address and the logins; each line short enough for 80 columns."""
    from app.demo.seed import DEMO_PROMPT_SET

    if result.seeded and result.summary is not None:
        s = result.summary
        out.print(f"Seeded prompt set [bold]{DEMO_PROMPT_SET}[/bold]: {s.prompts} prompts,")
        out.print(f"{s.candidates} candidates, {s.sets} comparison sets waiting for annotators.")
    else:
        out.print(f"Demo data already seeded (prompt set [bold]{DEMO_PROMPT_SET}[/bold]).")

    lines = [f"rankloop is at [bold]{escape(address)}[/bold]", ""]
    path = escape(str(result.credentials_path))
    if result.credentials:
        lines += ["Demo logins (shown only now; also saved, readable only by you, in", f"{path}):"]
        lines += [
            f"  [bold]{escape(c.username)}[/bold] ({c.role}) password [bold]{escape(c.password)}[/bold]"
            for c in result.credentials
        ]
    elif result.credentials_path.exists():
        lines += ["Demo logins: see", path]
    else:
        lines += ["Demo logins were printed on the first run;", "create more with `rankloop users add`."]
    if with_worker:
        lines += ["", "Worker log:", escape(str(settings.data_dir.resolve() / "worker.log"))]
    out.print(Panel("\n".join(lines), title="rankloop demo", expand=False))


def first_generation() -> int | None:
    """On the first start, queue candidates from the default model for the demo's model prompts (beside the
    people's replies to them)."""
    from app.config import get_settings
    from app.db import session_scope
    from app.demo import seed as demo_seed
    from app.orm import ACTIVE_ROUND_STATUSES
    from app.training import rounds
    from app.training import service as training_service

    with session_scope() as session:
        earlier = [r for r in training_service.list_rounds(session, limit=1000) if r.trigger == "demo"]
        if earlier:
            # Follow it again if an earlier demo was stopped before the worker finished it.
            active = [r.id for r in earlier if r.status in ACTIVE_ROUND_STATUSES]
            return active[0] if active else None
        row = rounds.start_generation(
            session,
            get_settings(),
            demo_seed.first_generation(session),
            requested_by_id=None,
            trigger="demo",
        )
        return row.id


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The worker as a child process (its own interpreter: torch stays out of the web server)."""
    log_path = settings.data_dir.resolve() / "worker.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed when we exit
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], stdout=log, stderr=subprocess.STDOUT)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(out: Console, host: str, port: int, first_round: int | None) -> None:
    """Serve in a thread so the main thread can draw the first generation's progress bar."""
    import uvicorn

    from app.training.cli import follow

    # No request log (it would be written across the progress bar, and says nothing a demo user needs);
    # uvicorn's warnings and errors are printed by `out`, which puts them above the bar.
    config = uvicorn.Config(
        "app.asgi:app", host=host, port=port, proxy_headers=False, access_log=False, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    # SIGTERM (a service manager, `timeout`) takes the same path as Ctrl+C, so the worker is stopped too.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with _logs_through(out):
        thread.start()
        try:
            out.print("Serving; press Ctrl+C to stop.")
            if first_round is not None:
                out.print("Generating the first model candidates with the default model")
                out.print("(the worker log has the details):")
                follow(first_round, out=out)
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            server.should_exit = True
            thread.join(10)


@contextmanager
def _logs_through(out: Console) -> Iterator[None]:
    """Print uvicorn's and the app's warnings with `out` while serving (a live bar stays intact)."""
    handler = RichHandler(console=out, show_time=False, show_path=False, markup=False)
    saved = []
    for name in ("uvicorn", "app"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers, logger.level, logger.propagate))
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
