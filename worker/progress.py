"""Live progress of a worker job, written to its `rounds` row for the dashboard, the API and the CLI.

The training thread only updates an in-memory snapshot (cheap, called every optimiser step); a background
thread writes the snapshot to the row every `progress_interval_seconds`, along with `heartbeat_at`, even
while the training thread is stuck in a long step or loading a model. The same thread reads
`cancel_requested`; the training thread raises `Cancelled` at its next progress call after an admin asked.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.orm import Round

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
# Points per stage on the loss curve; older points are thinned out so the row stays small.
MAX_CURVE_POINTS_PER_STAGE = 200


class Cancelled(Exception):
    """An admin cancelled the round (or the queue asked the job to abort)."""


class Interrupted(Exception):
    """The worker is shutting down; the round should run again on the next worker."""


class ProgressReporter:
    """Progress of one round; use as a context manager so the writer thread stops with the job."""

    def __init__(
        self,
        round_id: int,
        sessions: sessionmaker[Session],
        *,
        interval: float = 2.0,
        should_abort: Callable[[], str | None] | None = None,
    ) -> None:
        self.round_id = round_id
        self._sessions = sessions
        self._interval = interval
        self._should_abort = should_abort
        self._lock = threading.Lock()
        # One write at a time, so a slower write of an older snapshot never lands after a newer one.
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cancel_seen = False
        self._stage = "starting"
        self._stage_started = time.monotonic()
        self._step = 0
        self._total = 0
        self._loss: float | None = None
        self._eta: float | None = None
        # Set once a trainer reports its own ETA (worker.data.WorkMeter): from then on the stage's ETA is the
        # trainer's, which counts evaluation passes, instead of elapsed / steps.
        self._eta_given = False
        self._curve: list[list[Any]] = []
        self._log: list[str] = []
        self._write_errors = 0
        self._handed_over = False
        self._hook: Callable[[], None] | None = None

    # --- lifecycle

    def __enter__(self) -> ProgressReporter:
        self._load_existing()
        self._thread = threading.Thread(target=self._run, name=f"progress-round-{self.round_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        # The final state must land even when the last interval had not elapsed yet.
        self._flush()

    def hand_over(self) -> None:
        """The round passes to another job (its generation stage, maybe on another host): write what is
        pending, then never again, so this job's last snapshot cannot overwrite the next job's progress."""
        self._flush()
        with self._flush_lock:
            self._handed_over = True
        self._stop.set()

    def _load_existing(self) -> None:
        # A retried round keeps its earlier log and curve: the admin sees what happened before the crash.
        with self._sessions() as session:
            row = session.get(Round, self.round_id)
            if row is not None:
                self._log = list(row.log_tail or [])[-LOG_TAIL_LINES:]
                self._curve = list(row.loss_curve or [])

    # --- called by the training thread

    def stage(self, name: str, total: int = 0) -> None:
        """Enter a stage: step counter reset, written at once."""
        self.check()
        with self._lock:
            self._stage = name
            self._stage_started = time.monotonic()
            self._step, self._total = 0, total
            self._loss, self._eta = None, None
            self._eta_given = False
        self.log(f"stage {name}")
        self._flush()

    def update(self, step: int, total: int, loss: float | None = None) -> None:
        """Progress inside the current stage (the ML functions' progress callback)."""
        with self._lock:
            self._step, self._total = int(step), int(total)
            if loss is not None and loss == loss:  # NaN is not JSON
                self._loss = float(loss)
                self._curve.append([self._stage, int(step), round(float(loss), 6)])
                self._thin_curve()
            elapsed = time.monotonic() - self._stage_started
            if step > 0 and total >= step and not self._eta_given:
                self._eta = elapsed / step * (total - step)
        self.check()

    def eta(self, step: int, total: int, seconds: float | None) -> None:
        """Step count and the trainer's own ETA, without a loss (before the first step, while evaluating)."""
        with self._lock:
            self._step, self._total = int(step), int(total)
            self._eta_given = True
            self._eta = None if seconds is None else max(0.0, float(seconds))
        self.check()

    def callback(self) -> StageCallback:
        """A `(step, total, loss)` callable for the ML functions, with an `eta` method for trainers that
        estimate their own (see worker.data.report_eta)."""
        return StageCallback(self)

    def log(self, message: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        log.info("round %s: %s", self.round_id, message)
        with self._lock:
            self._log.append(f"{stamp} {message}")
            del self._log[:-LOG_TAIL_LINES]

    def on_report(self, hook: Callable[[], None] | None) -> None:
        """Call `hook` in the training thread at every progress report from now on (None: stop). The
        round uses it to hand a finished child process's CPU threads back to this one mid-stage."""
        self._hook = hook

    def check(self) -> None:
        """Raise Cancelled/Interrupted if the round should stop now."""
        if self._hook is not None:
            self._hook()
        if self._cancel_seen:
            raise Cancelled("cancelled by an admin")
        if self._should_abort is not None:
            reason = self._should_abort()
            if reason == "shutdown":
                raise Interrupted("the worker is shutting down")
            if reason:
                raise Cancelled("the queue job was aborted")

    # --- writer thread

    def _thin_curve(self) -> None:
        stage_points = [p for p in self._curve if p[0] == self._stage]
        if len(stage_points) > MAX_CURVE_POINTS_PER_STAGE:
            keep = stage_points[::2]
            self._curve = [p for p in self._curve if p[0] != self._stage] + keep

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush()

    def _flush(self) -> None:
        with self._flush_lock:
            if not self._handed_over:
                self._write()

    def _write(self) -> None:
        with self._lock:
            values = {
                "stage": self._stage,
                "step": self._step,
                "total": self._total,
                "loss": self._loss,
                "eta_seconds": self._eta,
                "loss_curve": list(self._curve),
                "log_tail": list(self._log),
            }
        try:
            with self._sessions() as session, session.begin():
                session.execute(
                    update(Round)
                    .where(Round.id == self.round_id)
                    .values(**values, heartbeat_at=dt.datetime.now(dt.UTC))
                )
                cancel = session.execute(
                    select(Round.cancel_requested).where(Round.id == self.round_id)
                ).scalar_one_or_none()
            if cancel:
                self._cancel_seen = True
            self._write_errors = 0
        except Exception:  # the DB may blip; training goes on and the next beat retries
            self._write_errors += 1
            log.exception("round %s: progress write failed (%d in a row)", self.round_id, self._write_errors)


class StageCallback:
    """What `ProgressReporter.callback()` hands to a trainer: call it with (step, total, loss) after a step;
    `eta(step, total, seconds)` reports the trainer's own ETA at any time."""

    def __init__(self, reporter: ProgressReporter) -> None:
        self._reporter = reporter

    def __call__(self, step: int, total: int, loss: float) -> None:
        self._reporter.update(step, total, loss)

    def eta(self, step: int, total: int, seconds: float | None) -> None:
        self._reporter.eta(step, total, seconds)
