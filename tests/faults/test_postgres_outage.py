"""Postgres dies inside `artifacts.registerOutputs`: the activity is retried and registers one set of rows."""

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import WorkflowFailureError

from core import repo
from core.db import Job
from core.storage import ObjectStore
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult, Video
from tests.conftest import wait_for_status
from tests.faults.conftest import artifact_rows

pytestmark = pytest.mark.integration


def uploading_render(store: ObjectStore) -> object:
    """A `render_video` stub that uploads a small video and thumbnail and lists both as outputs."""

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        prefix = f"jobs/{inp.job_id}/{inp.node_id}"
        assets = []
        files = [
            ("video", "video.mp4", b"\x00\x00\x00\x18ftypisom", "video/mp4"),
            ("thumbnail", "thumb.jpg", b"\xff\xd8\xff\xe0", "image/jpeg"),
        ]
        for kind, name, data, content_type in files:
            uri = await asyncio.to_thread(
                store.put_bytes, names.ARTIFACTS_BUCKET, f"{prefix}/{name}", data, content_type
            )
            assets.append(Asset(kind=kind, uri=uri, content_type=content_type, size_bytes=len(data)))
        video = Video(uri=assets[0].uri, thumbnail_uri=assets[1].uri, duration=1.0, variant=inp.pipeline.variant)
        return RenderResult(video=video, assets=assets)

    return render_video


@dataclass
class Outage:
    """What happened while Postgres was down."""

    attempt: int | None = None  # the register attempt that lost its database
    api: httpx.Response | None = None  # an API call made during the outage
    restart: asyncio.Task[None] | None = None


def _activity_type() -> str | None:
    try:
        return activity.info().activity_type
    except RuntimeError:  # not called from an activity
        return None


async def test_register_outputs_survives_a_postgres_restart(
    private_server, fault_stack, object_store, monkeypatch
) -> None:
    postgres = private_server("postgres")
    original = repo.update_job_summary
    outage = Outage()

    async def dies_mid_transaction(session: AsyncSession, job_id: str, **fields: Any) -> Job | None:
        """Stop Postgres once, in register's transaction, after its artifact rows were upserted."""
        if _activity_type() != names.REGISTER_OUTPUTS or outage.attempt is not None:
            return await original(session, job_id, **fields)
        outage.attempt = activity.info().attempt
        await asyncio.to_thread(postgres.stop)
        outage.api = await stack.api.get(f"/api/jobs/{job_id}")
        try:
            return await original(session, job_id, **fields)  # the connection is gone: this raises
        finally:
            # Back while Temporal waits to retry (1 s); the failed transaction must leave no rows behind.
            outage.restart = asyncio.create_task(asyncio.to_thread(postgres.restart))

    monkeypatch.setattr(repo, "update_job_summary", dies_mid_transaction)
    async with fault_stack(postgres=postgres, gpu_activities=[uploading_render(object_store)]) as stack:
        response = await stack.api.post("/api/generate", json={"topic": "how glaciers move"})
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        # Not polled through the API: it authenticates against the database, so it answers 503 for a moment.
        with contextlib.suppress(WorkflowFailureError):  # the status below says why
            await asyncio.wait_for(stack.client.get_workflow_handle(job_id).result(), timeout=60)
        assert outage.attempt == 1 and outage.restart is not None, "Postgres was never stopped in registerOutputs"
        await outage.restart
        status = await wait_for_status(stack.api, job_id, timeout=10)

        assert outage.api is not None and outage.api.status_code == 503, outage.api
        assert outage.api.json() == {"detail": "the database is unavailable; try again shortly"}

        assert status["status"] == "completed", status
        register = next(n for n in status["nodes"] if n["id"] == "register")
        assert register["state"] == "completed" and register["attempt"] >= 2, register

        rows = await artifact_rows(stack.sessions, job_id)
        keys = [(r["kind"], r["key"]) for r in rows]  # one row per (kind, key): no leftovers of attempt 1
        assert keys == [("thumbnail", f"jobs/{job_id}/render/thumb.jpg"), ("video", f"jobs/{job_id}/render/video.mp4")]
        assert not any(r["partial"] for r in rows)
        async with stack.sessions() as session:
            job = (await session.scalars(select(Job).where(Job.id == job_id))).one()
        assert job.finished_at is not None and job.error is None
        assert job.video_uri == rows[1]["uri"] and job.thumbnail_uri == rows[0]["uri"]
