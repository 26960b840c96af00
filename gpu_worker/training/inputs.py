"""What training needs from its environment (storage, heartbeats) and how it fetches an input object."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from core.storage import parse_s3_uri
from gpu_worker.training.errors import InvalidInputError


class Store(Protocol):
    """The part of `core.storage.ObjectStore` training uses (tests pass an in-memory fake)."""

    def put_file(
        self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> tuple[str, int]:
        """Upload a local file; returns `(uri, size)`."""
        ...

    def download(self, uri: str, dest: Path) -> Path:
        """Download an object to `dest`."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether the object exists."""
        ...

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under `prefix`."""
        ...


class Heartbeats(Protocol):
    """The part of `gpu_worker.progress.Heartbeater` training uses."""

    def update(self, stage: str, percent: float, **extra: Any) -> None:
        """Record progress and heartbeat."""
        ...

    def cancelled(self) -> bool:
        """Whether the activity was cancelled (or the worker is shutting down)."""
        ...


def fetch(store: Store, uri: str, dest_dir: Path, index: int) -> Path:
    """Download one input object, turning a bad or missing URI into `InvalidInputError`.

    Args:
        store: Object storage.
        uri: `s3://` URI of the input.
        dest_dir: Local directory for the copy.
        index: Position of the input (names the local file).

    Returns:
        The local file.

    Raises:
        InvalidInputError: The URI is malformed or names no object.
    """
    try:
        _bucket, key = parse_s3_uri(uri)
    except ValueError as err:
        raise InvalidInputError(f"input {index + 1} is not an object URI: {uri!r}") from err
    if not store.exists(uri):
        raise InvalidInputError(f"input {index + 1} does not exist: {uri}")
    suffix = PurePosixPath(key).suffix.lower()[:8]
    return store.download(uri, dest_dir / f"{index:03d}{suffix}")
