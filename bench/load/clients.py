"""The load: simulated annotators (next task, submit a ranking, again) and the yardstick's pinger (one
committed insert per request), each on its own keep-alive connection, until a shared budget is spent.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx


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
