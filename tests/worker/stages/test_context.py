"""When a round splits its independent work with a child process (`parallel_stages`, stages/context.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from worker.stages import context


def _ctx(mode: str, *, threads: int = 0, gpus: int = 1, device: str = "auto") -> Any:
    settings = SimpleNamespace(parallel_stages=mode, torch_threads=threads, gpus=gpus)
    return SimpleNamespace(settings=settings, cfg=SimpleNamespace(device=device))


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):
    """A host with `cores` cores and a CUDA device or not."""
    import torch

    def make(cores: int, cuda: bool = False) -> None:
        monkeypatch.setattr(context.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

    return make


def test_auto_splits_a_cpu_hosts_threads_between_two_processes(host) -> None:
    host(2)
    assert context.parallel_threads(_ctx("auto")) == (1, 1)
    assert context.parallel_threads(_ctx("auto", threads=1)) == (1, 1)  # two processes, one core each
    host(16)
    assert context.parallel_threads(_ctx("auto")) == (8, 8)
    assert context.parallel_threads(_ctx("auto", threads=5)) == (2, 3)


def test_auto_keeps_one_process_on_one_core_on_a_gpu_and_with_data_parallel_training(host) -> None:
    host(1)
    assert context.parallel_threads(_ctx("auto")) is None
    host(8, cuda=True)
    assert context.parallel_threads(_ctx("auto")) is None
    assert context.parallel_threads(_ctx("auto", device="cpu")) == (4, 4)  # the round asked for the CPU
    host(8)
    assert context.parallel_threads(_ctx("auto", gpus=2)) is None


def test_on_and_off_override_the_host(host) -> None:
    host(1, cuda=True)
    assert context.parallel_threads(_ctx("on")) == (1, 1)
    host(8)
    assert context.parallel_threads(_ctx("off")) is None


def test_training_splits_only_when_told(host) -> None:
    host(2)
    assert context.parallel_threads(_ctx("auto"), auto=False) is None
    assert context.parallel_threads(_ctx("on"), auto=False) == (1, 1)
