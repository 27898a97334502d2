"""Caching the frozen bottom of a transformer: the hidden states entering its lowest trainable layer.

With LoRA on the top layers only (`lora_top_layers` < 1, worker.models.top_layers), every layer below the
lowest adapted one is frozen: for a given token sequence it computes the same hidden states at every step,
every evaluation and in the reference pass. The hand-written trainers (worker/policy_dpo_ranking.py, and
worker/reward.py through worker/reward_scoring.py) run each sequence many times over (epochs, held-out
evaluations), so they route their forward passes through a `FrozenPrefix`:

- a pass over a batch with some sequence not yet cached is the model's full forward; a pre-hook on the
  lowest trainable layer copies each sequence's input hidden states (its real tokens only, shape
  (tokens, hidden)) to the CPU, keyed by its token ids;
- a pass over a batch whose sequences are all cached runs the model's own forward with the frozen layers'
  `forward` replaced by one that returns the cached batch (right-padded with zeros). The model still embeds
  the tokens and builds its masks and position embeddings (cheap), so nothing architecture-specific is
  re-implemented: the trainable layers get exactly the arguments they always get.

Why zero padding is exact: inputs are right-padded and attention is causal, so a real position never attends
to a later (padded) one, and every other operation is per position; padded positions' outputs are garbage
either way and the callers mask them out (completion mask, last-non-pad score).

Where the result would not be the same, every pass is the full forward, silently: no layer list found (a
`ModuleList` as long as `config.num_hidden_layers`), nothing frozen below the lowest trainable layer, a
trainable parameter used before it (e.g. a trained embedding), a layer that returns more than a tensor,
gradient checkpointing, and training mode with active dropout below the lowest trainable layer.

Memory: tokens x hidden x 4 bytes (fp32) per cached sequence, e.g. SmolLM2-135M (hidden 576) 2.3 KB a token,
590 KB for a 256-token sequence; 1,000 rankings of 4 such candidates, 2.4 GB. Sequences beyond
`budget_bytes` are not cached; a batch holding one runs the full forward (correct, just not faster).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

BYTES_PER_MB = 1 << 20


def layer_list(model: Any) -> torch.nn.ModuleList | None:
    """The model's list of transformer layers (`model.model.layers`, `transformer.h`, ...): the one
    `ModuleList` as long as `config.num_hidden_layers`; None when there is none or several."""
    n = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    found = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    return found[0] if n > 1 and len(found) == 1 else None


def _has_active_dropout(module: torch.nn.Module) -> bool:
    if isinstance(module, torch.nn.Dropout) and module.p > 0:
        return True
    # Attention kernels take their dropout as a float attribute (Llama's `attention_dropout`).
    return any(
        "dropout" in name and isinstance(value, float) and value > 0 for name, value in vars(module).items()
    )


class FrozenPrefix:
    """Forward passes of one model that skip its frozen bottom layers for sequences seen before.

    Build with `FrozenPrefix.attach(model, budget_bytes)`; call `prefix(model, input_ids, attention_mask,
    **kwargs)` in place of `model(input_ids=..., attention_mask=..., **kwargs)` (inputs right-padded;
    `model` may be a wrapper of the attached one, e.g. DDP). Gradients flow through the trainable layers as
    in the full forward.
    """

    def __init__(self, layers: torch.nn.ModuleList, first: int, prefix_modules: list[torch.nn.Module]):
        self.layers = layers
        self.first = first  # index of the lowest layer with a trainable parameter
        self.dropout = any(_has_active_dropout(m) for m in prefix_modules)
        self.states: dict[tuple[int, ...], torch.Tensor] = {}
        self.budget_bytes = 0
        self.bytes = 0
        self.cached_passes = 0
        self.full_passes = 0

    @classmethod
    def attach(cls, model: Any, budget_bytes: int) -> FrozenPrefix | None:
        """A cache for `model` as it is now (its trainable parameters decide where the frozen part ends);
        None where it cannot be exact or `budget_bytes` is 0 (module docstring)."""
        layers = layer_list(model)
        # Checkpointed layers re-run their forward in the backward pass (transformers sets the flag on them).
        checkpointing = any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        if budget_bytes <= 0 or layers is None or checkpointing:
            return None
        trainable = [any(p.requires_grad for p in layer.parameters()) for layer in layers]
        if True not in trainable or trainable.index(True) == 0:
            return None
        first = trainable.index(True)
        order = _call_order(model, layers[first])
        if order is None:
            return None
        before, output_is_tensor = order
        if any(p.requires_grad for m in before for p in m.parameters(recurse=False)) or not output_is_tensor:
            return None
        prefix = cls(layers, first, before)
        prefix.budget_bytes = budget_bytes
        return prefix

    def __call__(
        self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any
    ) -> Any:
        kwargs = {"use_cache": False, **kwargs}
        # Keys and zero padding assume right padding (ones, then zeros); anything else runs whole.
        right_padded = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
        if (self.dropout and self.layers.training) or not right_padded:
            self.full_passes += 1
            return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [tuple(row[:n]) for row, n in zip(input_ids.tolist(), lengths, strict=True)]
        if not all(k in self.states for k in keys):
            self.full_passes += 1
            with self._capturing(keys):
                return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        self.cached_passes += 1
        first = self.states[keys[0]]
        batch = torch.zeros((len(keys), input_ids.shape[1], first.shape[-1]), dtype=first.dtype)
        for row, key in enumerate(keys):
            batch[row, : len(key)] = self.states[key]
        with self._feeding(batch.to(input_ids.device, non_blocking=True)):
            return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def metrics(self) -> dict[str, Any]:
        """JSON-ready: layers skipped, cache size, passes that used it and passes that did not."""
        return {
            "prefix_layers": self.first,
            "prefix_cache_sequences": len(self.states),
            "prefix_cache_mb": round(self.bytes / BYTES_PER_MB, 1),
            "prefix_cached_passes": self.cached_passes,
            "prefix_full_passes": self.full_passes,
        }

    @contextmanager
    def _capturing(self, keys: list[tuple[int, ...]]) -> Iterator[None]:
        """Stores the hidden states entering the lowest trainable layer, per sequence, while budget lasts."""

        def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            for row, key in enumerate(keys):
                size = len(key) * hidden.shape[-1] * hidden.element_size()
                if key in self.states or self.bytes + size > self.budget_bytes:
                    continue
                # A copy: a view would keep the whole padded batch alive.
                self.states[key] = hidden[row, : len(key)].detach().to("cpu", copy=True)
                self.bytes += size

        handle = self.layers[self.first].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def _feeding(self, batch: torch.Tensor) -> Iterator[None]:
        """The frozen layers return `batch` instead of computing (each instance's own `forward`, restored
        after, including one a library had set on the instance)."""
        frozen = list(self.layers)[: self.first]
        saved = [layer.__dict__.get("forward") for layer in frozen]
        for layer in frozen:
            layer.forward = lambda *args, **kwargs: batch
        try:
            yield
        finally:
            for layer, own in zip(frozen, saved, strict=True):
                if own is None:
                    del layer.forward
                else:
                    layer.forward = own


def _call_order(model: Any, target: torch.nn.Module) -> tuple[list[torch.nn.Module], bool] | None:
    """(the modules a forward pass calls before `target`, whether the layer before it returns a plain
    tensor), from one no-grad pass over two tokens; None when `target` is never called."""
    before: list[torch.nn.Module] = []
    seen: dict[str, Any] = {"target": False, "tensor": True}

    def pre(module: torch.nn.Module, _args: Any) -> None:
        if module is target:
            seen["target"] = True
        elif not seen["target"]:
            before.append(module)

    def post(module: torch.nn.Module, _args: Any, output: Any) -> None:
        if module is previous:
            seen["tensor"] = isinstance(output, torch.Tensor)

    layers = layer_list(model)
    assert layers is not None
    previous = layers[list(layers).index(target) - 1]
    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    handles.append(previous.register_forward_hook(post))
    device = next(model.parameters()).device
    ids = torch.zeros((1, 2), dtype=torch.long, device=device)
    # In eval mode, so no dropout draws from the random generator (a seeded run stays the same run).
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
    return (before, seen["tensor"]) if seen["target"] else None


def run_model(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prefix: FrozenPrefix | None = None,
    **kwargs: Any,
) -> Any:
    """`model(input_ids=..., attention_mask=..., **kwargs)`, through `prefix` when there is one."""
    if prefix is None:
        return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    return prefix(model, input_ids, attention_mask, **kwargs)
