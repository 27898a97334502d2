"""The load benchmark's yardstick: one committed Postgres insert through the same stack as every endpoint.

Mounted only when RANKLOOP_BENCH_ENDPOINTS=1 (it needs no login). Its table is not part of the schema:
bench/load/run.py creates it in the throwaway database it benchmarks, with `create_table()`.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Connection, text

from app.deps import DB

router = APIRouter(tags=["bench"], include_in_schema=False)

TABLE_DDL = text(
    "CREATE TABLE IF NOT EXISTS bench_pings ("
    " id bigserial PRIMARY KEY,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " note text NOT NULL)"
)
INSERT = text("INSERT INTO bench_pings (note) VALUES (:note) RETURNING id")


class PingOut(BaseModel):
    id: int


def create_table(conn: Connection) -> None:
    """Create the bench table (a normal, WAL-logged table: the same durability a ranking gets)."""
    conn.execute(TABLE_DDL)


@router.post("/_bench/insert", response_model=PingOut, status_code=201)
def bench_insert(db: DB) -> PingOut:
    # The same per-request session, commit-before-response and JSON response as the real endpoints.
    return PingOut(id=db.execute(INSERT, {"note": "ping"}).scalar_one())
