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
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.load.clients import Stats, annotator, make_budget, pinger, run_phase
from bench.load.database import (
    analyze,
    check_database,
    count_queries,
    fresh_database,
    migrate_and_seed,
    reset_statement_stats,
    top_statements,
)
from bench.load.server import SERVER_LOG, CpuMeter, CpuSample, free_port, running_server, start_py_spy

# ---------------------------------------------------------------- report


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
