"""Object storage (SeaweedFS locally, MinIO in production) through the `minio` client."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from core.settings import Settings, StorageSettings, get_settings
from schemas.names import ARTIFACTS_BUCKET, UPLOADS_BUCKET

logger = logging.getLogger(__name__)

_S3_SCHEME = "s3://"
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})


def s3_uri(bucket: str, key: str) -> str:
    """Build the `s3://bucket/key` URI stored in the database and in activity results.

    Args:
        bucket: Bucket name.
        key: Object key (may contain `/`).

    Returns:
        The URI.
    """
    return f"{_S3_SCHEME}{bucket}/{key.lstrip('/')}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split an `s3://bucket/key` URI.

    Args:
        uri: The URI.

    Returns:
        `(bucket, key)`.

    Raises:
        ValueError: If `uri` is not an `s3://` URI with both a bucket and a key.
    """
    if not uri.startswith(_S3_SCHEME):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(_S3_SCHEME) :].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3 URI needs a bucket and a key (s3://bucket/key): {uri!r}")
    return bucket, key


@dataclass(frozen=True)
class ObjectInfo:
    """What `ObjectStore.stat` reports about an object."""

    size: int
    content_type: str


@dataclass(frozen=True)
class StoredObject:
    """One entry of `ObjectStore.list_objects`."""

    key: str
    size: int
    last_modified: datetime


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept `host:port` or a full URL (public endpoints are often written as URLs).

    Returns:
        `(host:port, secure)` as `Minio` wants them.
    """
    if "://" not in endpoint:
        return endpoint, secure
    parts = urlsplit(endpoint)
    return parts.netloc, parts.scheme == "https"


class ObjectStore:
    """Buckets and objects addressed by `s3://` URIs; sync methods (wrap in `asyncio.to_thread`)."""

    def __init__(self, settings: StorageSettings) -> None:
        """Build the I/O client and the presigning client.

        Args:
            settings: The storage settings group.
        """
        secret = settings.secret_key.get_secret_value()
        host, secure = _split_endpoint(settings.endpoint, settings.secure)
        public_host, public_secure = _split_endpoint(settings.public_endpoint or settings.endpoint, settings.secure)
        # A fixed region stops minio from asking the server for each bucket's location.
        self._client = Minio(
            host, access_key=settings.access_key, secret_key=secret, secure=secure, region=settings.region
        )
        # Presigned URLs are signed for the host the browser will reach; with the region set,
        # signing is pure computation, so this client never talks to the network.
        self._signer = Minio(
            public_host,
            access_key=settings.access_key,
            secret_key=secret,
            secure=public_secure,
            region=settings.region,
        )
        self._presign_seconds = settings.presign_seconds

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ObjectStore:
        """Build a store from the process's settings.

        Args:
            settings: Settings to use; defaults to `get_settings()`.

        Returns:
            The store.
        """
        return cls((settings or get_settings()).storage)

    def ensure_buckets(self) -> None:
        """Create the uploads and artifacts buckets if they are missing."""
        for bucket in (UPLOADS_BUCKET, ARTIFACTS_BUCKET):
            if self._client.bucket_exists(bucket):
                continue
            try:
                self._client.make_bucket(bucket)
                logger.info("created bucket %s", bucket)
            except S3Error as err:
                # Another process may have created it between the check and the call.
                if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_file(
        self, bucket: str, key: str, path: Path, content_type: str = "application/octet-stream"
    ) -> tuple[str, int]:
        """Upload a local file.

        Args:
            bucket: Target bucket.
            key: Target key.
            path: Local file.
            content_type: Stored `Content-Type`.

        Returns:
            `(uri, size in bytes)`.
        """
        self._client.fput_object(bucket, key, str(path), content_type=content_type)
        return s3_uri(bucket, key), path.stat().st_size

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Upload bytes.

        Args:
            bucket: Target bucket.
            key: Target key.
            data: Object content.
            content_type: Stored `Content-Type`.

        Returns:
            The object's URI.
        """
        self._client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return s3_uri(bucket, key)

    def download(self, uri: str, dest: Path) -> Path:
        """Download an object to a local file, creating parent directories.

        Args:
            uri: `s3://` URI of the object.
            dest: Local file to write.

        Returns:
            `dest`.
        """
        bucket, key = parse_s3_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._client.fget_object(bucket, key, str(dest))
        return dest

    def get_bytes(self, uri: str) -> bytes:
        """Read a whole object into memory (small objects only).

        Args:
            uri: `s3://` URI of the object.

        Returns:
            The content.
        """
        bucket, key = parse_s3_uri(uri)
        response = self._client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def stat(self, uri: str) -> ObjectInfo | None:
        """Size and content type of an object.

        Args:
            uri: `s3://` URI of the object.

        Returns:
            The info, or None if the object (or its bucket) does not exist.
        """
        bucket, key = parse_s3_uri(uri)
        try:
            found = self._client.stat_object(bucket, key)
        except S3Error as err:
            if err.code in _MISSING_CODES:
                return None
            raise
        return ObjectInfo(size=found.size or 0, content_type=found.content_type or "application/octet-stream")

    def exists(self, uri: str) -> bool:
        """Whether an object exists.

        Args:
            uri: `s3://` URI of the object.

        Returns:
            True if it exists.
        """
        return self.stat(uri) is not None

    def presigned_url(self, uri: str, expires_seconds: int | None = None) -> str:
        """A GET URL on the public endpoint that works without credentials until it expires.

        Args:
            uri: `s3://` URI of the object.
            expires_seconds: Lifetime; defaults to the `presign_seconds` setting.

        Returns:
            The URL.
        """
        bucket, key = parse_s3_uri(uri)
        expires = timedelta(seconds=expires_seconds or self._presign_seconds)
        return self._signer.presigned_get_object(bucket, key, expires=expires)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under a prefix (recursively).

        Args:
            bucket: Bucket to list.
            prefix: Key prefix, e.g. `"jobs/job-1/"`.

        Returns:
            The keys, in the server's (lexicographic) order.
        """
        objects = self._client.list_objects(bucket, prefix=prefix, recursive=True)
        return [obj.object_name for obj in objects if obj.object_name is not None]

    def list_objects(self, bucket: str, prefix: str = "") -> list[StoredObject]:
        """Every object under a prefix (recursively) with its size and last-modified time.

        Args:
            bucket: Bucket to list.
            prefix: Key prefix.

        Returns:
            The objects, in the server's (lexicographic) order.
        """
        return [
            StoredObject(key=obj.object_name, size=obj.size or 0, last_modified=obj.last_modified)
            for obj in self._client.list_objects(bucket, prefix=prefix, recursive=True)
            if obj.object_name is not None and obj.last_modified is not None
        ]

    def delete(self, uri: str) -> None:
        """Delete one object (deleting a missing object is not an error).

        Args:
            uri: `s3://` URI of the object.
        """
        bucket, key = parse_s3_uri(uri)
        self._client.remove_object(bucket, key)

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under a prefix.

        Args:
            bucket: Bucket to clean.
            prefix: Non-empty key prefix.

        Returns:
            How many objects were deleted.

        Raises:
            ValueError: If `prefix` is empty (that would empty the whole bucket).
            RuntimeError: If the server refused to delete some objects.
        """
        if not prefix:
            raise ValueError("refusing to delete with an empty prefix")
        keys = self.list_keys(bucket, prefix)
        # remove_objects is lazy: the deletes happen only while its error iterator is consumed.
        errors = list(self._client.remove_objects(bucket, [DeleteObject(key) for key in keys]))
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects under s3://{bucket}/{prefix}: {errors[0]}")
        return len(keys)
