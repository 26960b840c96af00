"""Stop the Temporal server mid-job: the API answers 503 meanwhile, and after a restart the job completes."""

import asyncio
import contextlib
import logging
import time

import pytest
from sqlalchemy import func, select
from temporalio import activity

from core.db import Job
from core.storage import ObjectStore
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult, Video
from tests.conftest import wait_for_status
from tests.faults.conftest import artifact_rows, wait_for_node

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

MP4 = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64  # the stub's "video"; only its presence is checked


def blocking_render(store: ObjectStore, release: asyncio.Event) -> object:
    """A `render_video` stub that heartbeats until `release`, then uploads a video and returns it."""

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        while not release.is_set():
            activity.heartbeat({"stage": "animate", "percent": 50.0})  # fails quietly while Temporal is down
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), 1)
        key = f"jobs/{inp.job_id}/{inp.node_id}/video.mp4"
        uri = await asyncio.to_thread(store.put_bytes, names.ARTIFACTS_BUCKET, key, MP4, "video/mp4")
        video = Video(uri=uri, duration=1.0, variant=inp.pipeline.variant)
        return RenderResult(
            video=video, assets=[Asset(kind="video", uri=uri, content_type="video/mp4", size_bytes=len(MP4))]
        )

    return render_video


async def test_job_completes_across_a_temporal_restart(private_server, fault_stack, object_store) -> None:
    temporal = private_server("temporal")
    release = asyncio.Event()
    async with fault_stack(temporal=temporal, gpu_activities=[blocking_render(object_store, release)]) as stack:
        response = await stack.api.post("/api/generate", json={"topic": "why bridges sway"})
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        await wait_for_node(stack, job_id, "render", lambda n: n["state"] == "running" and n["progress"] is not None)

        await asyncio.to_thread(temporal.stop)
        started = time.monotonic()
        submit, health = await asyncio.gather(
            stack.api.post("/api/generate", json={"topic": "submitted while Temporal is down"}),
            stack.api.get("/healthz"),
        )
        # The job's status follower (api/followers.py) may serve its last fold until its own next call
        # to Temporal fails (within its describe interval plus the client's give-up time); then reads
        # fall back to a direct fold, which answers 503.
        while (status := await stack.api.get(f"/api/status/{job_id}")).status_code == 200:
            assert status.json()["status"] == "running"
            assert time.monotonic() - started < 10, "the status kept being served from memory with Temporal down"
            await asyncio.sleep(0.2)
        outage = time.monotonic() - started
        logger.info("the API answered 503 after %.1f s with Temporal down", outage)
        assert status.status_code == 503, status.text
        assert status.json() == {"detail": "the workflow service (Temporal) is unavailable; try again shortly"}
        assert submit.status_code == 503, submit.text
        assert "Temporal" in submit.json()["detail"]
        assert health.status_code == 503 and health.json()["checks"]["temporal"].startswith("unavailable")
        async with stack.sessions() as session:  # the refused submission left no job row behind
            jobs = await session.scalar(select(func.count()).select_from(Job).where(Job.user_id == stack.user_id))
        assert jobs == 1
        assert outage < 25, f"the API took {outage:.0f} s to answer 503; the render's heartbeat timeout is 30 s"

        await asyncio.to_thread(temporal.restart)  # same db file, same port: every client reconnects
        release.set()
        status_after = await wait_for_status(stack.api, job_id, timeout=60)
        assert status_after["status"] == "completed", status_after
        nodes = {n["id"]: n for n in status_after["nodes"]}
        assert all(n["state"] == "completed" for n in nodes.values()), nodes
        assert nodes["render"]["attempt"] == 1, "the render attempt running during the outage was lost"
        rows = await artifact_rows(stack.sessions, job_id)
        assert [(r["kind"], r["key"]) for r in rows] == [("video", f"jobs/{job_id}/render/video.mp4")]
        assert stack.store.exists(rows[0]["uri"])
