"""The web side of training rounds and model versions: follow, list, cancel; demonstrations. Flushes only.

Starting a round and promoting a policy are rules the worker applies too: they live once in
app/training/rounds.py. A round is a
`rounds` row plus a queue job, created in the same transaction (app/training/queue.py), so a round never
waits for a job that was not queued, nor a job for a round that was rolled back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from app.orm import (
    Candidate,
    ModelKind,
    ModelStatus,
    ModelVersion,
    Prompt,
    PromptSet,
    Round,
    RoundStatus,
)
from app.training import queue, rounds
from app.training import repository as repo
from app.training.rounds import DEMONSTRATION_SOURCE, HUMAN_MARK
from app.training.schemas import DemonstrationLine, DemonstrationSummary

# The rules are app/training/rounds.py. app/admin/rounds_view.py (rewritten on another branch) still calls
# them by these names through this module: at merge, point it at app.training.rounds and drop these two.
start_round = rounds.start_round
promote = rounds.promote_policy

MAX_LIST = 200


def get_round(session: Session, round_id: int) -> Round:
    """One round, or 404."""
    row = repo.get_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    return row


def list_rounds(session: Session, status: RoundStatus | None = None, limit: int = 50) -> Sequence[Round]:
    """Newest rounds first."""
    return repo.list_rounds(session, status, max(1, min(limit, MAX_LIST)))


def cancel_round(session: Session, round_id: int) -> Round:
    """A queued round is cancelled at once; a running one stops at its next progress check."""
    row = repo.lock_round(session, round_id)
    if row is None:
        raise NotFound(f"no round {round_id}")
    if row.status not in (RoundStatus.queued, RoundStatus.running):
        raise Conflict(f"round {round_id} already {row.status.value}; nothing to cancel")
    row.cancel_requested = True
    if row.status == RoundStatus.queued:
        row.status = RoundStatus.cancelled
        row.finished_at = dt.datetime.now(dt.UTC)
        row.error = "cancelled by an admin before it started"
    if row.job_id is not None:
        # todo -> cancelled at once; doing -> abort requested (the worker also sees cancel_requested).
        queue.request_job_abort(session, row.job_id)
    session.flush()
    return row


def list_model_versions(
    session: Session, kind: ModelKind | None = None, status: ModelStatus | None = None, limit: int = 100
) -> Sequence[ModelVersion]:
    """Newest model versions first."""
    return repo.list_model_versions(session, kind, status, max(1, min(limit, MAX_LIST)))


DEMONSTRATIONS_VERSION = "demonstrations"
MAX_REPORTED_ERRORS = 20


def import_demonstrations(
    session: Session, settings: Settings, data: bytes, prompt_set: str | None = None
) -> DemonstrationSummary:
    """Store `{"prompt","completion"}` lines as demonstrations for SFT; any bad line imports nothing."""
    from pydantic import ValidationError

    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the file is larger than {settings.max_upload_bytes} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid("the file is not UTF-8 text; nothing imported") from exc
    lines: list[DemonstrationLine] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            lines.append(DemonstrationLine.model_validate(json.loads(raw)))
        except (ValueError, ValidationError) as exc:
            detail = exc.errors(include_url=False)[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            errors.append(f"line {number}: {detail}")
    if errors:
        raise Invalid(
            f"{len(errors)} malformed line(s), nothing imported: " + "; ".join(errors[:MAX_REPORTED_ERRORS])
        )
    if not lines:
        raise Invalid("the file holds no demonstrations")

    name = (prompt_set or "").strip() or DEMONSTRATIONS_VERSION
    if len(name) > 200:
        raise Invalid("a prompt set name has at most 200 characters")
    ps = repo.get_prompt_set_by_name(session, name)
    if ps is None:
        ps = PromptSet(name=name, description="prompts with human-written demonstrations")
        session.add(ps)
        session.flush()
    version = repo.get_model_version_by_name(session, DEMONSTRATIONS_VERSION)
    if version is None:
        version = ModelVersion(
            name=DEMONSTRATIONS_VERSION,
            kind=ModelKind.external,
            status=ModelStatus.active,
            config={"source": DEMONSTRATION_SOURCE, HUMAN_MARK: True},
        )
        session.add(version)
        session.flush()
    elif version.kind != ModelKind.external:
        raise Conflict(f"model version {DEMONSTRATIONS_VERSION!r} exists and is not an external source")

    texts = list(dict.fromkeys(line.prompt for line in lines))
    prompts = repo.prompts_by_text(session, ps.id, texts)
    new_prompts = [
        Prompt(prompt_set_id=ps.id, text=t, source="demonstrations") for t in texts if t not in prompts
    ]
    session.add_all(new_prompts)
    session.flush()
    prompts.update((p.text, p) for p in new_prompts)
    known = repo.candidate_texts_of(session, version.id, [p.id for p in prompts.values()])
    stored = 0
    for line in lines:
        key = (prompts[line.prompt].id, line.completion)
        if key in known:
            continue
        known.add(key)
        session.add(
            Candidate(
                prompt_id=key[0],
                model_version_id=version.id,
                text=line.completion,
                generation_params={"source": DEMONSTRATION_SOURCE},
            )
        )
        stored += 1
    session.flush()
    return DemonstrationSummary(
        prompt_set=name,
        lines=len(lines),
        prompts=len(new_prompts),
        demonstrations=stored,
        duplicates=len(lines) - stored,
    )
