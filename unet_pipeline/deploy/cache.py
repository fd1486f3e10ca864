"""Content-addressed artifact cache: exported graphs and built engines, shared by every job.

Why: a sweep of precisions x batches must export once and build once per distinct artifact, and a wrong
hit is the worst cache bug there is (two models sharing an entry). So the key is a hash of *everything*
that determines the artifact (weights content, architecture, shape, engine and version, precision,
calibration images by content, settings), an entry is published whole by one directory rename, its files
are re-hashed against its manifest on every use, and anything that fails that check is rebuilt, never used.
Concurrent builders of one key serialise on a file lock; different keys build in parallel."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from unet_pipeline.core import PipelineError, content_key, file_sha256

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CacheResult:
    """Where the artifact is, and how it got there (recorded per stage in result.json)."""

    artifact: Path
    key: str
    hit: bool
    rebuilt_corrupt: bool = False

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "hit": self.hit, "rebuilt_corrupt": self.rebuilt_corrupt, "path": str(self.artifact)}


def _manifest_files(entry: Path) -> dict[str, dict[str, Any]]:
    return {
        str(p.relative_to(entry)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(entry.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def verify_entry(entry: Path) -> Path | None:
    """The entry's artifact path if its manifest is readable and every file matches it, else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        files = manifest["files"]
        for rel, expected in files.items():
            path = entry / rel
            if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                return None
        artifact = entry / manifest["artifact"]
        return artifact if manifest["artifact"] in files else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ArtifactCache:
    """`<root>/<kind>/<key>/` entries, each with a manifest listing its files' sizes and hashes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def get_or_build(self, kind: str, parts: dict[str, Any], build: Callable[[Path], Path]) -> CacheResult:
        """The verified artifact for `parts`, running `build(out_dir) -> artifact` only when absent or corrupt."""
        key = content_key(parts)
        entry = self.entry_dir(kind, key)
        artifact = verify_entry(entry)  # fast path, no lock: a published entry never changes
        if artifact is not None:
            return CacheResult(artifact, key, hit=True)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(entry.parent / f"{key}.lock")):
                artifact = verify_entry(entry)  # built by another job while we waited
                if artifact is not None:
                    return CacheResult(artifact, key, hit=True)
                corrupt = entry.exists()
                if corrupt:
                    log.warning("cache entry %s failed its integrity check; rebuilding it", entry)
                    shutil.rmtree(entry)
                self._remove_stale_builds(entry)
                artifact = self._build(entry, parts, build)
                return CacheResult(artifact, key, hit=False, rebuilt_corrupt=corrupt)
        except OSError as exc:
            raise PipelineError(
                f"cannot write the artifact cache at {self.root} ({exc.strerror or exc}); "
                "free space, fix permissions, or point cache.dir elsewhere"
            ) from exc

    @staticmethod
    def _remove_stale_builds(entry: Path) -> None:
        """Half-built dirs of this key left by a killed job (we hold the key's lock, so none is live)."""
        for stale in entry.parent.glob(f".{entry.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def _build(entry: Path, parts: dict[str, Any], build: Callable[[Path], Path]) -> Path:
        tmp = entry.parent / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        try:
            artifact = build(tmp)
            manifest = {
                "artifact": str(artifact.relative_to(tmp)),
                "parts": parts,
                "created_at": dt.datetime.now().isoformat(timespec="seconds"),
                "files": _manifest_files(tmp),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
            for path in tmp.rglob("*"):
                if path.is_file():
                    with path.open("rb") as fh:
                        os.fsync(fh.fileno())
            os.rename(tmp, entry)  # publish: readers see the whole entry or nothing
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry / manifest["artifact"]


class NoCache:
    """`cache.enabled=false`: build into the job's own dir every time (nothing shared, nothing reused)."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir

    def get_or_build(self, kind: str, parts: dict[str, Any], build: Callable[[Path], Path]) -> CacheResult:
        out_dir = self.job_dir / "artifacts" / kind
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        return CacheResult(build(out_dir), content_key(parts), hit=False)
