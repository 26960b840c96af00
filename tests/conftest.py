"""Shared fixtures: the real servers (one set per session), settings pointing at them, the clients
opened once with `core.services.open_services`, and `stack_factory`, which runs both workers in-process
on fresh task queues plus an API client (`build_stack`, which `fault_stack` reuses)."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter, ScriptWriter
from activities.worker import build_worker as build_cpu_worker
from activities.worker import manifest as cpu_manifest
from api.main import create_app
from core.capabilities import publish
from core.db import migrate
from core.services import Services, open_services
from core.settings import Settings, get_settings
from core.storage import ObjectStore
from devstack.process import Service
from devstack.servers import env_for, start_postgres, start_s3, start_temporal
from gpu_worker.backends import build_backends
from gpu_worker.worker import build_worker as build_gpu_worker
from gpu_worker.worker import manifest as gpu_manifest
from tests.helpers import api_client

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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


@pytest.fixture(scope="session")
def settings(
    temporal_service: Service, postgres_service: Service, s3_service: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings for the test servers, also exported as `APP_*` variables for child processes."""
    env = env_for({"temporal": temporal_service, "postgres": postgres_service, "s3": s3_service})
    env["APP_GPU__WORK_DIR"] = str(tmp_path_factory.mktemp("gpu-work"))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings.database.url)
    yield settings
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(scope="session")
async def shared_services(settings: Settings) -> AsyncIterator[Services]:
    """The clients of the session servers, opened as the processes open theirs (`settings` migrated already)."""
    async with open_services(settings, migrate=False) as services:
        yield services


@pytest.fixture(scope="session")
def object_store(shared_services: Services) -> ObjectStore:
    return shared_services.store


@pytest.fixture(scope="session")
def sessions(shared_services: Services) -> async_sessionmaker[AsyncSession]:
    return shared_services.sessions


@pytest.fixture(scope="session")
def temporal_client(shared_services: Services) -> Client:
    return shared_services.temporal


@dataclass
class Stack:
    """Both workers and an API client bound to one pair of task queues.

    `api` authenticates as `user_id`, a fresh user per stack (so per-user limits and listings
    start empty); `client_for` gives a client of the same app for another user.
    """

    settings: Settings
    client: Client
    api: httpx.AsyncClient
    store: ObjectStore
    sessions: async_sessionmaker[AsyncSession]
    app: FastAPI
    user_id: str
    exits: AsyncExitStack

    async def client_for(self, user_id: str, *, admin: bool = False) -> httpx.AsyncClient:
        """A client authenticated as `user_id` (created on first use), closed with the stack."""
        return await self.exits.enter_async_context(api_client(self.app, self.sessions, user_id, admin=admin))


@asynccontextmanager
async def build_stack(
    settings: Settings,
    services: Services,
    *,
    writer: ScriptWriter | None = None,
    gpu_activities: list[Any] | None = None,
    gpu_store: ObjectStore | None = None,
    gpu: bool = True,
    api_limits: dict[str, Any] | None = None,
    review: dict[str, Any] | None = None,
    gpu_settings: dict[str, Any] | None = None,
    label: str = "test",
) -> AsyncIterator[Stack]:
    """Both workers and an API app on fresh task queues of `settings`' servers, the workers on `services`' clients.

    `gpu_activities` replaces the GPU worker's activities (stubs registered under the real names,
    heartbeats throttled as the real worker throttles them); `gpu_store` replaces the store the real
    GPU worker uploads with; `gpu=False` starts no GPU worker at all; `gpu_settings` overrides the GPU
    settings (a model folder). `label` names the workers' manifests.
    """
    suffix = uuid.uuid4().hex[:8]
    temporal = settings.temporal.model_copy(
        update={"cpu_task_queue": f"cpu-{suffix}", "gpu_task_queue": f"gpu-{suffix}"}
    )
    api = settings.api.model_copy(update=api_limits or {})
    review_settings = settings.review.model_copy(update=review or {})
    gpu_local = settings.gpu.model_copy(update=gpu_settings or {})
    local = settings.model_copy(update={"temporal": temporal, "api": api, "review": review_settings, "gpu": gpu_local})
    writer = writer or OfflineScriptWriter()
    client, store, sessions = services.temporal, services.store, services.sessions
    await publish(sessions, cpu_manifest(local, writer, f"cpu-{label}-{suffix}"))
    # Backends are built only for settings that name model folders; the defaults need none.
    backends = build_backends(local) if gpu_settings else None
    await publish(sessions, gpu_manifest(local, f"gpu-{label}-{suffix}", backends))
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: local
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(build_cpu_worker(client, local, ControlActivities(sessions, store, writer)))
        if gpu:
            executor = stack.enter_context(ThreadPoolExecutor(max_workers=2))
            if gpu_activities is None:
                worker = build_gpu_worker(client, local, gpu_store or store, executor, backends)
            else:
                throttle = timedelta(seconds=local.gpu.heartbeat_throttle_seconds)
                worker = Worker(
                    client,
                    task_queue=temporal.gpu_task_queue,
                    activities=gpu_activities,
                    activity_executor=executor,
                    max_heartbeat_throttle_interval=throttle,
                    default_heartbeat_throttle_interval=throttle,
                )
            await stack.enter_async_context(worker)
        await stack.enter_async_context(app.router.lifespan_context(app))
        user_id = f"user-{suffix}"
        user_api = await stack.enter_async_context(api_client(app, sessions, user_id))
        yield Stack(settings=local, client=client, api=user_api, store=store, sessions=sessions,
                    app=app, user_id=user_id, exits=stack)  # fmt: skip


@pytest.fixture
def stack_factory(settings: Settings, shared_services: Services) -> Any:
    """`async with stack_factory(writer=..., gpu_activities=...) as stack:` on fresh queues (see `build_stack`)."""

    def factory(
        writer: ScriptWriter | None = None,
        gpu_activities: list[Any] | None = None,
        gpu: bool = True,
        api_limits: dict[str, Any] | None = None,
        review: dict[str, Any] | None = None,
        gpu_settings: dict[str, Any] | None = None,
    ) -> AbstractAsyncContextManager[Stack]:
        return build_stack(
            settings,
            shared_services,
            writer=writer,
            gpu_activities=gpu_activities,
            gpu=gpu,
            api_limits=api_limits,
            review=review,
            gpu_settings=gpu_settings,
        )

    return factory


async def wait_for_status(
    api: httpx.AsyncClient, job_id: str, done: set[str] | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Poll `GET /api/status/{job_id}` until the job reaches one of `done`."""
    done = done or {"completed", "failed", "cancelled"}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        response = await api.get(f"/api/status/{job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body["status"] in done:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"job {job_id} still {body['status']}: {body}")
        await asyncio.sleep(0.2)


def astronaut_png(path: Path) -> Path:
    """A real face photo that ships in scikit-image."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(path)
    return path
