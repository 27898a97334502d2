"""The demo's first-run seed: real Open-Assistant prompts waiting for annotators, and two demo logins.

Idempotent: the prompt set "oasst-demo" marks a seeded database, and a later run changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.auth import repository as auth_repo
from app.auth import service as auth_service
from app.config import Settings
from app.orm import Role
from app.prompts import importers
from app.prompts import repository as prompts_repo
from app.prompts import service as prompts_service
from app.prompts.schemas import ImportKind, ImportSummary

DEMO_PROMPT_SET = "oasst-demo"
# A handful of Open-Assistant opening prompts the default model answers on first start, so the demo
# shows model candidates next to human ones in the same set. Priority 1: annotators see them first.
MODEL_PROMPT_SET = "demo-model"
MODEL_PROMPTS = 8
# Each of those sets: the default model's replies beside the people's (Open-Assistant's), so rankings compare
# two versions from the first task on.
MODEL_REPLIES = 3
HUMAN_REPLIES = 2
DATA_FILE = Path(__file__).resolve().parent / "data" / "oasst_en_100_trees.jsonl"
DEMO_USERS = (("admin", Role.admin), ("annotator", Role.annotator))
CREDENTIALS_FILE = "demo-credentials.txt"


@dataclass(frozen=True)
class Credential:
    username: str
    role: str
    password: str


@dataclass(frozen=True)
class SeedResult:
    seeded: bool  # False: the database was seeded before and nothing changed
    summary: ImportSummary | None
    credentials: list[Credential]  # created now; their passwords exist nowhere else but the file
    credentials_path: Path


def credentials_path(settings: Settings) -> Path:
    """Where the demo logins are kept for a user who lost the first run's output."""
    return settings.data_dir.resolve() / CREDENTIALS_FILE


def seed(session: Session, settings: Settings) -> SeedResult:
    """On first run: each ranked Open-Assistant reply group as an open set in "oasst-demo", plus logins."""
    path = credentials_path(settings)
    if prompts_repo.get_prompt_set_by_name(session, DEMO_PROMPT_SET) is not None:
        return SeedResult(seeded=False, summary=None, credentials=[], credentials_path=path)
    records = importers.parse(DATA_FILE.read_bytes(), ImportKind.oasst, DATA_FILE.name)
    # The demo's annotators rank from scratch: Open-Assistant's own ranks are not imported here.
    open_records = [dataclasses.replace(r, tiers=None) for r in records]
    summary = prompts_service.import_records(
        session,
        settings,
        open_records,
        DEMO_PROMPT_SET,
        description="Open-Assistant (LAION-AI, Apache-2.0): 100 English trees, every ranked reply group",
        origin=DATA_FILE.name,
    )
    _seed_model_prompts(session, settings, records)
    credentials = []
    for username, role in DEMO_USERS:
        if auth_repo.get_user_by_name(session, username) is None:
            _, password = auth_service.create_user(session, username, role)
            credentials.append(Credential(username, role.value, password))
    if credentials:
        # Written before the caller commits: if this fails nothing is seeded and the next run retries.
        write_credentials(path, credentials)
    return SeedResult(seeded=True, summary=summary, credentials=credentials, credentials_path=path)


def _seed_model_prompts(session: Session, settings: Settings, records: list[importers.Record]) -> None:
    """The first few distinct single-turn prompts, with their Open-Assistant replies but no comparison set:
    the demo's first generation job puts the default model's replies beside the people's in one set, so
    the Leaderboard and Compare pages have two versions to compare after a few rankings."""
    chosen: dict[str, importers.Record] = {}
    for record in records:
        if isinstance(record.prompt, str) and record.prompt not in chosen:
            chosen[record.prompt] = record
        if len(chosen) == MODEL_PROMPTS:
            break
    prompt_records = [
        dataclasses.replace(r, line=i + 1, tags=["oasst", "demo-model"], tiers=None)
        for i, r in enumerate(chosen.values())
    ]
    prompts_service.import_replies(
        session,
        prompt_records,
        MODEL_PROMPT_SET,
        description="Open-Assistant opening prompts: the default model answers them beside the people's "
        "replies on the demo's first start",
        origin=DATA_FILE.name,
    )
    prompt_set = prompts_repo.get_prompt_set_by_name(session, MODEL_PROMPT_SET)
    assert prompt_set is not None
    prompt_set.priority = 1


def first_generation(session: Session) -> dict[str, object]:
    """The demo's first generation job: MODEL_REPLIES of the default model and up to HUMAN_REPLIES of the
    people's per model prompt, in one set (config overrides for app.training.rounds.start_generation)."""
    prompt_set = prompts_repo.get_prompt_set_by_name(session, MODEL_PROMPT_SET)
    return {
        "generate_prompts": MODEL_PROMPTS,
        "prompt_set_id": prompt_set.id if prompt_set is not None else 0,
        "k": MODEL_REPLIES,
        "human_replies": HUMAN_REPLIES,
    }


def write_credentials(path: Path, credentials: list[Credential]) -> None:
    """Write the demo logins to a file only its owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # O_CREAT's mode does not apply to an existing file.
    os.fchmod(fd, 0o600)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    lines = [f"# rankloop demo logins, created {created}. Keep this file private.\n"]
    lines += [f"{c.username} ({c.role}): {c.password}\n" for c in credentials]
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(lines)
