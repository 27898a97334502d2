"""The job queue: procrastinate on the app's own Postgres (its schema comes with migration 0002).

Part of the training contract (app/training): import-light on purpose (no torch, no task code), so the web
app queues and cancels jobs with it and the worker registers its tasks on `app`. Jobs are queued with
`defer_in_transaction` on the caller's SQLAlchemy connection, so the `rounds` row and its job are
committed together or not at all. The worker opens the app with its own async pool (`rankloop worker`,
see worker/tasks.py, named here only as the import path procrastinate loads).

Queues: "train" (a training round up to the publication of its versions), "generate" (generation:
generation-only runs, and a training round's last stage, handed over once its versions are published, so a
worker on another host can take it), "maintenance" (periodic: auto rounds, retrying jobs of dead workers).
Every training job holds the lock TRAIN_LOCK, so however many workers run, at most one training round trains
at a time. A GPU host runs `rankloop worker --queues train`, others `--queues generate`; the default
worker takes both.
"""

from __future__ import annotations

from typing import Any

from procrastinate import App, PsycopgConnector, SyncPsycopgConnector
from procrastinate import manager as pq_manager
from procrastinate import tasks as pq_tasks
from sqlalchemy.orm import Session

from app.orm import Round, RoundKind

TRAIN_QUEUE = "train"
GENERATE_QUEUE = "generate"
MAINTENANCE_QUEUE = "maintenance"
DEVICE_QUEUES = (TRAIN_QUEUE, GENERATE_QUEUE)

TRAIN_LOCK = "rankloop-train"
# Serialises "is a round active? no: start one" between the API, the CLI and the auto-round scheduler
# (app/training/rounds.py takes it).
ROUND_START_LOCK_KEY = 0x72616E6B  # "rank"
# Serialises promotions (admin and auto-promote), so exactly one policy stays active.
PROMOTION_LOCK_KEY = 0x70726F6D  # "prom"

RUN_ROUND_TASK = "rankloop.run_round"
GENERATE_TASK = "rankloop.generate"

# The worker swaps in a connector with the real conninfo (the embedded server's URL is only known at run
# time); until then this connector only serves deferrals on an external connection, which need no pool.
app = App(connector=PsycopgConnector(), import_paths=["worker.tasks"])


def _raw_connection(session: Session) -> Any:
    """The psycopg connection under the session's current transaction."""
    return session.connection().connection.driver_connection


def defer_in_transaction(
    session: Session,
    task_name: str,
    *,
    queue: str,
    lock: str | None = None,
    queueing_lock: str | None = None,
    **task_kwargs: Any,
) -> int:
    """Queue a job inside the session's transaction; it becomes visible to workers on commit."""
    # A never-opened sync connector: with an external connection it needs no pool of its own, and it
    # works the same in the web app and inside a worker thread (where the app's connector is async).
    job_manager = pq_manager.JobManager(SyncPsycopgConnector())
    deferrer = pq_tasks.configure_task(
        name=task_name,
        job_manager=job_manager,
        queue=queue,
        lock=lock,
        queueing_lock=queueing_lock,
        connection=_raw_connection(session),
    )
    return deferrer.defer(**task_kwargs)


def request_job_abort(session: Session, job_id: int) -> bool:
    """Cancel a waiting job, or ask a running one to abort (inside the session's transaction)."""
    job_manager = pq_manager.JobManager(SyncPsycopgConnector())
    return job_manager.cancel_job_by_id(job_id, abort=True, connection=_raw_connection(session))


def job_status(session: Session, job_id: int) -> str | None:
    """The queue's status of a job (todo, doing, succeeded, failed, cancelled, aborted), or None."""
    job_manager = pq_manager.JobManager(SyncPsycopgConnector())
    try:
        return job_manager.get_job_status(job_id, connection=_raw_connection(session)).value
    except Exception:  # procrastinate raises NoResult for an unknown id
        return None


def enqueue_round(session: Session, round_: Round) -> int:
    """Queue the job that runs this (flushed or new) round; stores and returns the job id."""
    session.add(round_)
    session.flush()
    if round_.kind == RoundKind.train:
        job_id = defer_in_transaction(
            session, RUN_ROUND_TASK, queue=TRAIN_QUEUE, lock=TRAIN_LOCK, round_id=round_.id
        )
    else:
        job_id = defer_in_transaction(session, GENERATE_TASK, queue=GENERATE_QUEUE, round_id=round_.id)
    round_.job_id = job_id
    session.flush()
    return job_id


def enqueue_generation_stage(session: Session, round_: Round) -> int:
    """Hand a training round's generation stage to the generate queue: the round's job becomes this one."""
    job_id = defer_in_transaction(session, GENERATE_TASK, queue=GENERATE_QUEUE, round_id=round_.id)
    round_.job_id = job_id
    session.flush()
    return job_id
