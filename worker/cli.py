"""The worker's CLI commands: `rankloop worker` (run the jobs) and `rankloop eval-rm` (score pairs).

Registered on the `rankloop` app by app/cli.py, the composition root; torch is imported only when a
command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.projects.cli import ProjectOption, project_id

console = Console()


def register(app: typer.Typer) -> None:
    """Add the worker's commands to the main `rankloop` app."""
    app.command("worker")(worker)
    app.command("eval-rm")(eval_rm)


def worker(
    queues: Annotated[
        str,
        typer.Option(
            help="comma-separated device queues: train (training rounds up to their published versions; "
            "GPU hosts), generate (new comparison sets, each training round's last stage included)"
        ),
    ] = "train,generate",
    concurrency: Annotated[int, typer.Option(min=1, help="device jobs at a time")] = 1,
    maintenance: Annotated[
        bool, typer.Option(help="also run periodic jobs: auto rounds, retrying dead workers' jobs")
    ] = True,
    once: Annotated[bool, typer.Option(help="stop when the queues are empty instead of waiting")] = False,
    gpus: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="train each round's SFT, reward model and DPO data-parallel on this many GPUs (one process "
            "each, under torchrun); default RANKLOOP_GPUS, 1",
        ),
    ] = None,
) -> None:
    """Run the background worker: training rounds, generation, and periodic maintenance."""
    import logging
    import os

    from app.config import get_settings
    from worker.tasks import run_worker

    if gpus is not None:
        os.environ["RANKLOOP_GPUS"] = str(gpus)
        get_settings.cache_clear()
    processes = get_settings().gpus
    if processes > 1:
        import torch

        available = torch.cuda.device_count()
        if available < processes:
            raise typer.BadParameter(f"{processes} GPUs asked for, {available} visible", param_hint="--gpus")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_routine)
    names = [q.strip() for q in queues.split(",") if q.strip()]
    console.print(
        f"worker on queues {', '.join(names)} (concurrency {concurrency}"
        + (f", training on {processes} GPUs" if processes > 1 else "")
        + ")"
    )
    run_worker(queues=names, concurrency=concurrency, maintenance=maintenance, wait=not once)


def _not_routine(record: object) -> bool:
    """Drop the info lines of the maintenance jobs, which run every few seconds and would drown the rest."""
    import logging

    assert isinstance(record, logging.LogRecord)
    if record.levelno >= logging.WARNING:
        return True
    return "maintenance" not in record.name and not any(
        task in record.getMessage() for task in ("retry_stalled_jobs", "schedule_auto_round")
    )


def eval_rm(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="TRL pairs JSONL")],
    version: Annotated[
        int | None, typer.Option(help="reward model version id (default: the project's newest)")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Score preference pairs with a reward model version: pairwise accuracy and pair count."""
    from app.config import get_settings
    from app.db import session_scope
    from app.errors import Invalid, NotFound
    from app.training import repository
    from worker.evaluation import evaluate_pairs_file
    from worker.store import ModelStore

    with session_scope() as session:
        row = (
            repository.get_model_version(session, version)
            if version is not None
            else repository.newest_reward_version(session, project_id(session, project))
        )
        if row is None:
            raise NotFound(f"no reward model version {version}" if version else "no reward model version yet")
        if row.kind.value != "reward" or not row.adapter_path:
            raise Invalid(f"model version {row.id} is not a reward model with files")
        name, path, base_model = row.name, row.adapter_path, row.base_model
    settings = get_settings()
    model_dir = ModelStore.from_settings(settings).open(path)
    result = evaluate_pairs_file(file, model_dir, base_model, settings)
    console.print(
        f"reward model {name}: pairwise accuracy [bold]{result.accuracy:.4f}[/bold] on {result.pairs} pairs"
    )
    print(f"accuracy={result.accuracy:.6f} pairs={result.pairs}")
