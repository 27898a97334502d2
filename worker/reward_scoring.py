"""Scoring replies with a reward model: "prompt + reply" token ids, right-padded batches, one scalar each.

Split from worker/reward.py (training) so scoring can be read on its own: the policy trainers, evaluation and
generation only score. A reply's score is the head's output at the last non-pad token of the exchange rendered
with the chat template; inputs are right-padded, so a score never depends on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from app.conversation import PromptLike
from worker.frozen_prefix import FrozenPrefix, run_model
from worker.models import format_exchange

# --- scoring --------------------------------------------------------------------------------------------


def score_texts(
    model: Any, tokenizer: Any, prompt: PromptLike, responses: Sequence[str], max_length: int
) -> torch.Tensor:
    """One scalar per reply, in one batch. Gradients flow when the caller has them enabled."""
    return score_exchanges(model, tokenizer, [(prompt, r) for r in responses], max_length)


def score_exchanges(
    model: Any, tokenizer: Any, exchanges: Sequence[tuple[PromptLike, str]], max_length: int
) -> torch.Tensor:
    return score_ids(model, tokenizer, encode_exchanges(tokenizer, exchanges, max_length))


def encode_exchanges(
    tokenizer: Any, exchanges: Sequence[tuple[PromptLike, str]], max_length: int
) -> list[list[int]]:
    """Token ids of each "prompt + reply" as the reward model reads it, longer ones cut from the left."""
    texts = [format_exchange(tokenizer, p, r) for p, r in exchanges]
    tokenizer.truncation_side = "left"
    add_special = not getattr(tokenizer, "chat_template", None)
    enc = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=add_special)
    return [list(ids) for ids in enc["input_ids"]]


def score_ids(
    model: Any, tokenizer: Any, ids: Sequence[Sequence[int]], prefix: FrozenPrefix | None = None
) -> torch.Tensor:
    """One scalar per token sequence, in one batch padded to its longest member. With `prefix`, the frozen
    bottom layers run once per sequence (worker.frozen_prefix)."""
    # Right padding: with left padding the real tokens would sit at shifted positions, so a reply's score
    # would depend on how long its batch-mates are.
    longest = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), longest), int(tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(list(x), dtype=torch.long)
        mask[row, : len(x)] = 1
    device = next(model.parameters()).device
    out = run_model(model, input_ids.to(device), mask.to(device), prefix)
    return out.logits[:, 0]


class RewardModel:
    """A trained reward model ready to score replies."""

    def __init__(
        self, model: Any, tokenizer: Any, max_length: int, prefix: FrozenPrefix | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix = prefix  # the training loop's cache of the frozen layers, when it has one

    @torch.inference_mode()
    def score(self, prompt: PromptLike, responses: Sequence[str], batch_size: int = 16) -> list[float]:
        return self.score_exchanges([(prompt, r) for r in responses], batch_size)

    @torch.inference_mode()
    def score_exchanges(
        self,
        exchanges: Sequence[tuple[PromptLike, str]],
        batch_size: int = 16,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[float]:
        """Scores in input order. Each distinct exchange is scored once, in batches of similar length (a
        batch is padded to its longest member); `on_batch(tokens)` hears each batch's padded token count."""
        unique = list(dict.fromkeys(exchanges))
        ids = encode_exchanges(self.tokenizer, unique, self.max_length)
        order = sorted(range(len(unique)), key=lambda i: len(ids[i]))
        by_exchange: dict[tuple[PromptLike, str], float] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = score_ids(self.model, self.tokenizer, [ids[i] for i in chunk], self.prefix)
            scores = batch.float().tolist()
            by_exchange.update((unique[i], v) for i, v in zip(chunk, scores, strict=True))
            if on_batch is not None:
                on_batch(len(chunk) * max(len(ids[i]) for i in chunk))
        return [by_exchange[e] for e in exchanges]

    def eval_tokens(self, exchanges: Sequence[tuple[PromptLike, str]], batch_size: int = 16) -> int:
        """Padded tokens `score_exchanges` will run for these exchanges (for ETAs)."""
        unique = list(dict.fromkeys(exchanges))
        lengths = sorted(len(x) for x in encode_exchanges(self.tokenizer, unique, self.max_length))
        return sum(
            len(lengths[i : i + batch_size]) * lengths[min(i + batch_size, len(lengths)) - 1]
            for i in range(0, len(lengths), batch_size)
        )
