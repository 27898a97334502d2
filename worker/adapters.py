"""One base model in memory serving several LoRA adapters (each project's policy line is an adapter on a
shared base): PEFT's multi-adapter API loads each adapter once beside the others (`load_adapter`) and
switches between them (`set_adapter`), so generating or scoring for several projects, or comparing a new
policy with the active one, loads the base weights once instead of once per version.

Adapters stay unmerged (merging would change the shared base weights), which costs a little speed per
token against a merged model; the base load it saves is the larger cost. The untrained base model itself
is served with every adapter disabled.

`RewardHost` does the same for reward models (a sequence-classification backbone, each project's LoRA
adapter with its own scalar head): generation's candidate scoring, a round's evaluation and `eval-rm` score
through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from worker.models import DeviceSpec, load_causal_lm, pick_device


class AdapterHost:
    """A base model loaded on first use, with named LoRA adapters loaded on demand and switched."""

    def __init__(
        self, base_model: str, *, data_dir: Path | None = None, device: DeviceSpec | None = None
    ) -> None:
        self.base_model = base_model
        self.data_dir = data_dir
        self.device = device or pick_device()
        self.base_loads = 0  # how many times the base weights were read: once per host
        self._base: Any = None
        self._peft: Any = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._adapters: dict[str, str] = {}  # name -> directory

    def _load_base(self) -> None:
        if self._base is None:
            self._base, self._tokenizer = load_causal_lm(
                self.base_model, data_dir=self.data_dir, device=self.device
            )
            self.base_loads += 1

    @property
    def adapters(self) -> list[str]:
        """The names of the adapters loaded so far."""
        return list(self._adapters)

    @property
    def base_module(self) -> Any:
        """The one base model all adapters share (loaded if needed)."""
        self._load_base()
        return self._base

    def _ensure_adapter(self, name: str, adapter_dir: Path) -> None:
        from peft import PeftModel

        known = self._adapters.get(name)
        if known is not None:
            if known != str(adapter_dir):
                raise ValueError(f"adapter {name!r} is loaded from {known}, not {adapter_dir}")
            return
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, str(adapter_dir), adapter_name=name)
        else:
            self._peft.load_adapter(str(adapter_dir), adapter_name=name)
        self._peft.to(self.device.device)
        self._peft.eval()
        self._adapters[name] = str(adapter_dir)

    @contextlib.contextmanager
    def use(
        self, name: str | None, adapter_dir: Path | None
    ) -> Iterator[tuple[Any, PreTrainedTokenizerBase]]:
        """The model with adapter `name` (from `adapter_dir`) active, or the plain base model for None:
        (model, tokenizer) for generation or scoring inside the block."""
        self._load_base()
        assert self._tokenizer is not None
        if adapter_dir is None or name is None:
            if self._peft is None:
                yield self._base, self._tokenizer
            else:
                with self._peft.disable_adapter():
                    yield self._peft, self._tokenizer
            return
        self._ensure_adapter(name, adapter_dir)
        self._peft.set_adapter(name)
        yield self._peft, self._tokenizer


class RewardHost:
    """Reward models on a shared base: one sequence-classification backbone loaded on first use, each
    project's reward model (a LoRA adapter plus its own scalar head, PEFT's modules_to_save) loaded beside
    the others and switched, so scoring or evaluating for several projects reads the base weights once."""

    def __init__(
        self, base_model: str, *, data_dir: Path | None = None, device: DeviceSpec | None = None
    ) -> None:
        self.base_model = base_model
        self.data_dir = data_dir
        self.device = device or pick_device()
        self.base_loads = 0
        self._base: Any = None
        self._peft: Any = None
        self._adapters: dict[str, tuple[str, Any, int]] = {}  # name -> (directory, tokenizer, max_length)

    @property
    def adapters(self) -> list[str]:
        """The names of the reward models loaded so far."""
        return list(self._adapters)

    def _load_base(self, tokenizer: PreTrainedTokenizerBase) -> None:
        from worker.models import resolve_model_path
        from worker.reward import _load_backbone

        if self._base is None:
            self._base = _load_backbone(resolve_model_path(self.base_model, self.data_dir), self.device.dtype)
            self._base.config.pad_token_id = tokenizer.pad_token_id
            self.base_loads += 1

    def _ensure_adapter(self, name: str, model_dir: Path) -> tuple[Any, int]:
        import json

        from peft import PeftModel

        from worker.models import load_tokenizer
        from worker.reward import REWARD_CONFIG_FILE

        known = self._adapters.get(name)
        if known is not None:
            if known[0] != str(model_dir):
                raise ValueError(f"reward model {name!r} is loaded from {known[0]}, not {model_dir}")
            return known[1], known[2]
        from worker.models import resolve_model_path

        meta = json.loads((Path(model_dir) / REWARD_CONFIG_FILE).read_text())
        here = resolve_model_path(self.base_model, self.data_dir)
        if resolve_model_path(meta["base_model"], self.data_dir) != here:
            raise ValueError(f"reward model {name!r} is on {meta['base_model']!r}, not {self.base_model!r}")
        tokenizer = load_tokenizer(str(model_dir), padding_side="right")
        self._load_base(tokenizer)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self._base, str(model_dir), adapter_name=name)
        else:
            self._peft.load_adapter(str(model_dir), adapter_name=name)
        self._peft.to(self.device.device)
        self._peft.eval()
        self._adapters[name] = (str(model_dir), tokenizer, int(meta["max_length"]))
        return tokenizer, int(meta["max_length"])

    def use(self, name: str, model_dir: Path) -> Any:
        """The reward model `name` (from `model_dir`, as `train_reward_model` wrote it) active: a
        worker.reward_scoring.RewardModel that scores with it until the next `use`."""
        from worker.reward_scoring import RewardModel

        tokenizer, max_length = self._ensure_adapter(name, model_dir)
        self._peft.set_adapter(name)
        return RewardModel(self._peft, tokenizer, max_length)
