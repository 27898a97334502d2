"""The model store (worker/store.py): versions published to the data directory or an fsspec URL (fsspec's
memory and local filesystems stand in for S3), read back through each host's verified cache."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from app.config import Settings
from worker import artifacts, store
from worker.store import ModelStore, VersionUnavailable, open_version


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    """What a trainer leaves: an adapter file and a nested file."""
    out = tmp_path / "trained"
    (out / "head").mkdir(parents=True)
    (out / "adapter_model.safetensors").write_bytes(b"weights" * 1000)
    (out / "adapter_config.json").write_text('{"r": 8}')
    (out / "head" / "score.bin").write_bytes(b"\x00\x01" * 50)
    return out


@pytest.fixture(params=["memory", "file"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://rankloop-{uuid.uuid4().hex[:8]}/versions"
    return (tmp_path / "shared-store").as_uri()


def host(url: str | None, root: Path, name: str) -> ModelStore:
    """One host's view: its own data directory and cache, the shared store."""
    return ModelStore(url, root / name / "artifacts", root / name / "model-cache")


def publish(s: ModelStore, trained: Path, name: str = "round1-a1") -> str:
    return s.publish(
        "policy", name, source_dir=trained, config={"lr": 1e-4}, metrics={"loss": 0.5}, parent_id=3
    )


def test_by_default_versions_live_in_the_data_directory_and_are_read_in_place(tmp_path, trained):
    local = host(None, tmp_path, "a")
    location = publish(local, trained)
    assert location == str(tmp_path / "a" / "artifacts" / "policy-round1-a1")
    assert local.open(location) == Path(location)
    assert (Path(location) / "head" / "score.bin").read_bytes() == b"\x00\x01" * 50
    assert local.version_names("policy-round1-") == ["policy-round1-a1"]

    (Path(location) / "adapter_model.safetensors").write_bytes(b"tampered")
    with pytest.raises(VersionUnavailable, match="corrupt: changed: adapter_model"):
        local.open(location)


def test_a_local_version_of_another_host_says_how_to_share_versions(tmp_path):
    with pytest.raises(VersionUnavailable, match="RANKLOOP_MODEL_STORE"):
        open_version(str(tmp_path / "elsewhere" / "policy-round1-a1"), tmp_path / "cache")


def test_a_version_published_on_one_host_is_fetched_and_verified_on_another(tmp_path, trained, store_url):
    trainer, generator = host(store_url, tmp_path, "gpu"), host(store_url, tmp_path, "cpu")
    location = publish(trainer, trained)
    assert location == f"{store_url}/policy-round1-a1"
    assert not (tmp_path / "gpu" / "artifacts").exists()  # nothing in the data directory

    copy = generator.open(location)
    assert copy.is_relative_to(tmp_path / "cpu" / "model-cache")
    for rel in ("adapter_model.safetensors", "adapter_config.json", "head/score.bin"):
        assert (copy / rel).read_bytes() == (trained / rel).read_bytes()
    info = artifacts.read_version(copy)
    assert info["kind"] == "policy" and info["parent_id"] == 3 and info["metrics"] == {"loss": 0.5}
    manifest = json.loads((copy / artifacts.MANIFEST_FILE).read_text())
    assert manifest["files"]["head/score.bin"]["sha256"] == store._sha256(trained / "head" / "score.bin")
    # The training host reads its own copy, made while publishing: no download.
    assert trainer.open(location).is_relative_to(tmp_path / "gpu" / "model-cache")


def test_a_corrupt_or_partial_cache_is_fetched_again(tmp_path, trained, store_url):
    location = publish(host(store_url, tmp_path, "gpu"), trained)
    generator = host(store_url, tmp_path, "cpu")
    copy = generator.open(location)

    (copy / "adapter_model.safetensors").write_bytes(b"bit rot")
    (copy / "head" / "score.bin").unlink()
    (copy / "stray.tmp").write_text("left by a killed download")
    again = generator.open(location)
    assert again == copy
    assert (again / "adapter_model.safetensors").read_bytes() == b"weights" * 1000
    assert (again / "head" / "score.bin").exists() and not (again / "stray.tmp").exists()
    assert artifacts.verify_version(again) == []
    assert not [p for p in copy.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_an_upload_without_its_manifest_is_not_a_version_and_can_be_swept(tmp_path, trained, store_url):
    trainer = host(store_url, tmp_path, "gpu")
    location = publish(trainer, trained)
    fs, path = store._fs(location)
    fs.rm(f"{path}/{artifacts.MANIFEST_FILE}")  # as if the upload had been cut before its last write

    with pytest.raises(VersionUnavailable, match="not published"):
        host(store_url, tmp_path, "cpu").open(location)
    assert trainer.version_names("policy-round1-") == ["policy-round1-a1"]
    trainer.remove("policy-round1-a1")
    assert trainer.version_names("policy-round1-") == []
    # The name is free again once swept.
    assert publish(trainer, trained) == location


def test_a_failed_upload_leaves_nothing_in_the_store(tmp_path, trained, store_url, monkeypatch):
    trainer = host(store_url, tmp_path, "gpu")
    real_put = store._put

    def network_drops_on_the_manifest(fs, local: Path, remote: str) -> None:
        if local.name == artifacts.MANIFEST_FILE:
            raise ConnectionError("connection reset by peer")
        real_put(fs, local, remote)

    monkeypatch.setattr(store, "_put", network_drops_on_the_manifest)
    with pytest.raises(ConnectionError):
        publish(trainer, trained)
    assert trainer.version_names("policy-") == []
    assert not list((tmp_path / "gpu" / "model-cache").rglob("adapter_model.safetensors"))


def test_a_version_corrupted_in_the_store_is_refused(tmp_path, trained, store_url):
    location = publish(host(store_url, tmp_path, "gpu"), trained)
    fs, path = store._fs(location)
    fs.pipe_file(f"{path}/adapter_config.json", b'{"r": 64}')
    with pytest.raises(VersionUnavailable, match="does not match its manifest"):
        host(store_url, tmp_path, "cpu").open(location)
    assert not list((tmp_path / "cpu" / "model-cache").rglob("adapter_config.json"))


def test_a_published_version_is_never_overwritten(tmp_path, trained, store_url):
    trainer = host(store_url, tmp_path, "gpu")
    publish(trainer, trained)
    with pytest.raises(FileExistsError):
        publish(host(store_url, tmp_path, "other-gpu"), trained)


def test_the_setting_names_the_store(tmp_path):
    assert store.store_url(None) is None and store.store_url(" ") is None
    assert store.store_url("s3://bucket/models/") == "s3://bucket/models"
    assert store.store_url(str(tmp_path / "mnt")) == (tmp_path / "mnt").as_uri()
    settings = Settings(data_dir=tmp_path / "data", model_store="memory://x/y")
    s = ModelStore.from_settings(settings)
    assert s.url == "memory://x/y" and s.cache_dir == (tmp_path / "data" / "model-cache").resolve()
