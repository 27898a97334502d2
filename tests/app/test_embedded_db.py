"""`rankloop db status|stop` and the demo's tidy exit, on a real embedded PostgreSQL in a fresh data dir.

Run as the real command line in subprocesses (each its own interpreter, as a user runs them), as root too:
pg_ctl refuses root, so stopping goes through the embedded package's own unprivileged user.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: that is private to root, and the server may run as another user.
    path = Path(tempfile.mkdtemp(prefix="rankloop-embedded-")) / "data"
    yield path
    rankloop(path, "db", "stop")
    shutil.rmtree(path.parent, ignore_errors=True)


def rankloop(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(RANKLOOP_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def running_pid(data_dir: Path) -> int:
    status = rankloop(data_dir, "db", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    match = re.search(r"running \(pid (\d+)", status.stdout)
    assert match, status.stdout
    return int(match.group(1))


def test_status_and_stop_report_and_stop_the_embedded_server_and_the_demo_stops_what_it_started(data_dir):
    first = rankloop(data_dir, "db", "status")
    assert first.returncode == 3 and "no embedded PostgreSQL yet" in first.stdout

    # The demo starts the server, so it stops it when it is done.
    demo = rankloop(data_dir, "demo", "--no-serve")
    assert demo.returncode == 0, demo.stderr
    assert "Stopped the embedded PostgreSQL the demo started" in demo.stdout
    stopped = rankloop(data_dir, "db", "status")
    assert stopped.returncode == 3 and "stopped" in stopped.stdout

    # A server something else started (here a migration) is left running by the demo.
    assert rankloop(data_dir, "db", "upgrade").returncode == 0
    pid = running_pid(data_dir)
    again = rankloop(data_dir, "demo", "--no-serve")
    assert again.returncode == 0 and "Stopped" not in again.stdout
    assert running_pid(data_dir) == pid

    stop = rankloop(data_dir, "db", "stop")
    assert stop.returncode == 0 and "stopped the embedded PostgreSQL" in stop.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert rankloop(data_dir, "db", "status").returncode == 3
    twice = rankloop(data_dir, "db", "stop")
    assert twice.returncode == 0 and "was not running" in twice.stdout
    # No warning on the way (the package's XDG_RUNTIME_DIR one included).
    for done in (first, demo, stopped, again, stop, twice):
        assert "Warning" not in done.stderr, done.stderr
