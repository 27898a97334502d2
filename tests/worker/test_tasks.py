"""worker.tasks: process-level set-up of the worker."""

from __future__ import annotations

import asyncio

import torch

from app.config import Settings
from worker.tasks import configure_torch_threads, supervise


def test_torch_threads_setting_sets_torchs_cpu_threads_and_zero_keeps_the_default():
    before = torch.get_num_threads()
    try:
        assert configure_torch_threads(1) == 1 == torch.get_num_threads()
        # 0 leaves whatever is in force alone.
        assert configure_torch_threads(0) == 1
    finally:
        torch.set_num_threads(before)


def test_torch_threads_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RANKLOOP_TORCH_THREADS", "3")
    assert Settings().torch_threads == 3
    monkeypatch.delenv("RANKLOOP_TORCH_THREADS")
    assert Settings().torch_threads == 0


class _Worker:
    """Stands in for procrastinate's Worker: the first run ends on its own (as when a side task fails),
    later ones run until stopped."""

    runs: list[_Worker] = []

    def __init__(self) -> None:
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        _Worker.runs.append(self)
        if len(_Worker.runs) > 1:
            await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


def test_a_worker_that_stops_on_its_own_is_started_again_until_the_process_stops() -> None:
    _Worker.runs = []

    async def scenario() -> None:
        current: dict[str, object] = {}
        stopping = asyncio.Event()
        task = asyncio.create_task(supervise(_Worker, "device", current, stopping, delay=0))
        while len(_Worker.runs) < 2:
            await asyncio.sleep(0.01)
        assert current["device"] is _Worker.runs[1] and not task.done()
        stopping.set()  # what the signal handler does: then stop the running worker
        _Worker.runs[1].stop()
        await asyncio.wait_for(task, 2)

    asyncio.run(scenario())
    assert len(_Worker.runs) == 2


def test_without_restart_a_worker_that_ran_out_of_jobs_ends() -> None:
    _Worker.runs = []
    asyncio.run(asyncio.wait_for(supervise(_Worker, "device", {}, asyncio.Event(), restart=False), 2))
    assert len(_Worker.runs) == 1
