"""worker.tasks: process-level set-up of the worker."""

from __future__ import annotations

import torch

from app.config import Settings
from worker.tasks import configure_torch_threads


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
