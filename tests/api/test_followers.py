"""Status followers (`api.followers`): the followed fold equals a direct fold of real jobs at every
step they pass through (running, review wait, cancel, failure and a reset to a new run), idle and
evicted followers end, and a watcher keeps getting statuses when its follower is evicted."""

import asyncio
from typing import Any

import pytest

from api import followers as followers_module
from api.followers import StatusFollowers
from api.status import read_status
from schemas.api import JobStatus
from tests.helpers import gated_render
from tests.workflows.test_review import REVIEWED, recording_render, submit, wait_for_review

pytestmark = pytest.mark.integration

BODY = {"topic": "tides", "variant": "sadtalker", "options": {"durationSeconds": 6}}


async def settled(followers: StatusFollowers, client: Any, job_id: str, timeout: float = 10) -> JobStatus:
    """The followed status once it equals a direct fold read after it (the follower is at most ~1 s behind)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        followed = await followers.read(job_id)
        direct = await read_status(client, job_id)
        if followed == direct:
            return followed
        assert asyncio.get_running_loop().time() < deadline, f"followed {followed} != direct {direct}"
        await asyncio.sleep(0.1)


async def test_the_followed_status_equals_the_direct_fold_while_running_and_after_cancel(stack_factory) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)]) as stack:
        followers = StatusFollowers(stack.client, capacity=10)
        try:
            job_id = await submit(stack.api, BODY)
            await followers.read(job_id)  # the first read folds directly and starts the follower
            assert len(followers) == 1
            deadline = asyncio.get_running_loop().time() + 30
            while (status := await settled(followers, stack.client, job_id)).nodes[3].state != "running":
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.2)
            assert status.status == "running" and status.nodes[3].progress == {"stage": "animate", "percent": 50}

            await stack.client.get_workflow_handle(job_id).cancel()

            deadline = asyncio.get_running_loop().time() + 30
            while (status := await followers.read(job_id)).status != "cancelled":
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.1)
            assert status == await read_status(stack.client, job_id)
            await asyncio.sleep(0.2)
            assert len(followers) == 0  # a closed run's follower ends
        finally:
            await followers.close()


async def test_a_review_wait_then_a_failure_then_a_reset_run_are_followed(stack_factory, object_store) -> None:
    seen: list[Any] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen, fail_first=True)]) as stack:
        followers = StatusFollowers(stack.client, capacity=10)
        try:
            job_id = await submit(stack.api, REVIEWED)
            await followers.read(job_id)
            await wait_for_review(stack.api, job_id)
            waiting = await settled(followers, stack.client, job_id)
            assert {n.id: n.state for n in waiting.nodes}["review"] == "waiting"
            assert (await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})).status_code == 200
            deadline = asyncio.get_running_loop().time() + 30
            while (status := await followers.read(job_id)).status != "failed":
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.1)
            assert status == await read_status(stack.client, job_id)

            retried = (await stack.api.post(f"/api/jobs/{job_id}/retry")).json()
            deadline = asyncio.get_running_loop().time() + 30
            while (status := await followers.read(job_id)).status != "completed":
                assert asyncio.get_running_loop().time() < deadline, status
                await asyncio.sleep(0.1)
            assert status.run_id == retried["runId"] and status == await read_status(stack.client, job_id)
        finally:
            await followers.close()


async def test_idle_followers_end_and_evicted_ones_do_not_stop_a_watcher(stack_factory, monkeypatch) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)], api_limits={"max_concurrent_jobs": 10}) as stack:
        followers = StatusFollowers(stack.client, capacity=1)
        try:
            first, second = await submit(stack.api, BODY), await submit(stack.api, BODY)
            statuses: list[JobStatus] = []

            async def watch() -> None:
                async for status in followers.watch(first):
                    statuses.append(status)

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(1.5)
            await followers.read(second)  # capacity 1: the watched job's follower is evicted
            assert len(followers) == 1
            await stack.client.get_workflow_handle(first).cancel()

            await asyncio.wait_for(watcher, timeout=30)
            assert statuses[-1].status == "cancelled" and statuses[-1] == await read_status(stack.client, first)

            await stack.client.get_workflow_handle(second).cancel()
            monkeypatch.setattr(followers_module, "IDLE", 0.5)
            waiting = await submit(stack.api, REVIEWED)  # stays open: only idleness ends its follower
            await wait_for_review(stack.api, waiting)
            await followers.read(waiting)
            assert len(followers) == 1
            await asyncio.sleep(2.5)
            assert len(followers) == 0
            await stack.client.get_workflow_handle(waiting).cancel()
        finally:
            await followers.close()
