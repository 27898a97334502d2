"""What `rankloop demo` prints: lines that fit 80 columns as written, no warnings, no request log.

Runs the demo's own output functions (app/demo/cli.py) on the test database: the real seed, the real uvicorn
serving the app, and the progress bar of a generation run whose row a thread moves along (no model).
"""

from __future__ import annotations

import _thread
import datetime as dt
import io
import signal
import threading
import time

import httpx
import pytest
from rich.console import Console

from app.config import get_settings
from app.db import session_scope
from app.demo import cli as demo_cli
from app.demo import seed as demo_seed
from app.orm import Round, RoundKind, RoundStatus
from tests.live import free_port


def console(width: int) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, color_system=None, force_terminal=False), buffer


def test_the_intro_fits_80_columns_without_wrapping(clean_db):
    settings = get_settings()
    demo_seed.credentials_path(settings).unlink(missing_ok=True)
    with session_scope() as session:
        result = demo_seed.seed(session, settings)
    assert result.credentials
    narrow, narrow_out = console(80)
    wide, wide_out = console(400)
    for out in (narrow, wide):
        demo_cli.print_intro(out, result, "http://127.0.0.1:8000/", settings, with_worker=True)
    text = narrow_out.getvalue()
    # Had rich wrapped a line at 80 columns, the two renderings would differ.
    assert text == wide_out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Seeded prompt set oasst-demo" in text and "annotator (annotator) password" in text
    assert str(settings.data_dir.resolve() / "worker.log") in text


@pytest.mark.slow
def test_serving_draws_the_progress_bar_without_request_log_or_warnings(clean_db, capfd):
    with session_scope() as session:
        row = Round(
            kind=RoundKind.generate, status=RoundStatus.queued, trigger="demo", config={}, stage="queued"
        )
        session.add(row)
        session.flush()
        round_id = row.id
    port = free_port()
    out, buffer = console(80)
    answers: list[int] = []
    served = threading.Event()  # set once serve() has returned: then no Ctrl+C may reach the test run

    def visitor() -> None:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                try:
                    answers.append(httpx.get(f"{base}/healthz", timeout=5).status_code)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            answers.extend(
                httpx.get(f"{base}{path}", timeout=10).status_code for path in ("/login", "/missing")
            )
            for step in (1, 4, 8):
                _move(round_id, RoundStatus.running, "generate", step)
                time.sleep(1.2)
            _move(round_id, RoundStatus.succeeded, "done", 8)
            while "succeeded" not in buffer.getvalue() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            # Whatever happened above, stop serve(): a visitor that raised used to leave the suite hanging.
            if not served.is_set():
                _thread.interrupt_main()  # Ctrl+C

    thread = threading.Thread(target=visitor, daemon=True)
    previous = signal.getsignal(signal.SIGTERM)
    # The visitor's Ctrl+C must raise here, whatever SIGINT handler an earlier test left behind.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread.start()
    try:
        demo_cli.serve(out, "127.0.0.1", port, first_round=round_id)
    finally:
        served.set()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    thread.join(10)
    assert answers == [200, 200, 404]
    text = buffer.getvalue()
    assert f"generation job {round_id} succeeded" in text and "round" not in text.lower()
    assert max(len(line) for line in text.splitlines()) <= 80
    captured = capfd.readouterr()
    everything = text + captured.out + captured.err
    assert "GET /" not in everything and "HTTP/1.1" not in everything
    assert "warning" not in everything.lower(), everything


def _move(round_id: int, status: RoundStatus, stage: str, step: int) -> None:
    with session_scope() as session:
        row = session.get(Round, round_id)
        assert row is not None
        row.status, row.stage, row.step, row.total = status, stage, step, 8
        row.eta_seconds = 3.0 * (8 - step)
        if status == RoundStatus.succeeded:
            row.finished_at = dt.datetime.now(dt.UTC)
