"""The model store: where model version files live, addressed by a URL, and each host's verified cache.

- `RANKLOOP_MODEL_STORE` unset: versions live in this host's data directory (`<data_dir>/artifacts`, written
  by worker/artifacts.py with an atomic rename) and are read in place. Only this host can use them.
- set to an fsspec URL (`s3://bucket/prefix`, `gs://bucket/prefix`, `file:///mnt/shared/models`; a plain
  path is taken as a shared mount): versions are published there and every host reads them through its own
  cache (`<data_dir>/model-cache`, `RANKLOOP_MODEL_CACHE_DIR`). Credentials and endpoints come from fsspec's
  own configuration (`FSSPEC_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...); s3:// needs `s3fs` installed
  (`pip install rankloop[s3]`), gs:// `gcsfs`.

A version row's `adapter_path` is the version's location, a local path or its URL in the store, so any host
finds it whatever its own setting; `open_version(location)` returns a local, verified directory for it.

Publication to a URL: the version is assembled and hashed locally (straight into this host's cache), its
files are uploaded under `<store>/<kind>-<name>/`, and its `manifest.json` (sha256 and size of every file)
is written last; only then does the caller insert the row. Object stores cannot rename a prefix (an S3
"move" copies every object), so the manifest, one object written whole, is the commit point: a prefix
without one is an upload in progress or a crashed one, never read, and swept by the round's next attempt.

Reading from a URL: the store's manifest is read, the cached copy checked against it file by file; a
missing, partial or corrupt copy is downloaded again into a temporary directory, verified, and renamed into
place, under a file lock so processes on one host fetch a version once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from app.config import Settings
from worker import artifacts

log = logging.getLogger(__name__)

_PARTIAL = ".partial"


class VersionUnavailable(RuntimeError):
    """A version's files cannot be used: not published (no manifest), unreachable, or corrupt in the store."""


def has_scheme(location: str) -> bool:
    return "://" in location


def store_url(setting: str | None) -> str | None:
    """The configured store as a URL (a plain path becomes file://), or None for the data directory."""
    if not setting or not setting.strip():
        return None
    setting = setting.strip().rstrip("/")
    if has_scheme(setting):
        return setting
    return Path(setting).expanduser().resolve().as_uri()


class ModelStore:
    """Publish versions to, list and remove them in, and read them from the configured store."""

    def __init__(self, url: str | None, local_dir: Path, cache_dir: Path) -> None:
        self.url = url  # None: versions live in local_dir, read in place
        self.local_dir = Path(local_dir)
        self.cache_dir = Path(cache_dir)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(
            store_url(settings.model_store),
            settings.resolved_artifacts_dir.resolve(),
            settings.resolved_model_cache_dir.resolve(),
        )

    def publish(
        self,
        kind: str,
        name: str | int,
        *,
        source_dir: Path,
        config: dict[str, Any],
        metrics: dict[str, Any],
        data_snapshot_id: int | None = None,
        parent_id: int | None = None,
        base_model: str | None = None,
    ) -> str:
        """Publish the files of `source_dir` as version `<kind>-<name>`; returns its location, complete."""
        meta: dict[str, Any] = {
            "source_dir": source_dir,
            "config": config,
            "metrics": metrics,
            "data_snapshot_id": data_snapshot_id,
            "parent_id": parent_id,
            "base_model": base_model,
        }
        if self.url is None:
            return str(artifacts.write_version(self.local_dir, kind, name, **meta))
        dir_name = artifacts.version_dir_name(kind, name)
        fs, root = _fs(self.url)
        target = f"{root}/{dir_name}"
        if fs.exists(f"{target}/{artifacts.MANIFEST_FILE}"):
            raise FileExistsError(f"model version {dir_name} already exists in {self.url}")
        # Assembled and hashed in the cache, where this host will read it from.
        cache_root = _cache_root(self.cache_dir, self.url)
        shutil.rmtree(cache_root / dir_name, ignore_errors=True)  # an interrupted attempt's copy
        local = artifacts.write_version(cache_root, kind, name, **meta)
        try:
            if fs.exists(target):
                fs.rm(target, recursive=True)  # a crashed upload under the same name
            manifest = local / artifacts.MANIFEST_FILE
            for rel in json.loads(manifest.read_text())["files"]:
                _put(fs, local / rel, f"{target}/{rel}")
            # Last, and whole: the version exists from this moment.
            _put(fs, manifest, f"{target}/{artifacts.MANIFEST_FILE}{_PARTIAL}")
            fs.mv(f"{target}/{artifacts.MANIFEST_FILE}{_PARTIAL}", f"{target}/{artifacts.MANIFEST_FILE}")
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            _remove_quietly(fs, target)
            raise
        return f"{self.url}/{dir_name}"

    def version_names(self, prefix: str) -> list[str]:
        """Directory names (`<kind>-<name>`) in the store that start with `prefix`, complete or not."""
        if self.url is None:
            if not self.local_dir.exists():
                return []
            return sorted(p.name for p in self.local_dir.glob(f"{prefix}*") if p.is_dir())
        fs, root = _fs(self.url)
        if not fs.exists(root):
            return []
        names = (PurePosixPath(str(p).rstrip("/")).name for p in fs.ls(root, detail=False))
        return sorted(n for n in names if n.startswith(prefix))

    def remove(self, dir_name: str) -> None:
        """Delete a version's files (only ones no row points at: the caller checks)."""
        artifacts.version_dir_name(*dir_name.split("-", 1))  # refuses names that could escape the store
        if self.url is None:
            shutil.rmtree(self.local_dir / dir_name, ignore_errors=True)
            return
        fs, root = _fs(self.url)
        _remove_quietly(fs, f"{root}/{dir_name}")
        shutil.rmtree(_cache_root(self.cache_dir, self.url) / dir_name, ignore_errors=True)

    def open(self, location: str) -> Path:
        return open_version(location, self.cache_dir)


def open_version(location: str, cache_dir: Path) -> Path:
    """A local directory holding the version at `location`, checked against its manifest.

    A local path is used in place; a URL is served from the cache, fetched (again) when the cached copy is
    missing or does not match the store's manifest.
    """
    if not has_scheme(location):
        in_place = Path(location)
        if not (in_place / artifacts.MANIFEST_FILE).is_file():
            raise VersionUnavailable(
                f"model version files not found at {location} on this host: the version was published to "
                "another host's data directory; set RANKLOOP_MODEL_STORE to a store every host can reach"
            )
        problems = artifacts.verify_version(in_place)
        if problems:
            raise VersionUnavailable(f"model version at {location} is corrupt: {', '.join(problems[:5])}")
        return in_place
    root, _, dir_name = location.rstrip("/").rpartition("/")
    fs, path = _fs(location)
    local = _cache_root(Path(cache_dir), root) / dir_name
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = fs.cat_file(f"{path}/{artifacts.MANIFEST_FILE}")
    except FileNotFoundError:
        raise VersionUnavailable(f"model version {location} is not published (no manifest)") from None
    except OSError as exc:
        # The store is unreachable: a copy that matches its own manifest is still the published version.
        with FileLock(f"{local}.lock"):
            if (local / artifacts.MANIFEST_FILE).is_file() and artifacts.verify_version(local) == []:
                log.warning(
                    "model store unreachable (%s); using the verified cached copy of %s", exc, location
                )
                return local
        raise VersionUnavailable(f"model version {location} is unreachable: {exc}") from exc
    with FileLock(f"{local}.lock"):
        if _matches(local, manifest):
            return local
        if local.exists():
            log.warning("cached copy of %s does not match its manifest; fetching it again", location)
        _fetch(fs, path, manifest, local)
    return local


def _matches(local: Path, manifest: bytes) -> bool:
    mine = local / artifacts.MANIFEST_FILE
    return mine.is_file() and mine.read_bytes() == manifest and artifacts.verify_version(local) == []


def _fetch(fs: Any, path: str, manifest: bytes, local: Path) -> None:
    """Download every file the manifest names, check each hash, then swap the copy into place."""
    files: dict[str, dict[str, Any]] = json.loads(manifest)["files"]
    tmp = local.parent / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for rel, expected in files.items():
            dest = tmp / rel
            if not dest.resolve().is_relative_to(tmp.resolve()):
                raise VersionUnavailable(f"manifest of {path} names a file outside the version: {rel!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{path}/{rel}", str(dest))
            if _sha256(dest) != expected["sha256"]:
                raise VersionUnavailable(f"{path}/{rel} in the model store does not match its manifest")
        (tmp / artifacts.MANIFEST_FILE).write_bytes(manifest)
        old = local.parent / f".old-{uuid.uuid4().hex}"
        if local.exists():
            local.rename(old)
        tmp.rename(local)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_root(cache_dir: Path, store: str) -> Path:
    """One cache folder per store URL: two stores may hold versions of the same name."""
    return cache_dir / hashlib.sha256(store.rstrip("/").encode()).hexdigest()[:16]


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    # Listings are cached per filesystem instance (s3fs, gcsfs); another host may have published since.
    fs.invalidate_cache()
    return fs, str(path).rstrip("/")


def _put(fs: Any, local: Path, remote: str) -> None:
    fs.makedirs(remote.rpartition("/")[0], exist_ok=True)  # object stores ignore it; file:// needs it
    fs.put_file(str(local), remote)


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as exc:  # pragma: no cover - best effort; the next attempt sweeps it
        log.warning("could not remove %s from the model store: %s", path, exc)
