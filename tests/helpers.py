"""Helpers shared by tests (not fixtures)."""

from pydantic import SecretStr

from core.settings import StorageSettings
from core.stack import Service


def storage_settings(s3: Service, **overrides: object) -> StorageSettings:
    """Storage settings pointing at a `start_s3` service."""
    values: dict[str, object] = {
        "endpoint": s3.url,
        "access_key": s3.env["APP_STORAGE__ACCESS_KEY"],
        "secret_key": SecretStr(s3.env["APP_STORAGE__SECRET_KEY"]),
    }
    return StorageSettings.model_validate(values | overrides)
