"""Engine and sessions: a real PostgreSQL, either DATABASE_URL or an embedded server in the data dir."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Mapper, Session, sessionmaker
from sqlalchemy.orm.attributes import instance_state

from app.config import Settings, get_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None


# The largest value of a PostgreSQL `integer` (every id column). Python's ints are unbounded, and psycopg
# sends a larger one as `bigint`: a plain comparison copes (no row), but a call to one of our plpgsql
# functions with `integer` parameters then has no matching signature and fails (a 500, not a 404).
MAX_INTEGER = 2**31 - 1


def sqlalchemy_url(url: str) -> str:
    """Accept the plain postgresql:// form users write and pick the psycopg 3 driver."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return urlunsplit(("postgresql+psycopg", *parts[1:]))
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {scheme!r}")


def libpq_url(url: str) -> str:
    """The same URL without the SQLAlchemy driver suffix, for psycopg and procrastinate."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


def database_url(settings: Settings | None = None) -> str:
    """The libpq URL of the database this process uses, starting the embedded server if needed."""
    settings = settings or get_settings()
    if settings.database_url:
        return libpq_url(settings.database_url)
    from app import embedded_db

    return embedded_db.start(settings)


def get_engine() -> Engine:
    global _engine, _sessionmaker
    with _lock:
        if _engine is None:
            settings = get_settings()
            _engine = create_engine(
                sqlalchemy_url(database_url(settings)),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                # No pool_pre_ping (a round trip per request, about a tenth of a short request's CPU): a
                # connection the server closed is found at checkout without one (_drop_if_closed), and
                # one that fails in use invalidates the pool (SQLAlchemy's optimistic disconnect
                # handling), so the next checkouts reconnect.
                # A database host that does not answer fails a request in seconds instead of hanging it.
                connect_args={"connect_timeout": 5},
            )
            event.listen(_engine, "checkout", _drop_if_closed)
            _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
        return _engine


def _drop_if_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """At checkout: replace a pooled connection that the server has closed, without a round trip.

    An idle connection in the pool has nothing to read; a readable socket means the server said goodbye
    (a restart, pg_terminate_backend, an idle timeout: it sends a FATAL message and closes). Raising
    DisconnectionError makes the pool discard it and hand out a fresh connection instead. A socket that
    merely hangs (a host gone without closing) is found by the first statement, as a pre-ping would.
    """
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        closed = bool(poller.poll(0))
    except Exception as exc:  # a connection psycopg already knows is closed has no socket left
        raise DisconnectionError("the pooled connection is closed") from exc
    if closed:
        raise DisconnectionError("the server closed the pooled connection")


def reset_engine() -> None:
    """Forget the engine (tests switch databases; forked processes must not share sockets)."""
    global _engine, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _sessionmaker = None


def session_factory() -> sessionmaker[Session]:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for CLI commands and the worker: commit on success, roll back on error."""
    session = session_factory()()
    try:
        yield session
    except BaseException:
        end_session(session, commit=False)
        raise
    end_session(session, commit=True)


def end_session(session: Session, commit: bool) -> None:
    """The one rule for ending a unit of work: commit (or roll back), then always close.

    A failed commit leaves nothing behind: closing returns the connection with its transaction rolled back.
    """
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def ping(session: Session) -> bool:
    """One round trip to the database (True); raises SQLAlchemyError when it does not answer."""
    session.execute(text("SELECT 1"))
    return True


def first_row(
    session: Session, statement: str, params: dict[str, Any], whole_unit: bool = False
) -> tuple[Any, ...] | None:
    """The first row of a plain SQL statement (psycopg's `%(name)s` parameters), run on the session's
    connection, in its transaction, through the driver's own cursor; None if it returns no row.

    For the hot path's one-call statements: SQLAlchemy's result set-up (column metadata, per statement)
    cost about 60 µs of CPU each, a third of such a call. What stays as with Session.execute: the
    statement events fire (tests count statements with them), and a driver error arrives as SQLAlchemy's
    (DataError, OperationalError...), a lost connection invalidated, through the connection's own handler.

    `whole_unit`: the statement is a complete unit of work on its own (a database function doing all of
    a hand-out or a submission, atomically). If the session has not started a transaction on the server
    yet, it then runs as its own transaction, committed when it ends: the BEGIN and COMMIT round trips of
    a request that does nothing else are saved (the session's commit finds nothing to do). Statements the
    session runs after it start a new transaction, so they must not rely on its locks.
    """
    conn = session.connection()
    dbapi = cast(psycopg.Connection[Any], conn.connection.dbapi_connection)
    alone = whole_unit and dbapi.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    cursor = dbapi.cursor()
    try:
        for before in conn.dispatch.before_cursor_execute:
            before(conn, cursor, statement, params, None, False)
        if alone:
            dbapi.autocommit = True
        try:
            cursor.execute(statement, params)
            row = cursor.fetchone()
        finally:
            if alone:
                _end_autocommit(conn, dbapi)
        for after in conn.dispatch.after_cursor_execute:
            after(conn, cursor, statement, params, None, False)
    except Exception as exc:
        conn._handle_dbapi_exception(exc, statement, params, cast(Any, cursor), None)  # raises
        raise  # not reached
    finally:
        cursor.close()
    return tuple(row) if row is not None else None


def _end_autocommit(conn: Connection, dbapi: psycopg.Connection[Any]) -> None:
    # A pooled connection left in autocommit would make every later session's statements commit one by
    # one: one that cannot be switched back (a lost connection) is not reused.
    try:
        dbapi.autocommit = False
    except Exception:
        conn.invalidate()
        raise


def persistent(session: Session, mapper: Mapper[Any], values: Mapping[str, Any]) -> Any:
    """A new object of the mapper's class with these column values (`id`, its primary key, among them),
    added to the session as if a query had loaded it: committed values, no history, other attributes
    loaded on access.

    What `make_transient_to_detached(cls(**values))` and `session.add` do, without the constructor's
    instrumented attribute sets, about half of that cost (hot-path requests make one or two such objects).
    """
    obj = mapper.class_manager.new_instance()
    state = instance_state(obj)
    state.dict.update(values)
    state.key = mapper.identity_key_from_primary_key((values["id"],))
    session.add(obj)
    if len(values) < len(mapper.column_attrs):  # columns not given load when first read
        session.expire(obj, [prop.key for prop in mapper.column_attrs if prop.key not in values])
    return obj
