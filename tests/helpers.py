"""Helpers shared by tests (not fixtures)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.auth import create_user_with_key
from core.settings import StorageSettings
from core.storage import ObjectStore
from devstack.process import Service
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult

# What the embedded svd render reports in `Video.rendering` (runtime ids as the GPU manifest advertises them).
EMBEDDED_SVD_RENDERING = {
    "speech": "piper:en_US-joe-medium",
    "scene": "procedural",
    "image_to_video": "ken-burns",
    "lipsync": "embedded-visemes",
    "captions": "sentence-timed",
    "mux": "ffmpeg",
}


def put_stub_output(store: ObjectStore, inp: RenderInput, name: str, kind: str, content_type: str) -> Asset:
    """A stand-in render output at the key the real render uses (`jobs/<job>/<node>/<name>`)."""
    data = f"{kind} of {inp.job_id}".encode()
    uri = store.put_bytes(names.ARTIFACTS_BUCKET, f"jobs/{inp.job_id}/{inp.node_id}/{name}", data, content_type)
    return Asset(kind=kind, uri=uri, content_type=content_type, size_bytes=len(data))


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


@asynccontextmanager
async def api_client(
    app: FastAPI, sessions: async_sessionmaker[AsyncSession], user_id: str, *, admin: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of `app` that authenticates as `user_id` (created with a fresh API key)."""
    key = await create_user_with_key(sessions, user_id, admin=admin)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        yield client


def gated_render(release: asyncio.Event) -> object:
    """A `render_video` stub that heartbeats until `release` is set or the job is cancelled."""

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(_inp: RenderInput) -> RenderResult:
        while not release.is_set():
            activity.heartbeat({"stage": "animate", "percent": 50})
            await asyncio.sleep(0.1)
        raise asyncio.CancelledError

    return render_video
