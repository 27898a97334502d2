"""Model version directories: complete or absent, never overwritten, verifiable, and loadable as saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.worker.conftest import marker_rankings
from worker import artifacts, models, reward


def _leftovers(artifacts_dir: Path) -> list[str]:
    return sorted(p.name for p in artifacts_dir.iterdir() if p.is_dir())


def test_policy_adapter_round_trip(tiny_llama: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    policy = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_llama)), LoraConfig(r=4, init_lora_weights=False)
    )
    policy.eval()
    ids = torch.tensor([[1, 3, 30, 31, 2, 1, 4]])
    with torch.no_grad():
        expected = policy(input_ids=ids).logits

    store = tmp_path / "artifacts"
    config = {"lr": 1e-4, "beta": 0.1}
    with artifacts.stage_version(
        store, "policy", 7, config=config, data_snapshot_id=3, parent_id=5, base_model=str(tiny_llama)
    ) as staged:
        policy.save_pretrained(str(staged.path))
        staged.metrics = {"heldout_loss": 0.5}
        assert not staged.final.exists()  # nothing visible before the block ends
    assert staged.final == store / "policy-7"
    assert _leftovers(store) == ["policy-7"]

    info = artifacts.read_version(staged.final)
    assert info["kind"] == "policy" and info["name"] == "7"
    assert (info["parent_id"], info["data_snapshot_id"], info["base_model"]) == (5, 3, str(tiny_llama))
    assert info["config"] == config and info["metrics"] == {"heldout_loss": 0.5}
    manifest = json.loads((staged.final / artifacts.MANIFEST_FILE).read_text())["files"]
    assert {"adapter_model.safetensors", "adapter_config.json", "metrics.json", "version.json"} <= set(
        manifest
    )
    assert artifacts.verify_version(staged.final) == []

    loaded, _ = models.load_causal_lm(str(tiny_llama), adapter_dir=staged.final)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)

    # A changed file is caught by the manifest.
    with open(staged.final / "adapter_config.json", "a") as f:
        f.write(" ")
    assert artifacts.verify_version(staged.final) == ["changed: adapter_config.json"]


def test_reward_model_round_trip(tiny_llama: Path, tmp_path: Path) -> None:
    cfg = reward.RewardConfig(base_model=str(tiny_llama), lr=2e-3, epochs=2, max_length=64, device="cpu")
    with artifacts.stage_version(tmp_path / "a", "reward", "rm-1", config=cfg.to_dict()) as staged:
        result = reward.train_reward_model(cfg, marker_rankings(12), staged.path)
        staged.metrics = result.metrics
        in_memory = reward.load_reward_model(staged.path).score("a b", ["the cat", "banana yes", "no"])
    published = reward.load_reward_model(staged.final)
    assert published.score("a b", ["the cat", "banana yes", "no"]) == pytest.approx(in_memory)
    assert artifacts.read_version(staged.final)["metrics"]["steps"] == result.metrics["steps"]


def test_existing_version_is_never_overwritten(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"first")
    store = tmp_path / "artifacts"
    final = artifacts.write_version(store, "reward", 1, source_dir=source, config={}, metrics={"a": 1})

    (source / "weights.bin").write_bytes(b"second")
    with pytest.raises(FileExistsError):
        artifacts.write_version(store, "reward", 1, source_dir=source, config={}, metrics={"a": 2})
    assert (final / "weights.bin").read_bytes() == b"first"
    assert artifacts.read_version(final)["metrics"] == {"a": 1}
    assert _leftovers(store) == ["reward-1"]

    # Also when the other writer publishes while this one is still staging.
    with pytest.raises(FileExistsError), artifacts.stage_version(store, "reward", 2, config={}) as staged:
        (staged.path / "weights.bin").write_bytes(b"late")
        artifacts.write_version(store, "reward", 2, source_dir=source, config={}, metrics={})
    assert (store / "reward-2" / "weights.bin").read_bytes() == b"second"
    assert _leftovers(store) == ["reward-1", "reward-2"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "artifacts"
    real_write_json = artifacts._write_json

    def disk_full_on_metrics(path: Path, data: object) -> None:
        if path.name == artifacts.METRICS_FILE:
            raise OSError(28, "No space left on device")
        real_write_json(path, data)

    # Fault injection: the real writer, failing part-way through the version's files.
    monkeypatch.setattr(artifacts, "_write_json", disk_full_on_metrics)
    with (
        pytest.raises(OSError, match="No space"),
        artifacts.stage_version(store, "policy", 1, config={}) as staged,
    ):
        (staged.path / "adapter_model.safetensors").write_bytes(b"weights")
    assert not (store / "policy-1").exists()
    assert _leftovers(store) == []

    # An error inside the block (e.g. training failed) publishes nothing either.
    monkeypatch.undo()
    with pytest.raises(RuntimeError), artifacts.stage_version(store, "policy", 1, config={}) as staged:
        (staged.path / "adapter_model.safetensors").write_bytes(b"weights")
        raise RuntimeError("training diverged")
    assert _leftovers(store) == []

    # The name is still free afterwards.
    with artifacts.stage_version(store, "policy", 1, config={}) as staged:
        (staged.path / "adapter_model.safetensors").write_bytes(b"weights")
    assert _leftovers(store) == ["policy-1"]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("policy", "../evil"),
        ("policy", "a/b"),
        ("policy", ""),
        ("", "1"),
        ("../x", "1"),
        ("policy", "x" * 300),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, kind: str, name: str) -> None:
    with pytest.raises(ValueError, match="invalid model version name"):
        artifacts.stage_version(tmp_path, kind, name, config={}).__enter__()
    assert list(tmp_path.iterdir()) == []
    assert artifacts.version_dir_name("policy", 12) == "policy-12"


def test_stale_staging_dirs_are_removable(tmp_path: Path) -> None:
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / ".tmp-abc" / "half.bin").write_bytes(b"x")
    (tmp_path / "policy-1").mkdir()
    removed = artifacts.remove_stale_tmp(tmp_path)
    assert [p.name for p in removed] == [".tmp-abc"]
    assert _leftovers(tmp_path) == ["policy-1"]


def test_bf16_loading_path(tiny_llama: Path, tmp_path: Path) -> None:
    """What a GPU gets (bf16 base weights, adapter saved from fp32 training) loads and runs; here on CPU."""
    from worker.generation import CandidateConfig, SamplingParams, generate_candidates

    bf16 = models.DeviceSpec(torch.device("cpu"), torch.bfloat16)
    cfg = reward.RewardConfig(base_model=str(tiny_llama), epochs=2, lr=2e-3, max_length=64, device="cpu")
    reward.train_reward_model(cfg, marker_rankings(12), tmp_path / "rm")
    fp32_scores = reward.load_reward_model(tmp_path / "rm").score("a b", ["the cat", "banana yes"])
    bf16_scores = reward.load_reward_model(tmp_path / "rm", device=bf16).score(
        "a b", ["the cat", "banana yes"]
    )
    assert bf16_scores == pytest.approx(fp32_scores, abs=0.1)

    policy, tokenizer = models.load_causal_lm(str(tiny_llama), device=bf16)
    assert next(policy.parameters()).dtype == torch.bfloat16
    out = generate_candidates(
        policy,
        tokenizer,
        ["tell me"],
        CandidateConfig(k=2, seed=0, sampling=SamplingParams(max_new_tokens=6)),
    )
    assert len(out.candidates[0]) == 2
