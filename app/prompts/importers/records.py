"""What every import format reads into: `Record`s, and the checks shared by the formats.

A check raises `LineError` for one line; `app.prompts.importers` collects them so that the user sees every
bad line at once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.annotation.tiers import MAX_CANDIDATES, MIN_CANDIDATES, validate_tiers
from app.conversation import PromptLike, flatten
from app.errors import Invalid
from app.text import NAME_CHARS, TAG_CHARS, text_problem

M = TypeVar("M", bound=BaseModel)

DEFAULT_MODEL = "imported"
# The external model version that authors demonstrations (a person, not a model).
DEMONSTRATIONS_MODEL = "demonstrations"


@dataclass
class Record:
    """One prompt, optionally with candidates and a ranking of them (tiers of indexes, best first)."""

    line: int
    # A text, or a conversation ending with a user turn (app.conversation).
    prompt: PromptLike
    tags: list[str] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    tiers: list[list[int]] | None = None
    model: str = DEFAULT_MODEL
    source: str = "import"
    # Per completion, stored as the candidate's generation_params (where an imported text came from).
    completion_meta: list[dict[str, Any]] = field(default_factory=list)
    # Per completion, the model version that wrote it, where they differ (else `model` for all).
    completion_models: list[str] = field(default_factory=list)
    all_bad: bool = False

    def models(self) -> list[str]:
        """The model version name of each completion."""
        return self.completion_models or [self.model] * len(self.completions)


@dataclass
class Parsed:
    records: list[Record]
    # Open-Assistant replies left out because their text is blank (their own replies go with them).
    left_out: int = 0


class LineError(Exception):
    """A problem with one line; collected so that the user sees every bad line at once."""


def check_storable(record: Record) -> None:
    """Every text of a record under app.text's rule: what the line schemas checked, and what the
    importer made of them (a rendered conversation, tags from CSV, provenance strings)."""
    fields: list[tuple[str, str, dict[str, Any]]] = [
        ("prompt", flatten(record.prompt), {"blank_ok": False}),
        ("model", record.model, {"one_line": True, "blank_ok": False, "max_chars": NAME_CHARS}),
    ]
    fields += [
        ("tags", t, {"one_line": True, "blank_ok": False, "max_chars": TAG_CHARS}) for t in record.tags
    ]
    fields += [("completions", c, {"blank_ok": False}) for c in record.completions]
    fields += [("model_version", m, {"one_line": True, "blank_ok": False}) for m in record.completion_models]
    fields += [
        (k, v, {"one_line": True})
        for meta in record.completion_meta
        for k, v in meta.items()
        if isinstance(v, str)
    ]
    for name, value, rule in fields:
        problem = text_problem(value, **rule)
        if problem:
            raise LineError(f"{name}: {problem}")


def validate(model: type[M], obj: dict[str, Any]) -> M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:3]:
            where = ".".join(str(p) for p in err["loc"]) or "line"
            if err["type"] == "conversation" and err.get("ctx", {}).get("at"):
                # app.conversation names the bad turn ("2.content") below the field.
                where = f"{where}.{err['ctx']['at']}"
            message = "must not be blank" if err["type"] == "string_pattern_mismatch" else err["msg"]
            problems.append(f"{where}: {message}")
        raise LineError("; ".join(problems)) from exc


def unique(tags: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def check_group(completions: Sequence[Hashable]) -> None:
    if not MIN_CANDIDATES <= len(completions) <= MAX_CANDIDATES:
        raise LineError(
            f"completions: a group needs {MIN_CANDIDATES} to {MAX_CANDIDATES} completions, "
            f"got {len(completions)}"
        )
    seen: dict[Hashable, int] = {}
    for index, text in enumerate(completions):
        if text in seen:
            raise LineError(f"completions: {seen[text]} and {index} are the same text")
        seen[text] = index


def check_ranking(ranking: list[list[int]], size: int) -> list[list[int]]:
    bad = sorted({i for tier in ranking for i in tier if not 0 <= i < size})
    if bad:
        raise LineError(f"ranking: indexes {bad} are outside completions (0..{size - 1})")
    try:
        return validate_tiers(ranking, range(size))
    except Invalid as exc:
        raise LineError(f"ranking: {exc.message}") from exc
