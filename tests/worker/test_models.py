"""Base model resolution, tokenizer defaults and prompt formatting."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tests.worker.conftest import build_tokenizer
from worker import models


def test_tokenizer_gets_eos_as_pad_and_left_padding(tiny_llama: Path) -> None:
    tokenizer = models.load_tokenizer(str(tiny_llama))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"


def test_format_prompt_uses_chat_template_and_falls_back_to_plain_text() -> None:
    tokenizer = build_tokenizer()
    rendered = models.format_prompt(tokenizer, "tell me a story")
    assert rendered == "<|im_start|>user\ntell me a story<|im_end|>\n<|im_start|>assistant\n"
    exchange = models.format_exchange(tokenizer, "tell me a story", "yes")
    assert exchange.startswith(rendered.removesuffix("<|im_start|>assistant\n"))
    assert exchange.endswith("<|im_start|>assistant\nyes<|im_end|>\n")

    tokenizer.chat_template = None
    assert models.format_prompt(tokenizer, "tell me a story") == "tell me a story"
    assert models.format_exchange(tokenizer, "tell me", " a story") == "tell me a story"


def test_local_paths_and_hub_ids_pass_through(tmp_path: Path) -> None:
    assert models.resolve_model_path("/some/local/dir", tmp_path) == "/some/local/dir"
    assert models.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert not (tmp_path / "models").exists()


def test_device_preference() -> None:
    assert models.pick_device("cpu") == models.DeviceSpec(torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        models.pick_device("tpu")
    if not torch.cuda.is_available():
        assert models.pick_device().device.type == "cpu"
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            models.pick_device("cuda")


def test_failed_gguf_conversion_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A corrupt GGUF: the real conversion code fails on it part-way.
    broken = tmp_path / "pkg" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    broken.parent.mkdir()
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    monkeypatch.setattr(models, "gguf_path", lambda: broken)
    data_dir = tmp_path / "data"
    with pytest.raises(Exception):  # noqa: B017 - whatever the GGUF reader raises; the point is the cleanup
        models.ensure_default_model_cached(data_dir)
    cache_parent = data_dir / "models"
    assert not models.default_model_cache_dir(data_dir).exists()
    assert [p.name for p in cache_parent.iterdir() if p.is_dir()] == []


@pytest.mark.slow
def test_real_default_model_is_cached_once_and_generates(tmp_path: Path) -> None:
    """The shipped GGUF: converted in a fresh data dir while a second process races for it, then reloaded."""
    import subprocess
    import sys

    from worker.generation import CandidateConfig, SamplingParams, generate_candidates

    data_dir = tmp_path / "data"
    # A second process asks for the same cache at the same time: the lock must give both one directory.
    racer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from worker.models import ensure_default_model_cached; "
            "print(ensure_default_model_cached(Path(sys.argv[1])))",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    t0 = time.perf_counter()
    model, tokenizer = models.load_causal_lm(models.DEFAULT_MODEL_NAME, data_dir=data_dir)
    first_load = time.perf_counter() - t0
    out, _ = racer.communicate(timeout=600)
    assert racer.returncode == 0
    cache = models.default_model_cache_dir(data_dir)
    assert Path(out.strip().splitlines()[-1]) == cache
    assert (cache / "model.safetensors").is_file()
    assert [p.name for p in (data_dir / "models").iterdir() if p.is_dir()] == [cache.name]

    prompts = ["Name one fruit.", "What colour is the sky?"]
    cfg = CandidateConfig(k=2, seed=1234, sampling=SamplingParams(temperature=0.7, max_new_tokens=24))
    first = generate_candidates(model, tokenizer, prompts, cfg)
    assert [len(c) for c in first.candidates] == [2, 2]
    assert all(c.text and c.prompt_tokens > 10 for cs in first.candidates for c in cs)

    t0 = time.perf_counter()
    model2, tokenizer2 = models.load_causal_lm(models.DEFAULT_MODEL_NAME, data_dir=data_dir)
    cached_load = time.perf_counter() - t0
    second = generate_candidates(model2, tokenizer2, prompts, cfg)
    assert [[c.text for c in cs] for cs in second.candidates] == [
        [c.text for c in cs] for cs in first.candidates
    ]
    assert cached_load < first_load
    print(
        f"\nGGUF load+convert {first_load:.1f}s, cached load {cached_load:.2f}s, "
        f"generation {first.tokens_per_second:.1f} tokens/s ({first.completion_tokens} tokens)"
    )
