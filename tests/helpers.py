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


def fresh_database(postgres: Service, name: str) -> str:
    """Drop and create database `name` on a `start_postgres` server; return its SQLAlchemy URL."""
    import psycopg

    base = postgres.url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
