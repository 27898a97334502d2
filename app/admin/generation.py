"""The Generate candidates page: a generation-only job for a prompt set, with its model version, K and
sampling settings (what the Import and Data pages offer for prompts that no annotator can see yet).

Starting goes through app.training.rounds.start_generation (the one rule, shared with the API and the CLI);
the job is then followed on its round page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app.admin.common import page_router, redirect
from app.config import Settings
from app.deps import DB, AdminUser, SettingsDep
from app.errors import AppError
from app.orm import ModelKind, ModelStatus, ModelVersion, PromptSet, Round, RoundKind, User
from app.projects import repository as projects_repo
from app.prompts import repository as prompts_repo
from app.training import repository as training_repo
from app.training import rounds as training_rounds
from app.training.config import RoundConfig
from app.web import render

router = page_router()

# The form's sampling fields: (config key, label); defaults and meanings come from RoundConfig.
SAMPLING_FIELDS = (
    ("k", "Candidates per set (K)"),
    ("temperature", "Temperature"),
    ("top_p", "Top-p"),
    ("max_new_tokens", "Max new tokens"),
    ("human_replies", "Human-written replies per set"),
)


@dataclass(frozen=True)
class PromptSetChoice:
    id: int
    name: str
    waiting: int  # prompts a job would fill now (no open set, set not paused)
    paused: bool


@dataclass(frozen=True)
class SamplingField:
    key: str
    label: str
    default: Any
    help: str
    value: str


@dataclass(frozen=True)
class GeneratePage:
    prompt_sets: list[PromptSetChoice]
    versions: Sequence[ModelVersion]
    fields: list[SamplingField]
    prompt_set_id: int | None
    model_version_id: int | None
    prompts: str
    error: str | None = None
    # The queued or running generation job: one runs at a time, so the form says which is in the way first.
    active: Round | None = None


def _usable_versions(session: Session) -> list[ModelVersion]:
    """Policy versions that can write replies: active first, then newest."""
    policies = training_repo.list_model_versions(session, ModelKind.policy, None, 200)
    usable = [v for v in policies if v.status != ModelStatus.failed]
    return sorted(usable, key=lambda v: (v.status != ModelStatus.active, -v.id))


def generate_page(
    session: Session,
    prompt_set_id: int | None,
    values: dict[str, str] | None = None,
    error: str | None = None,
) -> GeneratePage:
    """The form: prompt sets with how many prompts wait for candidates, usable versions, sampling defaults."""
    values = values or {}
    choices = [
        PromptSetChoice(
            ps_id,
            name,
            training_repo.count_prompts_needing_work(session, ps_id),
            bool(getattr(training_repo.get_prompt_set(session, ps_id), "paused", False)),
        )
        for ps_id, name in prompts_repo.all_prompt_sets(session)
    ]
    described = RoundConfig.describe()
    fields = [
        SamplingField(key, label, described[key]["default"], described[key]["help"], values.get(key, ""))
        for key, label in SAMPLING_FIELDS
    ]
    chosen = next((c for c in choices if c.id == prompt_set_id), None)
    version = values.get("model_version_id", "")
    return GeneratePage(
        prompt_sets=choices,
        versions=_usable_versions(session),
        fields=fields,
        prompt_set_id=chosen.id if chosen else None,
        model_version_id=int(version) if version.isdigit() else None,
        prompts=values.get("prompts") or (str(chosen.waiting) if chosen and chosen.waiting else ""),
        error=error,
        active=training_repo.active_round(session, RoundKind.generate, _project_of(session, chosen)),
    )


def _project_of(session: Session, chosen: PromptSetChoice | None) -> int:
    """The project whose generation job the page names: the chosen prompt set's, else the default one."""
    prompt_set = session.get(PromptSet, chosen.id) if chosen else None
    return prompt_set.project_id if prompt_set is not None else projects_repo.default_project_id(session)


def form_overrides(values: dict[str, str]) -> dict[str, Any]:
    """The form's non-empty fields as round config keys (RoundConfig types and checks them)."""
    out: dict[str, Any] = {k: v.strip() for k, v in values.items() if v.strip()}
    if "prompts" in out:
        out["generate_prompts"] = out.pop("prompts")
    return out


def start_generation(session: Session, settings: Settings, values: dict[str, str], user: User) -> Round:
    """Queue the generation job the form describes (422 for bad settings, 409 while one is running)."""
    return training_rounds.start_generation(
        session, settings, form_overrides(values), requested_by_id=user.id
    )


@router.get("/generate", response_class=HTMLResponse)
def generate_form(
    request: Request, db: DB, user: AdminUser, prompt_set: Annotated[int | None, Query()] = None
) -> Response:
    return render(request, "admin/generate.html", {"p": generate_page(db, prompt_set)})


@router.post("/generate", response_class=HTMLResponse)
def generate_submit(
    request: Request,
    db: DB,
    settings: SettingsDep,
    user: AdminUser,
    prompt_set_id: Annotated[str, Form(max_length=20)] = "",
    model_version_id: Annotated[str, Form(max_length=20)] = "",
    prompts: Annotated[str, Form(max_length=20)] = "",
    k: Annotated[str, Form(max_length=20)] = "",
    temperature: Annotated[str, Form(max_length=20)] = "",
    top_p: Annotated[str, Form(max_length=20)] = "",
    max_new_tokens: Annotated[str, Form(max_length=20)] = "",
    human_replies: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    values = {
        "prompt_set_id": prompt_set_id,
        "model_version_id": model_version_id,
        "prompts": prompts,
        "k": k,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "human_replies": human_replies,
    }
    try:
        row = start_generation(db, settings, values, user)
    except AppError as exc:
        db.rollback()
        chosen = int(prompt_set_id) if prompt_set_id.strip().isdigit() else None
        page = generate_page(db, chosen, values, exc.message)
        return render(request, "admin/generate.html", {"p": page}, status_code=exc.status_code)
    return redirect(f"/admin/rounds/{row.id}")
