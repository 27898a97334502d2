"""Training stages on several processes (worker/launch.py): two CPU processes on gloo learn what one does.

The two-process tests start torchrun and two Python processes that import torch, transformers and TRL:
30-60 s each on a busy 2-core machine, hence `slow`.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.worker.conftest import marker_rankings
from tests.worker.test_policy_dpo import _cfg as dpo_cfg
from tests.worker.test_policy_dpo import marker_pairs
from worker import launch, reward
from worker.data import Ranking, per_process_batch
from worker.progress import Cancelled


def _reward_cfg(model: Path) -> reward.RewardConfig:
    # No dropout: the processes draw different masks than one process would, and the test compares losses.
    return reward.RewardConfig(
        base_model=str(model), lr=2e-3, epochs=2, batch_size=4, max_length=64, lora_dropout=0.0, device="cpu"
    )


def test_per_process_batch_splits_the_global_batch() -> None:
    assert per_process_batch(4, 1) == 4
    assert per_process_batch(4, 2) == 2
    assert per_process_batch(5, 2) == 3  # never a smaller global batch than asked for
    assert per_process_batch(1, 4) == 1


def test_a_launch_names_a_known_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        launch.run_stage("os.system", processes=2)


def test_progress_of_rank_0_is_relayed_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.touch()
    writer = launch.FileProgress(path)
    steps: list[tuple[int, int, float]] = []
    etas: list[tuple[int, int, float | None]] = []

    class Callback:
        def __call__(self, step: int, total: int, loss: float) -> None:
            steps.append((step, total, loss))

        def eta(self, step: int, total: int, seconds: float | None) -> None:
            etas.append((step, total, seconds))

    relay = launch._ProgressRelay(path, Callback())
    writer.eta(0, 10, None)
    writer(1, 10, 0.69)
    with path.open("a") as f:
        f.write('{"step": 2, "total": 10, "lo')  # a line still being written waits for the next pump
    relay.pump()
    assert etas == [(0, 10, None)] and steps == [(1, 10, 0.69)]
    with path.open("a") as f:
        f.write('ss": 0.5}\n')
    writer.eta(2, 10, 12.5)
    relay.pump()
    assert steps == [(1, 10, 0.69), (2, 10, 0.5)]
    assert etas == [(0, 10, None), (2, 10, 12.5)]
    relay.pump()  # nothing new, nothing replayed twice
    assert len(steps) == 2 and len(etas) == 2


def test_one_process_trains_in_this_process(tiny_llama: Path, tmp_path: Path) -> None:
    calls: list[int] = []
    result = launch.run_stage(
        "reward",
        _reward_cfg(tiny_llama),
        marker_rankings(12, seed=1),
        tmp_path / "rm",
        processes=1,
        progress=lambda step, total, loss: calls.append(step),
    )
    assert result.metrics["processes"] == 1
    assert calls == list(range(1, result.metrics["steps"] + 1))
    assert (tmp_path / "rm" / reward.REWARD_CONFIG_FILE).is_file()


@pytest.mark.slow
def test_reward_model_on_two_processes_matches_one(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(24, seed=0)
    results, progress = {}, {}
    for n in (1, 2):
        calls: list[tuple[int, int, float]] = []
        results[n] = launch.run_stage(
            "reward",
            _reward_cfg(tiny_llama),
            rankings,
            tmp_path / f"rm{n}",
            processes=n,
            progress=lambda step, total, loss, calls=calls: calls.append((step, total, loss)),
        )
        progress[n] = calls
    one, two = results[1].metrics, results[2].metrics
    assert (one["processes"], two["processes"]) == (1, 2)
    # The batch is the global one: the same steps, on the same rankings, with the same averaged gradients.
    assert two["steps"] == one["steps"] > 1 and two["best_step"] == one["best_step"]
    assert two["last_train_loss"] == pytest.approx(one["last_train_loss"], abs=1e-4)
    assert two["heldout_accuracy"] == pytest.approx(one["heldout_accuracy"], abs=1e-6)
    assert two["heldout_loss"] == pytest.approx(one["heldout_loss"], abs=1e-4)
    assert two["heldout_loss"] < two["initial_heldout_loss"]  # it learned something
    # Rank 0's progress reached this process, step by step; the losses are the reduced (global) ones.
    assert [c[0] for c in progress[2]] == [c[0] for c in progress[1]] == list(range(1, one["steps"] + 1))
    for (_, _, l1), (_, _, l2) in zip(progress[1], progress[2], strict=True):
        assert l2 == pytest.approx(l1, abs=1e-4)
    # Rank 0 wrote the model; it scores the held-out pairs as reported.
    rm = reward.load_reward_model(tmp_path / "rm2")
    evaluated = reward.evaluate_reward_model(rm, results[2].heldout_pairs)
    assert evaluated.accuracy == pytest.approx(two["heldout_accuracy"])


@pytest.mark.slow
def test_a_stage_started_in_a_child_process_matches_this_process(tiny_llama: Path, tmp_path: Path) -> None:
    rankings = marker_rankings(24, seed=0)
    here = launch.run_stage("reward", _reward_cfg(tiny_llama), rankings, tmp_path / "rm1", processes=1)
    child = launch.start_stage("reward", _reward_cfg(tiny_llama), rankings, tmp_path / "rm2", threads=1)
    assert child.running()  # it returned at once: the caller trains something else meanwhile
    time.sleep(1)
    steps: list[int] = []
    there = child.wait(lambda step, total, loss: steps.append(step))
    one, two = here.metrics, there.metrics
    assert two["steps"] == one["steps"] > 1 and two["best_step"] == one["best_step"]
    assert two["heldout_accuracy"] == pytest.approx(one["heldout_accuracy"], abs=1e-6)
    assert two["heldout_loss"] == pytest.approx(one["heldout_loss"], abs=1e-4)
    # Progress the child wrote before anyone waited is replayed, every step once.
    assert steps == list(range(1, one["steps"] + 1))
    assert (tmp_path / "rm2" / reward.REWARD_CONFIG_FILE).is_file()
    assert not child.job_dir.exists()


@pytest.mark.slow
def test_stopping_a_child_stage_kills_it_and_cleans_up(tiny_llama: Path, tmp_path: Path) -> None:
    child = launch.start_stage("reward", _reward_cfg(tiny_llama), marker_rankings(24), tmp_path / "rm")
    time.sleep(2)
    child.stop()
    assert child.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(child.proc.pid, 0)
    assert not child.job_dir.exists()
    child.stop()  # twice is harmless


@pytest.mark.slow
def test_dpo_on_two_processes_matches_one(tiny_llama: Path, tmp_path: Path) -> None:
    pairs = marker_pairs(24, seed=0)
    cfg = dpo_cfg(tiny_llama, lr=1e-3, epochs=2, lora_dropout=0.0)
    one = launch.run_stage("dpo", cfg, pairs, tmp_path / "p1", processes=1).metrics
    two = launch.run_stage("dpo", cfg, pairs, tmp_path / "p2", processes=2).metrics
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["steps"] == one["steps"] and two["train_pairs"] == one["train_pairs"]
    # Within noise: the evaluation pads and orders its batches differently on two processes.
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=5e-3)
    assert two["heldout_loss"] == pytest.approx(one["heldout_loss"], abs=5e-3)
    assert two["heldout_reward_accuracy"] == pytest.approx(one["heldout_reward_accuracy"], abs=0.2)
    assert math.isfinite(two["heldout_reward_margin"]) and two["heldout_reward_margin"] > 0
    assert (tmp_path / "p2" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_a_failing_launch_raises_with_its_output(tiny_llama: Path, tmp_path: Path) -> None:
    ties = [Ranking("a prompt", ["a", "b"], [[0, 1]])] * 6
    with pytest.raises(launch.LaunchFailed, match="no training pairs"):
        launch.run_stage("reward", _reward_cfg(tiny_llama), ties, tmp_path / "rm", processes=2)
    assert not (tmp_path / "rm").exists()


@pytest.mark.slow
def test_cancelling_the_round_stops_every_process(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(launch.subprocess, "Popen", recording_popen)
    checks = 0

    def check() -> None:
        nonlocal checks
        checks += 1
        if checks == 3:
            raise Cancelled("cancelled by an admin")

    with pytest.raises(Cancelled):
        launch.run_stage(
            "reward",
            _reward_cfg(tiny_llama),
            marker_rankings(24),
            tmp_path / "rm",
            processes=2,
            check=check,
            poll_seconds=0.2,
        )
    (proc,) = started
    assert proc.returncode is not None
    with pytest.raises(ProcessLookupError):  # torchrun and both ranks are gone: the whole group
        os.killpg(proc.pid, 0)
    assert not (tmp_path / "rm").exists()


def test_worker_refuses_more_gpus_than_it_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from typer.testing import CliRunner

    from app.cli import app as cli
    from app.config import get_settings

    monkeypatch.setenv("RANKLOOP_GPUS", "1")  # restored afterwards: the command writes the variable
    asked = torch.cuda.device_count() + 2  # at least 2: one GPU needs no check
    result = CliRunner().invoke(cli, ["worker", "--gpus", str(asked), "--once"])
    get_settings.cache_clear()
    assert result.exit_code != 0
    assert f"{asked} GPUs asked for, {asked - 2} visible" in result.output
