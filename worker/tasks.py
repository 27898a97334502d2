"""The worker's jobs, and `run_worker` behind `rankloop worker`.

- `run_round` (queue "train"): one training round, worker/pipeline.py, on the round's row, up to the
  publication of its versions, which queues its generation stage as a `generate` job.
- `generate` (queue "generate"): a generation-only round (new comparison sets from the active policy), or
  a training round's generation stage; it finishes the round.
- `schedule_auto_round` (periodic, queue "maintenance"): starts a round once enough new rankings arrived.
- `promote_ready` (periodic, queue "maintenance"): a policy waiting for the promotion gate becomes active
  once people prefer it to the active one (app.training.rounds.promote_ready).
- `retry_stalled_jobs` (periodic, queue "maintenance"): a job whose worker died (killed, machine lost) goes
  back to the queue; the round then runs again (attempts + 1) or fails once it has used its attempts.

The ML code (torch) is imported inside the jobs, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback
from collections.abc import Callable
from typing import Any

from procrastinate import JobContext, RetryDecision, exceptions
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy

from app.config import get_settings
from app.training.queue import (
    DEVICE_QUEUES,
    GENERATE_QUEUE,
    GENERATE_TASK,
    MAINTENANCE_QUEUE,
    RUN_ROUND_TASK,
    TRAIN_QUEUE,
    app,
)
from worker import rounds
from worker.progress import Cancelled, Interrupted

log = logging.getLogger(__name__)

# What the training job returns once the round's generation stage waits on the generate queue.
HANDED_OVER = "generation queued"


class RetryAfterShutdown(BaseRetryStrategy):
    """Back to the queue only when the worker was shutting down; real failures are final."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, Interrupted):
            return RetryDecision(retry_in={"seconds": 0})
        return None


def _abort_reason(context: JobContext) -> str | None:
    reason = context.abort_reason()
    if reason is None:
        return None
    return "shutdown" if reason == AbortReason.SHUTDOWN else "user"


def run_round_job(round_id: int, job_id: int | None, context: JobContext | None = None) -> str:
    """Claim the round, run its pipeline with live progress, and record how it ended."""
    from app.db import session_factory
    from app.training.config import ConfigError
    from worker import pipeline
    from worker.progress import ProgressReporter

    settings = get_settings()
    sessions = session_factory()
    claim = rounds.claim(sessions, round_id, job_id, settings)
    if claim is None:
        return "nothing to do"
    should_abort = (lambda: _abort_reason(context)) if context is not None else None
    try:
        with ProgressReporter(
            round_id, sessions, interval=settings.progress_interval_seconds, should_abort=should_abort
        ) as progress:
            metrics: dict[str, Any] | None
            if claim.kind == "generate":
                metrics = pipeline.run_generation_round(claim, progress, sessions, settings)
            else:
                metrics = pipeline.run_training_round(claim, progress, sessions, settings)
            if metrics is None:
                return HANDED_OVER
    except Cancelled:
        rounds.cancelled(sessions, round_id)
        raise exceptions.JobAborted("round cancelled") from None
    except Interrupted:
        rounds.requeue(sessions, round_id)
        raise
    except ConfigError as exc:
        rounds.fail(sessions, round_id, f"bad config: {exc}")
        raise
    except Exception as exc:
        tail = "".join(traceback.format_exception_only(exc)).strip()
        rounds.fail(sessions, round_id, tail)
        raise
    rounds.finish(sessions, round_id, metrics)
    return "succeeded"


@app.task(name=RUN_ROUND_TASK, queue=TRAIN_QUEUE, pass_context=True, retry=RetryAfterShutdown())
def run_round(context: JobContext, round_id: int) -> str:
    return run_round_job(round_id, context.job.id, context)


@app.task(name=GENERATE_TASK, queue=GENERATE_QUEUE, pass_context=True, retry=RetryAfterShutdown())
def generate(context: JobContext, round_id: int) -> str:
    return run_round_job(round_id, context.job.id, context)


@app.periodic(cron="* * * * * */30", periodic_id="auto-round")
@app.task(name="rankloop.schedule_auto_round", queue=MAINTENANCE_QUEUE, queueing_lock="auto-round")
def schedule_auto_round(timestamp: int) -> str:
    from app.db import session_scope
    from worker import scheduler

    with session_scope() as session:
        round_id = scheduler.maybe_start_auto_round(session, get_settings())
    return f"started round {round_id}" if round_id else "no round needed"


@app.periodic(cron="* * * * * */30", periodic_id="promote-ready")
@app.task(name="rankloop.promote_ready", queue=MAINTENANCE_QUEUE, queueing_lock="promote-ready")
def promote_ready(timestamp: int) -> str:
    from app.db import session_scope
    from worker import scheduler

    with session_scope() as session:
        promoted = scheduler.promote_ready_policy(session, get_settings())
    return f"promoted policy version {promoted}" if promoted else "no policy ready"


# The sixth cron field is seconds.
@app.periodic(cron="* * * * * */5", periodic_id="retry-stalled")
@app.task(name="rankloop.retry_stalled_jobs", queue=MAINTENANCE_QUEUE, queueing_lock="retry-stalled")
async def retry_stalled_jobs(timestamp: int) -> str:
    settings = get_settings()
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=settings.worker_stalled_seconds)
    retried = []
    for job in stalled:
        await app.job_manager.retry_job(job)
        retried.append(job.id)
        log.warning("job %s (%s) belonged to a dead worker; queued again", job.id, job.task_name)
    from worker import scheduler

    closed = await asyncio.to_thread(scheduler.close_orphaned_rounds)
    return f"retried jobs {retried}, closed rounds {closed}"


async def supervise(
    make: Callable[[], Any],
    name: str,
    current: dict[str, Any],
    stopping: asyncio.Event,
    *,
    restart: bool = True,
    delay: float = 5.0,
) -> None:
    """Run the procrastinate worker `make()` builds (kept in `current[name]`, for the signal handler to
    stop); when it stops on its own, start a fresh one after `delay` seconds, until `stopping` is set.

    Procrastinate stops a worker whose side task failed, e.g. its periodic deferrer finding no pool
    connection within 30 s on a thrashing machine. Its running job goes back to the queue, but the process
    lived on with only the maintenance worker: nothing consumed the device queues again, and the round
    waited for ever (seen in bench/loop). Without `restart` (`--once`), a worker that ran out of jobs ends.
    """
    while True:
        worker = make()
        current[name] = worker
        await worker.run()
        if stopping.is_set() or not restart:
            return
        log.error("the %s worker stopped on its own (see the error above); starting it again", name)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return
        except TimeoutError:
            continue


def configure_torch_threads(threads: int) -> int:
    """Set torch's intra-op CPU threads for this process (0 = leave torch's default); returns the count.

    The setting exists because torch's OpenMP threads spin-wait: with other busy processes on the same cores
    a batch-16 decoding step of the default model took 1.25 s on 2 threads and 0.19 s on 1
    (bench/RESULTS.md).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)
    return int(torch.get_num_threads())


def run_worker(
    *,
    queues: list[str] | None = None,
    concurrency: int = 1,
    maintenance: bool = True,
    wait: bool = True,
) -> None:
    """Run the device worker (train + generate, `concurrency` jobs at a time) and the maintenance worker."""
    asyncio.run(_run_workers(queues or list(DEVICE_QUEUES), concurrency, maintenance, wait))


async def _run_workers(queues: list[str], concurrency: int, maintenance: bool, wait: bool) -> None:
    from procrastinate import PsycopgConnector
    from procrastinate.worker import Worker

    from app.db import database_url

    settings = get_settings()
    configure_torch_threads(settings.torch_threads)
    common: dict[str, Any] = {
        "wait": wait,
        # Signals are ours: one SIGTERM must stop both workers.
        "install_signal_handlers": False,
        "update_heartbeat_interval": settings.worker_heartbeat_seconds,
        "stalled_worker_timeout": settings.worker_stalled_seconds,
        "shutdown_graceful_timeout": 10.0,
    }
    connector = PsycopgConnector(conninfo=database_url(), min_size=1, max_size=6)
    with app.replace_connector(connector):
        async with app.open_async():
            app.perform_import_paths()
            makers: dict[str, Callable[[], Any]] = {
                "device": lambda: Worker(
                    app=app, queues=queues, concurrency=concurrency, name="device", **common
                )
            }
            if maintenance:
                makers["maintenance"] = lambda: Worker(
                    app=app,
                    queues=[MAINTENANCE_QUEUE],
                    concurrency=1,
                    name="maintenance",
                    delete_jobs="successful",
                    **common,
                )
            current: dict[str, Any] = {}
            stopping = asyncio.Event()

            def stop_all() -> None:
                stopping.set()
                for worker in current.values():
                    worker.stop()

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop_all)
            try:
                await asyncio.gather(
                    *(supervise(make, name, current, stopping, restart=wait) for name, make in makers.items())
                )
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
