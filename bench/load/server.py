"""The server under load: `uvicorn app.asgi:app` with W workers on a free port, the CPU it, this client and
Postgres use over a phase, and an optional py-spy profile of it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
SERVER_LOG = Path(tempfile.gettempdir()) / "rankloop-bench-server.log"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(url: str, workers: int, port: int, extra_env: dict[str, str]) -> Iterator[psutil.Process]:
    """`uvicorn app.asgi:app` with W worker processes; waits for /healthz."""
    data_dir = Path(tempfile.mkdtemp(prefix="rankloop-bench-data-"))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "RANKLOOP_BENCH_ENDPOINTS": "1",
        "RANKLOOP_SECRET_KEY": secrets.token_urlsafe(32),
        "RANKLOOP_DATA_DIR": str(data_dir),
        **extra_env,
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    # The server's own log (warnings, tracebacks) goes to a file, printed in part if anything failed.
    log = open(SERVER_LOG, "wb")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not become healthy in 60 s")
            time.sleep(0.2)
        parent = psutil.Process(proc.pid)
        # With --workers the children must all be up, or the first seconds measure process start-up.
        while workers > 1 and len(parent.children()) < workers:
            time.sleep(0.1)
        yield parent
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def start_py_spy(server: psutil.Process, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every server process (the profile costs the server some CPU itself)."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(server.pid), "--subprocesses", "--rate", "100", "--gil"]
    cmd += ["--format", "raw", "--nonblocking", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


@dataclass
class CpuSample:
    client: float
    server: float
    postgres: float | None
    wall: float


def _cpu(procs: list[psutil.Process], reaped: bool = False) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
            if reaped:
                # Backends that exited (a pool dropping overflow connections) count in their parent.
                total += t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


class CpuMeter:
    """CPU seconds used by this client, the uvicorn processes and the Postgres backends over a phase."""

    def __init__(self, server: psutil.Process, postmaster_pid: int | None) -> None:
        self.server = server
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None

    def _procs(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        server = [self.server, *self.server.children(recursive=True)]
        pg = [self.postmaster, *self.postmaster.children(recursive=True)] if self.postmaster else []
        return server, pg

    def sample(self) -> tuple[dict[int, float], dict[int, float], float, float]:
        server, pg = self._procs()
        own = psutil.Process()
        t = own.cpu_times()
        return (
            {p.pid: _cpu([p]) for p in server},
            {p.pid: _cpu([p], reaped=p is pg[0]) for p in pg},
            t.user + t.system,
            time.perf_counter(),
        )

    @staticmethod
    def delta(a: tuple[Any, ...], b: tuple[Any, ...], has_pg: bool) -> CpuSample:
        # Processes born during the phase (new backends) count from zero.
        server = sum(v - a[0].get(pid, 0.0) for pid, v in b[0].items())
        pg = sum(v - a[1].get(pid, 0.0) for pid, v in b[1].items())
        return CpuSample(client=b[2] - a[2], server=server, postgres=pg if has_pg else None, wall=b[3] - a[3])
