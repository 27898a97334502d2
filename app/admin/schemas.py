"""Shapes of the admin forms and list filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from app.errors import Invalid
from app.training.config import ConfigError, parse_assignments

# The round form's fields: config key, label, input type. Empty fields keep the default.
ROUND_FIELDS: list[tuple[str, str, str]] = [
    ("policy_method", "Policy method", "select"),
    ("policy_epochs", "Policy epochs", "number"),
    ("policy_learning_rate", "Policy learning rate", "text"),
    ("dpo_beta", "DPO beta", "text"),
    ("lora_r", "LoRA rank", "number"),
    ("reward_epochs", "Reward model epochs", "number"),
    ("reward_learning_rate", "Reward model learning rate", "text"),
    ("multi_annotator", "Several rankings of one set", "select"),
    ("max_rankings", "Newest rankings to use (0 = all)", "number"),
    ("heldout_fraction", "Held-out share of prompts", "text"),
]
MAX_EXTRA_CHARS = 5000


class RoundForm(BaseModel):
    """The Rounds page's start form: a few common knobs, plus any other key as `key=value` lines."""

    values: dict[str, str] = Field(default_factory=dict)
    extra: str = ""

    def overrides(self) -> dict[str, Any]:
        """Non-empty fields and extra lines as config overrides (typed and checked by RoundConfig)."""

        out: dict[str, Any] = {k: v.strip() for k, v in self.values.items() if v.strip()}
        if len(self.extra) > MAX_EXTRA_CHARS:
            raise Invalid(f"extra overrides are longer than {MAX_EXTRA_CHARS} characters")
        lines = [line.strip() for line in self.extra.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        try:
            out.update(parse_assignments(lines))
        except ConfigError as exc:
            raise Invalid(f"bad round config: {exc}") from exc
        return out


FLAG_FILTERS = ("", "any", "none", "unsafe", "incorrect")
STATUS_FILTERS = ("live", "dropped", "all")


class RankingQuery(BaseModel):
    """Filters of the rankings browser, as they arrive in the query string (empty = no filter)."""

    annotator: str = ""
    prompt_set: str = ""
    flag: str = ""
    since: str = ""
    until: str = ""
    status: str = "live"
    page: int = Field(default=1, ge=1, le=100_000)

    def params(self) -> dict[str, str]:
        """The filters to keep in pagination links."""
        return {
            "annotator": self.annotator,
            "prompt_set": self.prompt_set,
            "flag": self.flag,
            "since": self.since,
            "until": self.until,
            "status": "" if self.status == "live" else self.status,
        }


def parse_int(value: str, name: str) -> int | None:
    """An optional whole number from a query string; 422 naming the field otherwise."""
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"{name} must be a whole number") from None


def parse_day(value: str, name: str) -> dt.datetime | None:
    """An optional YYYY-MM-DD as the start of that UTC day."""
    value = value.strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name} must be a date like 2025-01-31") from None
    return dt.datetime.combine(day, dt.time(), dt.UTC)
