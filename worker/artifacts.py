"""Immutable model version directories: `<artifacts>/<kind>-<id or name>/`, written atomically.

A version is assembled in `<artifacts>/.tmp-<uuid>/` and renamed into place only once complete, so a
reader (the web app, another worker) either sees the whole version or nothing; a crash or error mid-way
leaves at most a `.tmp-*` directory, which `remove_stale_tmp` clears. An existing version is never
overwritten.

Contents: the model files at the top level (a LoRA adapter, plus the head for reward models, loadable with
`PeftModel.from_pretrained(base, dir)` / `worker.reward.load_reward_model(dir)`), and
- `training_config.json`: the config the model was trained with,
- `metrics.json`: what training measured,
- `version.json`: kind, name, parent id, data snapshot id, creation time,
- `manifest.json`: sha256 and size of every other file, checked by `verify_version`.

Typical use, with the trainer writing straight into the staging directory:

    with stage_version(artifacts_dir, "reward", 12, config=cfg.to_dict(), parent_id=7) as staged:
        result = train_reward_model(cfg, rankings, staged.path)
        staged.metrics = result.metrics
    # staged.final is now <artifacts_dir>/reward-12
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"
VERSION_FILE = "version.json"
MANIFEST_FILE = "manifest.json"
_KIND = re.compile(r"[a-z][a-z0-9_]{0,39}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")
_TMP_PREFIX = ".tmp-"


@dataclass
class StagedVersion:
    path: Path  # write the model files here (the staging directory)
    final: Path  # where the version appears once complete
    metrics: dict[str, Any] = field(default_factory=dict)  # set before the `with` block ends


def version_dir_name(kind: str, name: str | int) -> str:
    """`<kind>-<name>`, refusing anything that could escape the artifacts directory."""
    dir_name = f"{kind}-{name}"
    if not _KIND.fullmatch(kind) or not _NAME.fullmatch(str(name)) or ".." in dir_name:
        raise ValueError(f"invalid model version name: {dir_name!r}")
    return dir_name


def version_path(artifacts_dir: Path, kind: str, name: str | int) -> Path:
    return Path(artifacts_dir) / version_dir_name(kind, name)


@contextmanager
def stage_version(
    artifacts_dir: Path,
    kind: str,
    name: str | int,
    *,
    config: dict[str, Any],
    data_snapshot_id: int | None = None,
    parent_id: int | None = None,
    base_model: str | None = None,
) -> Iterator[StagedVersion]:
    """Yield a staging directory; on a clean exit publish it as `<kind>-<name>`, on any error delete it."""
    artifacts_dir = Path(artifacts_dir)
    final = version_path(artifacts_dir, kind, name)
    # Fail before any (possibly hours of) training goes into a version that cannot be published.
    if final.exists():
        raise FileExistsError(f"model version {final.name} already exists")
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    tmp = artifacts_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    staged = StagedVersion(path=tmp, final=final)
    try:
        yield staged
        version = {
            "kind": kind,
            "name": str(name),
            "base_model": base_model,
            "parent_id": parent_id,
            "data_snapshot_id": data_snapshot_id,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        _write_json(tmp / CONFIG_FILE, config)
        _write_json(tmp / METRICS_FILE, staged.metrics)
        _write_json(tmp / VERSION_FILE, version)
        _write_json(tmp / MANIFEST_FILE, {"algorithm": "sha256", "files": _hash_tree(tmp)})
        # The lock makes check-then-rename one step against other writers: rename(2) would silently
        # replace an existing *empty* directory.
        with FileLock(str(artifacts_dir / ".publish.lock")):
            if final.exists():
                raise FileExistsError(f"model version {final.name} already exists")
            os.rename(tmp, final)
        _fsync_dir(artifacts_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_version(
    artifacts_dir: Path,
    kind: str,
    name: str | int,
    *,
    source_dir: Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_snapshot_id: int | None = None,
    parent_id: int | None = None,
    base_model: str | None = None,
) -> Path:
    """Publish the files of a directory (e.g. a trainer's output) as a new version; return its path."""
    with stage_version(
        artifacts_dir,
        kind,
        name,
        config=config,
        data_snapshot_id=data_snapshot_id,
        parent_id=parent_id,
        base_model=base_model,
    ) as staged:
        shutil.copytree(source_dir, staged.path, dirs_exist_ok=True)
        staged.metrics = metrics
    return staged.final


def read_version(path: Path) -> dict[str, Any]:
    """version.json merged with the training config and metrics of a published version."""
    path = Path(path)
    info: dict[str, Any] = json.loads((path / VERSION_FILE).read_text())
    info["config"] = json.loads((path / CONFIG_FILE).read_text())
    info["metrics"] = json.loads((path / METRICS_FILE).read_text())
    info["path"] = str(path)
    return info


def verify_version(path: Path) -> list[str]:
    """Problems found against the manifest (changed, missing or unexpected files); empty when intact."""
    path = Path(path)
    expected = json.loads((path / MANIFEST_FILE).read_text())["files"]
    actual = _hash_tree(path)
    problems = [f"missing: {name}" for name in sorted(set(expected) - set(actual))]
    problems += [f"unexpected: {name}" for name in sorted(set(actual) - set(expected))]
    problems += [
        f"changed: {name}"
        for name in sorted(set(expected) & set(actual))
        if expected[name]["sha256"] != actual[name]["sha256"]
    ]
    return problems


def remove_stale_tmp(artifacts_dir: Path) -> list[Path]:
    """Delete staging directories left by crashed writers. Call only when no writer is running."""
    removed = []
    for child in Path(artifacts_dir).glob(f"{_TMP_PREFIX}*"):
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _hash_tree(root: Path) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or (path.name == MANIFEST_FILE and path.parent == root):
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            # The rename publishes the version; its files must be on disk before that.
            os.fsync(f.fileno())
        files[path.relative_to(root).as_posix()] = {
            "sha256": digest.hexdigest(),
            "bytes": path.stat().st_size,
        }
    return files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
