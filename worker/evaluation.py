"""Score a file of preference pairs with a published reward model (`rankloop eval-rm`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from worker.data import PreferencePair


class PairsFileError(ValueError):
    """The pairs file is malformed; the message names the line."""


@dataclass(frozen=True)
class PairsScore:
    accuracy: float
    pairs: int
    loss: float


def _text(value: Any, line: int, key: str) -> str:
    # TRL's conversational format holds a list of messages; the last message is the text that matters.
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise PairsFileError(f"line {line}: {key} must be non-empty text")
    return value


def read_pairs(path: Path) -> list[PreferencePair]:
    """TRL preference pairs, JSONL `{"prompt", "chosen", "rejected"}` (standard or conversational)."""
    pairs = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise PairsFileError(f"line {number}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise PairsFileError(f"line {number}: expected a JSON object")
        prompt = obj.get("prompt")
        if isinstance(prompt, list):
            prompt = next(
                (m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"), None
            )
        pairs.append(
            PreferencePair(
                _text(prompt, number, "prompt"),
                _text(obj.get("chosen"), number, "chosen"),
                _text(obj.get("rejected"), number, "rejected"),
            )
        )
    if not pairs:
        raise PairsFileError("the file holds no pairs")
    return pairs


def evaluate_pairs_file(path: Path, model_dir: Path, base_model: str, settings: Settings) -> PairsScore:
    """Pairwise accuracy of the reward model in `model_dir` on the file's pairs."""
    from worker.reward import evaluate_reward_model

    pairs = read_pairs(path)
    result = evaluate_reward_model(model_dir, pairs, data_dir=settings.data_dir)
    return PairsScore(accuracy=result.accuracy, pairs=result.count, loss=result.loss)
