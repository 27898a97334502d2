"""A training stage on several GPUs: the same trainer function, data-parallel under torchrun.

`run_stage("reward" | "dpo" | "sft", ...)` calls the trainer in this process when `processes <= 1`. With
more, it writes the call (arguments pickled) to a scratch directory and runs
`python -m torch.distributed.run --standalone --nproc_per_node N -m worker.launch DIR`: N processes, one per
GPU (accelerate's PartialState gives each the GPU of its LOCAL_RANK; on CPU they use the gloo backend).
The trainers (worker/reward.py, worker/policy_dpo.py, worker/sft.py) shard the data, all-reduce gradients
(DDP) and reduce their metrics; a round's batch size is the global one, split across the processes, so a
stage learns the same whatever N.

Only this, the worker's, process talks to the database: the ranks only train. Rank 0 writes the output
directory, appends its progress to `progress.jsonl` (relayed here to the round's progress reporter) and
pickles the trainer's result for this process to return. Cancelling the round (or stopping the worker)
stops the launch: the whole process group gets SIGTERM, then SIGKILL; the children also get SIGTERM when
this process dies (Linux).

`start_stage(...)` starts the same launch and returns at once (`Launch.wait` gets the result): the worker
trains the reward model in one child process beside the policy in its own (worker/stages/train.py).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from worker.data import report_eta

# The trainers a launch may run, by name; a job file never names arbitrary code.
STAGES = {
    "reward": "worker.reward:train_reward_model",
    "dpo": "worker.policy_dpo:train_dpo",
    "sft": "worker.sft:train_sft",
    "generate": "worker.generation:generate_tasks",
}
JOB_FILE, RESULT_FILE, PROGRESS_FILE, LOG_FILE = "job.pkl", "result.pkl", "progress.jsonl", "launch.log"
OUTPUT_TAIL_CHARS = 4000


class LaunchFailed(RuntimeError):
    """A multi-process stage exited without a result; the message ends with its output's tail."""


def trainer(stage: str) -> Callable[..., Any]:
    module, name = STAGES[stage].split(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def run_stage(
    stage: str,
    *args: Any,
    processes: int = 1,
    progress: Any = None,
    check: Callable[[], None] | None = None,
    poll_seconds: float = 0.5,
    **kwargs: Any,
) -> Any:
    """`trainer(stage)(*args, progress=progress, **kwargs)`, on `processes` data-parallel processes.

    `check` is called while the launch runs and may raise (the round was cancelled) to stop it.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {sorted(STAGES)}")
    if processes <= 1:
        return trainer(stage)(*args, progress=progress, **kwargs)
    return start_stage(stage, *args, processes=processes, **kwargs).wait(progress, check, poll_seconds)


def start_stage(
    stage: str, *args: Any, processes: int = 1, threads: int | None = None, **kwargs: Any
) -> Launch:
    """Start `trainer(stage)(*args, **kwargs)` in child processes and return at once; `Launch.wait` gets the
    result. One process runs as plain `python -m worker.launch` (a stage beside another in the worker,
    worker/stages/train.py); more run under torchrun. `threads`: torch's CPU threads in each child (default:
    the worker's RANKLOOP_TORCH_THREADS, else 1).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {sorted(STAGES)}")
    return Launch(stage, args, kwargs, processes, threads)


class Launch:
    """A stage running in child processes (see `start_stage`)."""

    def __init__(
        self, stage: str, args: tuple[Any, ...], kwargs: dict[str, Any], processes: int, threads: int | None
    ) -> None:
        self.stage, self.processes = stage, processes
        self.job_dir = Path(tempfile.mkdtemp(prefix=f"rankloop-{stage}-"))
        with (self.job_dir / JOB_FILE).open("wb") as f:
            pickle.dump({"stage": stage, "args": args, "kwargs": kwargs}, f)
        (self.job_dir / PROGRESS_FILE).touch()
        cmd = [sys.executable, "-m", "worker.launch", str(self.job_dir)]
        if processes > 1:
            cmd[2:2] = ["torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m"]
        env = dict(os.environ)
        if threads is not None:
            env["RANKLOOP_TORCH_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
        # torchrun sets 1 thread per process (with a warning) unless told: the worker's setting, else 1 (a
        # process that drives a GPU needs few CPU threads, and N processes share the host's cores).
        env.setdefault("OMP_NUM_THREADS", os.environ.get("RANKLOOP_TORCH_THREADS", "") or "1")
        with (self.job_dir / LOG_FILE).open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.relay = _ProgressRelay(self.job_dir / PROGRESS_FILE, None)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(
        self, progress: Any = None, check: Callable[[], None] | None = None, poll_seconds: float = 0.5
    ) -> Any:
        """Relay progress to `progress` (from the first line, also those written before this call), call
        `check` (it may raise: the round was cancelled, and the launch is stopped), and return the trainer's
        result; LaunchFailed if it has none. The scratch directory is removed either way."""
        self.relay.progress = progress
        try:
            while self.proc.poll() is None:
                self.relay.pump()
                if check is not None:
                    check()
                time.sleep(poll_seconds)
            self.relay.pump()
            return self._result()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the children if they still run, and remove the scratch directory (idempotent)."""
        if self.proc.poll() is None:
            _stop(self.proc)
        shutil.rmtree(self.job_dir, ignore_errors=True)

    def _result(self) -> Any:
        job_dir, stage, processes = self.job_dir, self.stage, self.processes
        result_file = job_dir / RESULT_FILE
        if self.proc.returncode != 0 or not result_file.is_file():
            errors = sorted(job_dir.glob("error-*.txt"))
            if errors:  # a trainer raised: its message, as one process would have said it
                raise LaunchFailed(f"{stage} on {processes} processes: {errors[0].read_text()}")
            tail = (job_dir / LOG_FILE).read_text(errors="replace")[-OUTPUT_TAIL_CHARS:]
            raise LaunchFailed(
                f"{stage} on {processes} processes exited with {self.proc.returncode}:\n{tail}"
            )
        with result_file.open("rb") as f:
            return pickle.load(f)  # noqa: S301 - written by our own child process


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker process dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the launch's process group (torchrun passes it on), then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # torchrun is gone; its workers may linger a moment in the group.
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class _ProgressRelay:
    """Replays rank 0's progress lines into this process's callback (StageCallback: update and ETA)."""

    def __init__(self, path: Path, progress: Any) -> None:
        self.path = path
        self.progress = progress
        self.offset = 0

    def pump(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # whole lines only; a line being written waits for the next pump
        self.offset += end
        if self.progress is None:
            return
        for line in data[:end].splitlines():
            event = json.loads(line)
            if "loss" in event:
                self.progress(event["step"], event["total"], event["loss"])
            else:
                report_eta(self.progress, event["step"], event["total"], event["eta"])


class FileProgress:
    """Rank 0's progress callback in a launch: one JSON line per event, read by `_ProgressRelay`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, event: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(event) + "\n")

    def __call__(self, step: int, total: int, loss: float) -> None:
        self._write({"step": step, "total": total, "loss": loss})

    def eta(self, step: int, total: int, seconds: float | None) -> None:
        self._write({"step": step, "total": total, "eta": seconds})


def _child(job_dir: Path) -> None:
    """One rank of a launch: run the trainer; rank 0 reports progress and writes the result."""
    with (job_dir / JOB_FILE).open("rb") as f:
        job = pickle.load(f)  # noqa: S301 - written by our parent
    threads = os.environ.get("RANKLOOP_TORCH_THREADS")
    if threads and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))
    import torch
    from accelerate import PartialState

    # Join the process group first, on CPU when asked or without CUDA: accelerate's state is made once per
    # process, and only `cpu=True` picks gloo over CPU (a later PartialState() would run alone).
    config = job["args"][0] if job["args"] else None
    cpu = not torch.cuda.is_available() or getattr(config, "device", "auto") == "cpu"
    state = PartialState(cpu=cpu)
    rank = state.process_index
    progress = FileProgress(job_dir / PROGRESS_FILE) if rank == 0 else None
    try:
        result = trainer(job["stage"])(*job["args"], progress=progress, **job["kwargs"])
    except BaseException as exc:
        (job_dir / f"error-{rank}.txt").write_text("".join(traceback.format_exception_only(exc)).strip())
        raise
    if rank == 0:
        tmp = job_dir / f".{RESULT_FILE}"
        with tmp.open("wb") as f:
            pickle.dump(result, f)
        tmp.rename(job_dir / RESULT_FILE)
    state.wait_for_everyone()
    state.destroy_process_group()


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
