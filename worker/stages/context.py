"""What every stage gets (RoundContext) and the small helpers the stages share."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.training.config import RoundConfig
from worker.progress import ProgressReporter
from worker.rounds import Claim, merge_metrics
from worker.store import ModelStore


@dataclass
class RoundContext:
    """What every stage needs: the round, its config, where to write, how to report."""

    claim: Claim
    cfg: RoundConfig
    settings: Settings
    sessions: sessionmaker[Session]
    progress: ProgressReporter
    scratch: Path  # this attempt's working directory; deleted when the round ends
    started: float

    @property
    def round_id(self) -> int:
        return self.claim.round_id

    @property
    def project_id(self) -> int | None:
        return self.claim.project_id

    @property
    def overlap(self) -> int:
        """New sets want the project's overlap (the server's setting when the project states none)."""
        return self.claim.overlap or self.settings.overlap

    @property
    def version_prefix(self) -> str:
        return f"round{self.round_id}-"

    @property
    def store(self) -> ModelStore:
        """Where versions are published and read from (worker/store.py)."""
        return ModelStore.from_settings(self.settings)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def record(self, **metrics: Any) -> None:
        merge_metrics(self.sessions, self.round_id, metrics)


def parallel_threads(ctx: RoundContext, *, auto: bool = True) -> tuple[int, int] | None:
    """(this process's torch threads, a child process's) when independent work of the round may run in a
    child process beside this one (the `parallel_stages` setting, app/config.py), else None. `auto`:
    whether the work splits under "auto" (generation) or only when the setting says "on" (training, which
    measured slower split than on all threads in one process: bench/RESULTS.md)."""
    mode = ctx.settings.parallel_stages
    if mode == "off" or (mode == "auto" and not auto) or ctx.settings.gpus > 1:
        return None
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    on_cpu = ctx.cfg.device == "cpu" or not torch.cuda.is_available()
    if mode == "auto" and (not on_cpu or cores < 2):
        return None
    threads = ctx.settings.torch_threads or cores
    # Each process gets at least one thread: with the worker set to one, the two use two cores.
    return max(1, threads // 2), max(1, threads - threads // 2)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside the block (a child process has the rest)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timing(ctx: RoundContext) -> dict[str, Any]:
    from worker.models import pick_device

    return {"wall_seconds": round(time.monotonic() - ctx.started, 1), "device": str(pick_device().device)}


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def json_ready(metrics: dict[str, Any]) -> dict[str, Any]:
    """A trainer's metrics with NaN scores as null, ready for a JSON column."""
    return {k: num(v) if isinstance(v, float) else v for k, v in metrics.items()}


def num(value: float | None) -> float | None:
    """JSON has no NaN: an undefined score is null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
