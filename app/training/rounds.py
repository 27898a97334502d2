"""The round and version rules, once, for every caller: the API and admin pages, the CLI and the worker.

- `start_round`: check the config, then queue a round and its job in the caller's transaction; at most one
  round of a kind is queued or running (Conflict otherwise). The periodic auto-round calls it with
  trigger="auto". `start_generation` queues the generation-only job (new comparison sets for a prompt
  set, from a chosen version, with the sampling settings given).
- `promote_policy`: make a policy version the active one and retire the previous one; admins promote by
  hand (and roll back), at once.
- `request_promotion` / `promote_ready`: "promote when ready" (an admin's choice, or the worker's when a
  round's config says auto_promote): the policy waits for the promotion gate (`promotion_gate`): at least
  `promotion_min_rankings` blind rankings against the active policy with the 95% lower bound of its
  human win-rate above 50% (app.quality.promotion). Setting 0 turns the gate off (promote at once). With
  no active policy there is nothing to beat, and the gate passes: a first policy serves at once. A policy
  the reward-hacking alarm flags (app.quality.reward_signals) never passes, even with the gate off.
  `promote_ready` runs periodically in the worker (worker/tasks.py).

Both take a transaction-scoped advisory lock, so the decision holds across processes. Flushes, never
commits: the caller's transaction decides.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Conflict, Invalid, NotFound
from app.orm import ModelKind, ModelStatus, ModelVersion, Project, Round, RoundKind, RoundStatus
from app.projects import service as projects
from app.quality import promotion, reward_signals, version_stats
from app.training import queue
from app.training import repository as repo
from app.training.config import ConfigError, RoundConfig

# An external model version whose candidates a person wrote (its name holds this mark, or its config sets
# this key true); its first-ranked replies feed SFT.
HUMAN_MARK = "human"
# `config["source"]` of the external version holding imported demonstrations (and of their candidates).
DEMONSTRATION_SOURCE = "demonstration"

log = logging.getLogger(__name__)


def project_config(project: Project, settings: Settings, overrides: dict[str, Any]) -> RoundConfig:
    """A round's config in a project: the project's round defaults and base model, then the overrides;
    k within the project's K range (Invalid otherwise)."""
    values = dict(project.round_defaults or {})
    if project.base_model:
        values["base_model"] = project.base_model
    values.update(overrides)
    p = projects.resolved(project, settings)
    if "k" not in values and not p.k_min <= RoundConfig.k <= p.k_max:
        values["k"] = min(max(RoundConfig.k, p.k_min), p.k_max)
    try:
        cfg = RoundConfig.resolve(values, settings)
    except ConfigError as exc:
        raise Invalid(f"bad round config: {exc}") from exc
    if not p.k_min <= cfg.k <= p.k_max:
        raise Invalid(
            f"bad round config: k must be within project {project.name!r}'s K range {p.k_min}..{p.k_max}"
        )
    return cfg


def start_round(
    session: Session,
    settings: Settings,
    overrides: dict[str, Any],
    *,
    requested_by_id: int | None,
    trigger: str = "manual",
    kind: RoundKind = RoundKind.train,
    note: str | None = None,
    project_id: int | None = None,
) -> Round:
    """Queue a round of `kind` for a project (None: the default project) with its job; returns the flushed
    row (job_id set). The round trains and serves that project's reward model and policy line.

    `overrides` are round config keys (RoundConfig) over the project's round defaults; `note` is the first
    line of the round's log. Raises Invalid for a bad config, NotFound for an unknown project and Conflict
    (with round_id) while another round of the kind is active in the project.
    """
    project = projects.project_or_default(session, project_id)
    cfg = project_config(project, settings, overrides)
    _check_generation_targets(session, cfg, kind, project)
    lock_round_start(session)
    active = repo.active_round(session, kind, project.id)
    if active is not None:
        what = "generation job" if kind == RoundKind.generate else "round"
        raise Conflict(
            f"{what} {active.id} is still {active.status.value}; wait for it or cancel it first",
            round_id=active.id,
        )
    round_ = Round(
        project_id=project.id,
        kind=kind,
        status=RoundStatus.queued,
        trigger=trigger,
        requested_by_id=requested_by_id,
        config=cfg.as_dict(),
        stage="queued",
        loss_curve=[],
        log_tail=[note] if note else [],
        metrics={},
    )
    queue.enqueue_round(session, round_)
    return round_


def start_generation(
    session: Session,
    settings: Settings,
    overrides: dict[str, Any],
    *,
    requested_by_id: int | None,
    trigger: str = "manual",
    project_id: int | None = None,
) -> Round:
    """Queue a generation-only job (new comparison sets, no training) in a project: the admin form, the
    API, the CLI and the demo all start it here. `overrides` are round config keys: prompt_set_id,
    model_version_id, k, temperature, top_p, max_new_tokens, generate_prompts, human_replies, ...; raises
    like start_round. For one prompt set, generate_prompts defaults to every prompt of it waiting for
    candidates. Without a project, a prompt set's own project is meant (else the default project)."""
    target = str(overrides.get("prompt_set_id") or "").strip()
    if target.isdigit() and int(target):
        prompt_set = repo.get_prompt_set(session, int(target))
        if project_id is None and prompt_set is not None:
            project_id = prompt_set.project_id
        if "generate_prompts" not in overrides:
            waiting = repo.count_prompts_needing_work(session, int(target))
            overrides = {**overrides, "generate_prompts": waiting or 1}
    return start_round(
        session,
        settings,
        overrides,
        requested_by_id=requested_by_id,
        trigger=trigger,
        kind=RoundKind.generate,
        project_id=project_id,
    )


def _check_generation_targets(session: Session, cfg: RoundConfig, kind: RoundKind, project: Project) -> None:
    """The prompt set and model version a config names exist in the project and can serve (Invalid
    otherwise)."""
    if cfg.prompt_set_id:
        prompt_set = repo.get_prompt_set(session, cfg.prompt_set_id)
        if prompt_set is None or prompt_set.project_id != project.id:
            raise Invalid(
                f"prompt_set_id {cfg.prompt_set_id}: no such prompt set in project {project.name!r}"
            )
        if prompt_set.paused:
            raise Invalid(f"prompt set {prompt_set.name!r} is paused; unpause it first")
        if (
            kind == RoundKind.generate
            and cfg.generate_prompts
            and not repo.count_prompts_needing_work(session, prompt_set.id)
        ):
            raise Invalid(f"every prompt of {prompt_set.name!r} already has an open comparison set")
    if cfg.model_version_id:
        version = repo.get_model_version(session, cfg.model_version_id)
        if version is None or version.kind != ModelKind.policy or version.status == ModelStatus.failed:
            raise Invalid(
                f"model_version_id {cfg.model_version_id}: not a policy version that can write replies "
                "(reward models, external sources and failed versions cannot)"
            )
        if version.project_id != project.id:
            raise Invalid(f"model_version_id {cfg.model_version_id}: of another project's policy line")


def lock_round_start(session: Session) -> None:
    """Serialise "is a round active? no: start one" until the transaction ends (re-entrant)."""
    session.execute(select(func.pg_advisory_xact_lock(queue.ROUND_START_LOCK_KEY)))


def lock_promotions(session: Session) -> None:
    """One promotion (or first active policy) at a time, so exactly one policy stays active."""
    repo.lock_promotions(session, queue.PROMOTION_LOCK_KEY)


def _promotable(session: Session, version_id: int) -> ModelVersion:
    version = repo.get_model_version(session, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id}")
    if version.kind != ModelKind.policy:
        raise Conflict(
            f"model version {version_id} is a {version.kind.value} model; only policies are promoted"
        )
    if version.status == ModelStatus.failed:
        raise Conflict(f"model version {version_id} failed; it cannot be promoted")
    return version


def promote_policy(session: Session, version_id: int) -> ModelVersion:
    """Make a policy version the active one of its project; that project's previously active policy is
    retired (other projects' policy lines are untouched).

    Raises NotFound for an unknown id, Conflict for a reward/external model or a failed version.
    """
    lock_promotions(session)
    version = _promotable(session, version_id)
    for current in repo.lock_active_policies(session, version.project_id):
        if current.id != version.id:
            current.status = ModelStatus.retired
    session.flush()
    version.status = ModelStatus.active
    version.promote_when_ready = False
    session.flush()
    return version


def promotion_gate(session: Session, settings: Settings, version: ModelVersion) -> promotion.GateCheck:
    """The gate's verdict on a policy version against its project's active policy (see the module
    docstring)."""
    if version.status == ModelStatus.active:
        return promotion.GateCheck(True, "it is the active policy", 0)
    active = repo.active_policy(session, version.project_id)
    if active is None:
        return promotion.GateCheck(True, "no active policy to beat", 0)
    signal = reward_signals.reward_vs_human_of(session, version.id, active.id)
    if signal is not None and signal.hacking:
        return promotion.GateCheck(
            False,
            f"reward hacking suspected: the reward model predicts a {signal.predicted:.0%} win-rate over "
            f"the active policy, people give it {signal.human.rate if signal.human else math.nan:.0%}",
            None,
            hacking=True,
        )
    if settings.promotion_min_rankings == 0:
        return promotion.GateCheck(True, "the promotion gate is off (promotion_min_rankings = 0)", 0)
    human = version_stats.human_win_rate(version_stats.outcome_summary(session), version.id, active.id)
    return promotion.gate_check(human, settings.promotion_min_rankings)


def request_promotion(
    session: Session, settings: Settings, version_id: int
) -> tuple[ModelVersion, promotion.GateCheck]:
    """Promote when ready: the policy waits for the gate, or becomes active now if it already passes.

    Raises like promote_policy. Returns the version and the gate's verdict at the time of the request.
    """
    lock_promotions(session)
    version = _promotable(session, version_id)
    if version.status == ModelStatus.active:
        return version, promotion.GateCheck(True, "it is the active policy", 0)
    version.promote_when_ready = True
    session.flush()
    check = promotion_gate(session, settings, version)
    if check.passed:
        promote_policy(session, version.id)
    return version, check


def cancel_promotion_request(session: Session, version_id: int) -> ModelVersion:
    """Stop waiting for the gate (NotFound for an unknown id)."""
    version = repo.get_model_version(session, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id}")
    version.promote_when_ready = False
    session.flush()
    return version


def promote_ready(session: Session, settings: Settings) -> list[int]:
    """Promote, in each project, the newest waiting policy that passes the gate; returns their ids.

    One per project per call: the others are then judged against the new active policy on the next call.
    """
    waiting = repo.policies_waiting_for_promotion(session)
    if not waiting:
        return []
    lock_promotions(session)
    promoted: dict[int, int] = {}
    for version in waiting:
        if version.project_id in promoted:
            continue
        check = promotion_gate(session, settings, version)
        if check.passed:
            log.info("promoting %s: %s", version.name, check.reason)
            promote_policy(session, version.id)
            promoted[version.project_id] = version.id
    return list(promoted.values())
