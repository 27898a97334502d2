"""API shapes for training rounds and model versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RoundRequest(BaseModel):
    """Config overrides for a new round, under `config` or at the top level (`{"k": 5}`); all optional."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"config": {"reward_max_steps": 50, "k": 4}}]},
    )

    config: dict[str, Any] = Field(
        default_factory=dict, description="round config overrides; see GET /api/v1/rounds/config-keys"
    )

    def overrides(self) -> dict[str, Any]:
        return {**(self.model_extra or {}), **self.config}


class GenerationRequest(BaseModel):
    """A generation-only job: new comparison sets for prompts waiting for candidates. Every field is optional
    (the round config's default then applies; GET /api/v1/rounds/config-keys describes them)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt_set_id": 3, "model_version_id": 7, "k": 4, "temperature": 0.8, "top_p": 0.95}
            ]
        },
    )

    prompt_set_id: int | None = Field(default=None, ge=1, description="only this prompt set's prompts")
    model_version_id: int | None = Field(
        default=None,
        ge=1,
        description="the policy that writes every candidate; omitted: newest and active mixed",
    )
    k: int | None = Field(default=None, description="candidates per new comparison set")
    temperature: float | None = Field(default=None, description="sampling temperature (0 = greedy)")
    top_p: float | None = Field(default=None, description="nucleus sampling mass")
    max_new_tokens: int | None = Field(default=None, description="reply length cap")
    prompts: int | None = Field(default=None, description="prompts that get a new set (generate_prompts)")
    human_replies: int | None = Field(
        default=None, description="stored human-written replies of a prompt that join its new set"
    )

    def overrides(self) -> dict[str, Any]:
        """The round config keys this request sets."""
        values = self.model_dump(exclude_none=True)
        if "prompts" in values:
            values["generate_prompts"] = values.pop("prompts")
        return values


class RoundCreated(BaseModel):
    id: int = Field(description="the new round's id; follow it at GET /api/v1/rounds/{id}")
    status: str
    job_id: int | None = Field(description="the queue job that runs it")


class RoundProgress(BaseModel):
    stage: str = Field(description="snapshot, sft, reward, policy, evaluate, publish, generate, done ...")
    step: int
    total: int
    loss: float | None
    eta_seconds: float | None = Field(description="estimated seconds left in the current stage")


class RoundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int = Field(description="the project whose data, settings and policy line the round uses")
    kind: str
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    trigger: str = Field(description="manual, auto or demo")
    stage: str
    progress: RoundProgress
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    device: str | None
    cancel_requested: bool
    data_snapshot_id: int | None
    reward_version_id: int | None
    policy_version_id: int | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None


class RoundDetail(RoundOut):
    config: dict[str, Any] = Field(description="the fully resolved config the round runs with")
    loss_curve: list[Any] = Field(description="[stage, step, loss] points")
    log_tail: list[Any] = Field(description="the last lines of the round's log")


class RoundList(BaseModel):
    rounds: list[RoundOut]


class ConfigKey(BaseModel):
    default: Any
    help: str
    choices: list[str]


class HumanWinRateOut(BaseModel):
    """Blind human win-rate of a policy over another from the comparison sets that mixed them."""

    against: int = Field(description="the other version's id (the policy's parent, or the active policy)")
    rate: float = Field(description="(wins + ties / 2) / comparisons, in [0, 1]")
    low: float = Field(description="95% Wilson interval, lower end")
    high: float = Field(description="95% Wilson interval, upper end")
    wins: int
    losses: int
    ties: int
    comparisons: int = Field(description="candidate pairs of the two versions ranked against each other")
    rankings: int = Field(description="rankings those pairs come from")


class PromotionGateOut(BaseModel):
    """The promotion gate's verdict on a policy against the active policy."""

    passed: bool
    reason: str = Field(description="why it passes or not, in one sentence")
    more_rankings: int | None = Field(
        description="blind rankings still needed at the observed win-rate (0 when passed); null when the "
        "rate is unknown or at most 50% (it cannot pass at the current rate)"
    )


class RewardVsHumanOut(BaseModel):
    """The reward-hacking alarm: the reward model's predicted win-rate against the active policy next to the
    blind human one."""

    against: int = Field(description="the active policy's id")
    reward_version_id: int = Field(description="the reward model that scored both versions' candidates")
    pairs: int = Field(description="(this version, active) candidate pairs of one set, both scored")
    predicted: float = Field(description="share of those pairs the reward model orders this version first")
    predicted_low: float = Field(description="95% Wilson interval, lower end")
    predicted_high: float = Field(description="95% Wilson interval, upper end")
    human: HumanWinRateOut | None = Field(description="blind human win-rate against the active policy")
    hacking: bool = Field(
        description="reward hacking suspected: the reward model's lower bound is above 50% and the human "
        "upper bound below it (the 95% intervals apart); such a policy is never auto-promoted"
    )


class AccuracyOut(BaseModel):
    accuracy: float = Field(description="pairwise accuracy in [0, 1]")
    low: float | None = Field(description="95% Wilson interval, lower end (null: pair count unknown)")
    high: float | None = Field(description="95% Wilson interval, upper end")
    pairs: int
    rankings: int = Field(description="rankings the pairs come from (0 for the held-out accuracy)")


class RewardAccuracyOut(BaseModel):
    """A reward model against people: its held-out accuracy at training time and on fresh rankings."""

    heldout: AccuracyOut | None = Field(description="on its held-out prompts at training time (metrics)")
    fresh: AccuracyOut | None = Field(
        description="on rankings stored after its data snapshot, of sets whose candidates it scored"
    )


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int = Field(description="the project whose policy or reward model line it belongs to")
    name: str
    kind: str = Field(description="policy, reward or external")
    status: str = Field(description="candidate, active, retired or failed")
    base_model: str
    adapter_path: str | None
    parent_id: int | None
    data_snapshot_id: int | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    created_at: dt.datetime
    promote_when_ready: bool = Field(
        default=False, description="the policy becomes active once it passes the promotion gate"
    )
    promotion_gate: PromotionGateOut | None = Field(
        default=None,
        description="a policy's standing against the promotion gate (GET /model-versions, "
        "promote-when-ready); null for other kinds and for the active or a failed policy",
    )
    reward_vs_active: RewardVsHumanOut | None = Field(
        default=None,
        description="reward-predicted vs blind human win-rate against the active policy (GET "
        "/model-versions only); null when no reward model scored both versions' candidates in one set",
    )
    reward_accuracy: RewardAccuracyOut | None = Field(
        default=None, description="a reward model's accuracy against people (GET /model-versions only)"
    )
    human_winrate_vs_parent: HumanWinRateOut | None = Field(
        default=None,
        description="a policy's blind human win-rate against its parent (GET /model-versions only); null "
        "for other kinds, a policy without a parent, or one never ranked against it",
    )


class ModelVersionList(BaseModel):
    versions: list[ModelVersionOut]
