"""CLI commands for training rounds, the app's side: `rankloop round|generate|import-demonstrations`.

The worker's own commands (`rankloop worker|eval-rm`) are in worker/cli.py; app/cli.py registers both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.projects.cli import ProjectOption, project_id

console = Console()

FINAL_STATUSES = ("succeeded", "failed", "cancelled")


def register(app: typer.Typer) -> None:
    """Add the training commands to the main `rankloop` app."""
    app.command("round")(round_)
    app.command("generate")(generate)
    app.command("import-demonstrations")(import_demonstrations)


def _start(kind: str, overrides: dict[str, object], project: str | None) -> int:
    from app.config import get_settings
    from app.db import session_scope
    from app.orm import RoundKind
    from app.training import rounds

    with session_scope() as session:
        row = rounds.start_round(
            session,
            get_settings(),
            overrides,
            requested_by_id=None,
            kind=RoundKind(kind),
            project_id=project_id(session, project),
        )
        return row.id


def _parse_sets(sets: list[str] | None) -> dict[str, object]:
    from app.errors import Invalid
    from app.training.config import ConfigError, parse_assignments

    try:
        return dict(parse_assignments(sets or []))
    except ConfigError as exc:
        raise Invalid(str(exc)) from exc


def round_(
    wait: Annotated[bool, typer.Option(help="follow the round's progress until it ends")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="config override key=value (repeatable)")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Start a project's training round (the worker runs it); with --wait, show its progress."""
    round_id = _start("train", _parse_sets(set_), project)
    console.print(f"round [bold]{round_id}[/bold] queued")
    if wait:
        raise typer.Exit(follow(round_id))


def generate(
    prompts: Annotated[int, typer.Option(min=1, help="prompts that get a new comparison set")] = 32,
    wait: Annotated[bool, typer.Option(help="follow the run until it ends")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="config override key=value (repeatable)")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Generate candidates with a project's active policy for its prompts that need work (no training)."""
    overrides = {"generate_prompts": prompts, **_parse_sets(set_)}
    round_id = _start("generate", overrides, project)
    console.print(f"generation run [bold]{round_id}[/bold] queued")
    if wait:
        raise typer.Exit(follow(round_id))


def follow(round_id: int, poll_seconds: float = 1.0, out: Console | None = None) -> int:
    """Draw the round's progress from its row until it ends; exit code 0 only when it succeeded.

    One line that fits 80 columns: a short bar, and the steps, ETA and loss only once they are known.
    """
    from app.db import session_scope
    from app.training import service

    out = out or console
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=out,
    ) as bar:
        task = bar.add_task("queued", total=None, info="")
        while True:
            with session_scope() as session:
                row = service.get_round(session, round_id)
                status, stage, step, total = row.status.value, row.stage, row.step, row.total
                noun = "generation job" if row.kind.value == "generate" else "round"
                loss, eta, error, metrics = row.loss, row.eta_seconds, row.error, dict(row.metrics or {})
            info = []
            if total:
                info.append(f"{step}/{total}")
            if eta is not None:
                info.append(f"eta {eta:.0f}s")
            if loss is not None:
                info.append(f"loss {loss:.4f}")
            bar.update(
                task,
                description=status if stage in ("", status) else f"{status}: {stage}",
                completed=step,
                total=total or None,
                info=" ".join(info),
            )
            if status in FINAL_STATUSES:
                break
            time.sleep(poll_seconds)
    if status == "succeeded":
        out.print(f"[green]{noun} {round_id} succeeded[/green]")
        for key, value in sorted(metrics.items()):
            out.print(f"  {key}: {value}")
        return 0
    out.print(f"[red]{noun} {round_id} {status}[/red]: {escape(error or '')}")
    return 1


def import_demonstrations(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help='JSONL {"prompt","completion"}')],
    prompt_set: Annotated[str | None, typer.Option(help="prompt set for new prompts")] = None,
    project: ProjectOption = None,
) -> None:
    """Import human-written demonstrations; the next round fine-tunes on them (SFT) before DPO."""
    from app.config import get_settings
    from app.db import session_scope
    from app.prompts import service

    with session_scope() as session:
        summary = service.import_demonstrations(
            session, get_settings(), file.read_bytes(), prompt_set, project_id=project_id(session, project)
        )
    console.print(
        f"{summary.demonstrations} demonstrations stored in prompt set {summary.prompt_set!r} "
        f"({summary.prompts} new prompts, {summary.duplicates} duplicates skipped)"
    )
