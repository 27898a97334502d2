"""The training stages' thread hand-back: once the reward model's child process is done, SFT or the policy
continues on its threads too (worker/stages/train.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from worker.stages import train


class _Progress:
    def __init__(self) -> None:
        self.hook: Any = "unset"
        self.lines: list[str] = []

    def on_report(self, hook: Any) -> None:
        self.hook = hook

    def log(self, line: str) -> None:
        self.lines.append(line)


def test_the_threads_come_back_once_the_child_is_done() -> None:
    before = torch.get_num_threads()
    progress = _Progress()
    ctx: Any = SimpleNamespace(progress=progress)
    child: Any = SimpleNamespace(running=lambda: True)
    try:
        torch.set_num_threads(1)
        train._regain_threads(ctx, child, 2)
        assert torch.get_num_threads() == 1 and progress.hook == "unset" and not progress.lines
        child.running = lambda: False
        train._regain_threads(ctx, child, 2)
        assert torch.get_num_threads() == 2
        assert progress.hook is None  # asked once, then no more
        assert progress.lines == ["reward model done: continuing on 2 threads"]
    finally:
        torch.set_num_threads(before)
