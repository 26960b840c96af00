"""Test helpers: an in-memory object store (the S3 server is tested elsewhere) and image encoding."""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from core.storage import parse_s3_uri, s3_uri


class FakeStore:
    """Objects in a dict keyed by `(bucket, key)`."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_file(
        self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> tuple[str, int]:
        data = Path(path).read_bytes()
        self.objects[(bucket, key)] = data
        return s3_uri(bucket, key), len(data)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[(bucket, key)] = data
        return s3_uri(bucket, key)

    def download(self, uri: str, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.objects[parse_s3_uri(uri)])
        return dest

    def get_bytes(self, uri: str) -> bytes:
        return self.objects[parse_s3_uri(uri)]

    def exists(self, uri: str) -> bool:
        return parse_s3_uri(uri) in self.objects

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(key for b, key in self.objects if b == bucket and key.startswith(prefix))

    def copy(self, keep: Callable[[str], bool] = lambda _key: True) -> "FakeStore":
        """A new store with the objects whose key passes `keep`."""
        other = FakeStore()
        other.objects = {k: v for k, v in self.objects.items() if keep(k[1])}
        return other


def encode_image(pixels: np.ndarray, fmt: str = "JPEG", **save_args: object) -> bytes:
    """Encode an `(h, w, 3)` uint8 array as an image file's bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **save_args)
    return buf.getvalue()
