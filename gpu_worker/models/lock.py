"""`models.lock`: what `pull` downloaded (source, revision, every file's size and SHA-256), beside the weights.

The lock lives in `APP_GPU__MODELS_DIR` itself, so it travels with the volume the workers mount:
`verify` re-hashes the files against it offline and the worker checks their sizes at start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpu_worker.models.errors import ModelsError

LOCK_NAME = "models.lock"
_VERSION = 1
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LockedFile:
    """A file as it was downloaded."""

    size: int
    sha256: str


@dataclass(frozen=True)
class LockRecord:
    """One catalogue entry as pulled: `source` (`hf:<repo>@<commit>`, `url:…` or `local:<dir>`) and its files."""

    source: str
    files: dict[str, LockedFile]  # by path inside the entry's folder
    pulled_at: str
    archives: dict[str, str] = field(default_factory=dict)  # unpacked zip → its SHA-256


class Lock:
    """The lock file of one models directory, read once; `save` replaces it atomically."""

    def __init__(self, models_dir: Path) -> None:
        self.path = models_dir / LOCK_NAME
        self.records: dict[str, LockRecord] = {}
        if self.path.exists():
            self.records = _parse(self.path)

    def save(self) -> None:
        """Write the lock next to a temporary name, then rename it over the old one."""
        body = {
            "version": _VERSION,
            "models": {name: asdict(record) for name, record in sorted(self.records.items())},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".models.lock.")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(body, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(tmp, self.path)


def _parse(path: Path) -> dict[str, LockRecord]:
    try:
        body: Any = json.loads(path.read_text(encoding="utf-8"))
        records = {}
        for name, raw in body["models"].items():
            files = {rel: LockedFile(int(f["size"]), str(f["sha256"])) for rel, f in raw["files"].items()}
            records[name] = LockRecord(raw["source"], files, raw["pulled_at"], dict(raw.get("archives") or {}))
        return records
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelsError(f"{path} is not a readable models.lock ({err}); fix or delete it, then pull again") from err


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The file's git blob id (what the Hub's tree lists as `oid` for files not stored in LFS)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
