"""Loop latency: from `POST /api/v1/rounds` to the new policy's candidates served by `GET /api/v1/tasks/next`.

Seeds a fresh database the way a team would (`rankloop db upgrade`, `rankloop import ... --kind oasst` of the
demo's Open-Assistant file, whose ranked groups become rankings, `rankloop users add/token`), starts
`rankloop serve` and `rankloop worker`, queues a round with the default config (plus `--set key=value`
overrides) and polls `GET /api/v1/rounds/{id}` every second. It prints every stage with its wall time, the
seconds until it first showed step/total and an ETA, its step count and the load average; then it asks
`GET /api/v1/tasks/next` (skipping other sets) until a set holding the new policy's candidates is served.

    PYTHONPATH=. .venv/bin/python bench/latency/run.py [--set key=value ...] [--model-cache .rankloop/models]

Needs a PostgreSQL server to create the database in (`--admin-url`, default the local one at
127.0.0.1:5432). The model cache of an earlier run is linked in, so the GGUF conversion is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
OASST = ROOT / "app" / "demo" / "data" / "oasst_en_100_trees.jsonl"
RANKLOOP = [sys.executable, "-m", "app"]


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="round config override key=value")
    ap.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--model-cache", default=str(ROOT / ".rankloop" / "models"))
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--timeout", type=float, default=4 * 3600)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    db_name = f"rankloop_latency_{secrets.token_hex(4)}"
    admin = create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = args.admin_url.rsplit("/", 1)[0] + "/" + db_name
    data_dir = Path(tempfile.mkdtemp(prefix="rankloop-latency-"))
    if Path(args.model_cache).is_dir():
        (data_dir / "models").symlink_to(Path(args.model_cache).resolve())
    env = {**os.environ, "DATABASE_URL": db_url, "RANKLOOP_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}

    def cli(*argv: str) -> str:
        return subprocess.run([*RANKLOOP, *argv], env=env, check=True, capture_output=True, text=True).stdout

    print(f"database {db_name}, data dir {data_dir} | load {load()}", flush=True)
    cli("db", "upgrade")
    print(cli("import", str(OASST), "--kind", "oasst").strip())
    for name, role in (("boss", "admin"), ("ann", "annotator")):
        cli("users", "add", name, "--role", role, "--password", secrets.token_urlsafe(12))
    boss = {"Authorization": f"Bearer {cli('users', 'token', 'boss').strip()}"}
    ann = {"Authorization": f"Bearer {cli('users', 'token', 'ann').strip()}"}

    procs = [
        subprocess.Popen(
            [*RANKLOOP, "serve", "--port", str(args.port)],
            env=env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*RANKLOOP, "worker"], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        ),
    ]
    figures: dict[str, Any] = {"config_overrides": args.set, "load_start": load()}
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=60)
        for _ in range(120):
            try:
                if http.get("/healthz").status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        overrides = dict(item.split("=", 1) for item in args.set)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(procs[1].pid)
        resp = http.post("/api/v1/rounds", json={"config": overrides}, headers=boss)
        resp.raise_for_status()
        round_id = resp.json()["id"]
        stages: list[dict[str, Any]] = []
        detail: dict[str, Any] = {}
        while time.monotonic() - t0 < args.timeout:
            detail = http.get(f"/api/v1/rounds/{round_id}", headers=boss).json()
            now = round(time.monotonic() - t0, 1)
            stage = detail.get("stage") or detail["status"]
            if not stages or stages[-1]["stage"] != stage:
                if stages:
                    print(_stage_line(stages[-1]), flush=True)
                stages.append({"stage": stage, "start": now, "first_total": None, "first_eta": None})
            cur = stages[-1]
            prog = detail.get("progress") or {}
            cur.update(end=now, step=prog.get("step"), total=prog.get("total"), load=load())
            if cur["first_total"] is None and prog.get("total"):
                cur["first_total"] = round(now - cur["start"], 1)
            if cur["first_eta"] is None and prog.get("eta_seconds") is not None:
                cur["first_eta"] = round(now - cur["start"], 1)
                cur["eta_at_first"] = round(prog["eta_seconds"])
            if detail["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(1)
        print(_stage_line(stages[-1]), flush=True)
        round_done = round(time.monotonic() - t0, 1)
        worker_cpu = round(cpu_seconds(procs[1].pid) - cpu0, 1)
        if detail["status"] != "succeeded":
            raise SystemExit(f"round {round_id} {detail['status']}: {detail.get('error')}")
        served = _serve_new(http, ann, db_url, detail["policy_version_id"])
        total = round(time.monotonic() - t0, 1)
        metrics = detail.get("metrics") or {}
        figures.update(
            round_id=round_id,
            stages=stages,
            round_seconds=round_done,
            served_seconds=total,
            skipped_before_new_set=served,
            worker_cpu_seconds=worker_cpu,
            reward_heldout_accuracy=(metrics.get("reward") or {}).get("heldout_accuracy"),
            reward_heldout_pairs=(metrics.get("reward") or {}).get("heldout_pairs"),
            reward=metrics.get("reward"),
            policy=metrics.get("policy"),
            winrate_vs_parent=metrics.get("winrate_vs_parent"),
            load_end=load(),
        )
        print(
            f"round {round_id}: succeeded after {round_done} s; new policy's set served at {total} s "
            f"({served} other sets skipped first); worker CPU {worker_cpu} s | load {load()}\n"
            f"reward held-out accuracy {figures['reward_heldout_accuracy']} on "
            f"{figures['reward_heldout_pairs']} pairs; reward {_brief(metrics.get('reward'))}; "
            f"policy {_brief(metrics.get('policy'))}",
            flush=True,
        )
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        admin.dispose()


def _stage_line(s: dict[str, Any]) -> str:
    return (
        f"  {s['stage']:<15} {s['end'] - s['start']:7.1f} s  step {s.get('step')}/{s.get('total')}  "
        f"total shown after {s['first_total']} s, ETA after {s['first_eta']} s "
        f"(first ETA {s.get('eta_at_first')} s) | load {s.get('load')}"
    )


def _brief(m: dict[str, Any] | None) -> str:
    keys = (
        "steps",
        "total_steps",
        "train_seconds",
        "seconds",
        "heldout_loss",
        "train_pairs",
        "heldout_pairs",
    )
    return json.dumps({k: m[k] for k in keys if m and k in m})


def _serve_new(http: httpx.Client, ann: dict[str, str], db_url: str, version_id: int) -> int:
    """Lease tasks until one shows the new policy's candidates; returns how many other sets were skipped."""
    engine = create_engine(db_url)
    try:
        for skipped in range(1000):
            resp = http.get("/api/v1/tasks/next", headers=ann)
            if resp.status_code == 204:
                raise SystemExit("no task served")
            task = resp.json()
            ids = [c["id"] for c in task["candidates"]]
            with engine.connect() as c:
                versions = set(
                    c.execute(
                        text("SELECT model_version_id FROM candidates WHERE id = ANY(:ids)"), {"ids": ids}
                    ).scalars()
                )
            if version_id in versions:
                return skipped
            http.post(
                f"/api/v1/tasks/{task['assignment_id']}/skip", json={"reason": "benchmark"}, headers=ann
            ).raise_for_status()
        raise SystemExit("the new policy's set was never served")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
