"""Fault-injection fixtures: private servers a test may stop and restart, and a stack bound to them.

The session-wide servers of `tests/conftest.py` are shared by every other test, so a test that
stops a server starts its own with `private_server(...)` (temporary data directory, free port)
and builds its stack with `fault_stack(...)`, which points settings, both workers and the API at
the private servers and at the shared ones for the rest: it opens its own clients with
`core.services.open_services` and builds the stack with `build_stack`, as `stack_factory` does.
"""

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from activities.script_writer import ScriptWriter
from core.services import open_services
from core.settings import DatabaseSettings, Settings
from core.storage import ObjectStore
from devstack.process import Service
from devstack.servers import start_postgres, start_s3, start_temporal
from tests.conftest import Stack, build_stack
from tests.helpers import storage_settings

ServerKind = Literal["temporal", "postgres", "s3"]
_STARTERS: dict[ServerKind, Callable[[Path], Service]] = {
    "temporal": start_temporal,
    "postgres": start_postgres,
    "s3": start_s3,
}


@dataclass
class Server:
    """A server owned by one test; `stop`/`restart` keep its data directory and port.

    The methods are blocking: call them with `asyncio.to_thread` from async code.
    """

    service: Service

    def stop(self) -> None:
        """Stop the server (no-op if it is already down)."""
        if self.service.alive():
            self.service.stop()

    def restart(self) -> None:
        """Start it again on the same data directory and port (stopping it first if it runs)."""
        self.service = self.service.restart()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[Callable[[ServerKind], Server]]:
    """`private_server("temporal")`: a server of that kind for this test only, stopped at teardown."""
    servers: list[Server] = []

    def start(kind: ServerKind) -> Server:
        server = Server(_STARTERS[kind](tmp_path / f"{kind}-{len(servers)}"))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fault_stack(
    settings: Settings,
    temporal_service: Service,
    postgres_service: Service,
    s3_service: Service,
) -> Callable[..., Any]:
    """`async with fault_stack(postgres=server, gpu_activities=[...]) as stack:` on fresh task queues.

    Each of `temporal`, `postgres`, `s3` is a `Server` from `private_server`, or None for the
    shared session server. `gpu_activities` replaces the GPU worker's activities (stubs under the
    real names); `gpu_store` replaces the store the real GPU worker uploads with; `gpu=False`
    starts no GPU worker (a test may start one in a subprocess).
    """

    @asynccontextmanager
    async def factory(
        *,
        temporal: Server | None = None,
        postgres: Server | None = None,
        s3: Server | None = None,
        writer: ScriptWriter | None = None,
        gpu_activities: list[Any] | None = None,
        gpu_store: ObjectStore | None = None,
        gpu: bool = True,
    ) -> AsyncIterator[Stack]:
        local = settings.model_copy(
            update={
                "temporal": settings.temporal.model_copy(
                    update={"address": (temporal.service if temporal else temporal_service).url}
                ),
                "database": DatabaseSettings(url=(postgres.service if postgres else postgres_service).url),
                "storage": storage_settings(s3.service if s3 else s3_service),
            }
        )
        async with (
            open_services(local) as services,
            build_stack(
                local,
                services,
                writer=writer,
                gpu_activities=gpu_activities,
                gpu_store=gpu_store,
                gpu=gpu,
                label="fault",
            ) as stack,
        ):
            yield stack

    return factory


def start_gpu_worker_process(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    """The real GPU worker (`python -m gpu_worker.worker`) polling the stack's queues.

    The servers come from the `APP_*` variables the session `settings` fixture exported.
    """
    env = os.environ | {
        "APP_TEMPORAL__CPU_TASK_QUEUE": stack.settings.temporal.cpu_task_queue,
        "APP_TEMPORAL__GPU_TASK_QUEUE": stack.settings.temporal.gpu_task_queue,
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gpu_worker.worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def node(stack: Stack, job_id: str, node_id: str) -> dict[str, Any]:
    """One node of `GET /api/status/{job_id}`."""
    response = await stack.api.get(f"/api/status/{job_id}")
    response.raise_for_status()
    return next(n for n in response.json()["nodes"] if n["id"] == node_id)


async def wait_for_node(
    stack: Stack, job_id: str, node_id: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """Poll the node until `ready(node)`; fail the test with the node's last state otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        current = await node(stack, job_id, node_id)
        if ready(current):
            return current
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"node {node_id} of {job_id} never got ready: {current}")
        await asyncio.sleep(0.1)


def scheduled_activities(history: WorkflowHistory) -> list[tuple[str, str, str]]:
    """`(activity id, activity type, task queue)` of every ActivityTaskScheduled event."""
    return [
        (a.activity_id, a.activity_type.name, a.task_queue.name)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        for a in [e.activity_task_scheduled_event_attributes]
    ]


async def artifact_rows(sessions: async_sessionmaker[AsyncSession], job_id: str) -> list[dict[str, Any]]:
    """Every artifact row of the job, straight from the database."""
    async with sessions() as session:
        result = await session.execute(
            text("SELECT kind, key, uri, partial FROM artifacts WHERE job_id = :job ORDER BY kind, key"),
            {"job": job_id},
        )
        return [dict(row._mapping) for row in result]
