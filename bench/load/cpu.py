"""Server CPU per next+submit cycle and per yardstick request, in one process, with an optional profile.

    .venv/bin/python bench/load/cpu.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

No HTTP and no concurrency: the route functions of `GET /api/v1/tasks/next` and `POST /api/v1/rankings`
are called in one thread with what the framework gives them (a session, the bearer token's user) and
committed, on a fresh database; the yardstick is the same with the bench endpoint's one insert. So the
figures are the CPU a cycle costs beyond the framework (FastAPI, uvicorn and the middleware, the same
for both), comparable between commits on a busy machine where bench/load/run.py's throughput is not.
With --profile, prints where a cycle spends its time (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"), required=False)
    ap.add_argument("--annotators", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=1500)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure in this many alternating rounds of cycles and yardstick requests and report the "
        "fastest (and the median): steadier on a busy machine",
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=45)
    args = ap.parse_args()
    if not args.database_url:
        ap.error("--database-url (an admin URL) or TEST_DATABASE_URL is required")

    import psycopg

    from bench.load.database import migrate_and_seed

    name = f"rankloop_prof_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(args.database_url)
    url = urlunsplit(("postgresql", parts.netloc, "/" + name, parts.query, ""))
    try:
        os.environ["DATABASE_URL"] = url
        os.environ["RANKLOOP_BENCH_ENDPOINTS"] = "1"
        tokens = migrate_and_seed(url, args.annotators, args.cycles * 2 // 2 + 400, 4, 2)
        return _measure(args, tokens)
    finally:
        from app.db import reset_engine

        reset_engine()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(args: argparse.Namespace, tokens: list[str]) -> int:
    from sqlalchemy import text

    from app.annotation.schemas import RankingIn
    from app.api import tasks
    from app.auth import service as auth_service
    from app.config import get_settings
    from app.db import end_session, reset_engine, session_factory

    get_settings.cache_clear()
    reset_engine()
    settings = get_settings()
    factory = session_factory()
    insert = text("INSERT INTO bench_pings (note) VALUES (:note) RETURNING id")

    def request(token: str, work):  # type: ignore[no-untyped-def]
        # What a request does between the framework and the answer: a session, the bearer token's user,
        # the route function (response model built), the commit.
        session = factory()
        try:
            user = auth_service.user_from_api_token(session, token) if token else None
            out = work(session, user)
        except BaseException:
            end_session(session, False)
            raise
        end_session(session, True)
        return out

    def cycle(i: int) -> None:
        token = tokens[i % len(tokens)]
        task = request(token, lambda s, u: tasks.next_task(s, settings, u, None))
        body = RankingIn(assignment_id=task.assignment_id, tiers=[[c.id] for c in task.candidates])
        request(token, lambda s, u: tasks.submit_ranking(body, _Response(), s, settings, u))

    def ping(_: int) -> None:
        request("", lambda s, u: s.execute(insert, {"note": "ping"}).scalar_one())

    def timed(fn, n: int) -> float:  # type: ignore[no-untyped-def]
        start = time.process_time()
        for i in range(n):
            fn(i)
        return (time.process_time() - start) / n * 1000

    for i in range(100):
        cycle(i)
        ping(i)
    n = args.cycles // 2
    if args.rounds > 1:
        # Other load on the machine (cache, memory bandwidth, a shared core) only ever adds CPU time:
        # the fastest of several short rounds is the steadiest figure, the median the typical one.
        size = max(1, n // args.rounds)
        rounds = [(timed(cycle, size), timed(ping, size)) for _ in range(args.rounds)]
        cycles = sorted(r[0] for r in rounds)
        pings = sorted(r[1] for r in rounds)
        cyc, yard = cycles[0], pings[0]
        print(
            f"{args.rounds} rounds of {size}: CPU per cycle min {cyc:.2f} / median "
            f"{cycles[len(cycles) // 2]:.2f} ms, per yardstick request min {yard:.2f} / median "
            f"{pings[len(pings) // 2]:.2f} ms"
        )
    else:
        cyc = timed(cycle, n)
        yard = timed(ping, n)
    print(
        f"CPU per cycle {cyc:.2f} ms, per yardstick request {yard:.2f} ms (route functions, sessions and "
        f"commits; no HTTP): a cycle = {cyc / yard:.2f} yardstick requests"
    )
    if args.profile:
        prof = cProfile.Profile(time.process_time)  # CPU, not waiting on Postgres
        prof.enable()
        for i in range(args.cycles - n - 100):
            cycle(i)
        prof.disable()
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
    return 0


class _Response:
    status_code = 201


if __name__ == "__main__":
    raise SystemExit(main())
