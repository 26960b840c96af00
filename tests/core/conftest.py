"""Session fixtures that start the real servers from their pip packages (one set per xdist worker)."""

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core.settings import StorageSettings
from core.stack import Service, start_postgres, start_s3, start_temporal
from core.storage import ObjectStore


@pytest.fixture(scope="session")
def temporal_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_temporal(tmp_path_factory.mktemp("temporal"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_s3(tmp_path_factory.mktemp("s3"))
    yield service
    service.stop()


def storage_settings(s3: Service, **overrides: object) -> StorageSettings:
    """Storage settings pointing at a `start_s3` service."""
    values: dict[str, object] = {
        "endpoint": s3.url,
        "access_key": s3.env["APP_STORAGE__ACCESS_KEY"],
        "secret_key": SecretStr(s3.env["APP_STORAGE__SECRET_KEY"]),
    }
    return StorageSettings.model_validate(values | overrides)


@pytest.fixture(scope="session")
def object_store(s3_service: Service) -> ObjectStore:
    store = ObjectStore(storage_settings(s3_service))
    store.ensure_buckets()
    return store
