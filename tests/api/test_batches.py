"""Batches: `POST /api/batches` starts one `BatchWorkflow` whose children are the jobs (real stack)."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from api import erasure
from api.admission import open_job_ids
from api.erasure import delete_history as real_delete_history
from core.db import Batch, Job
from schemas import names
from schemas.tasks import BatchResult, RenderInput, RenderResult, Video
from tests.conftest import wait_for_status
from tests.helpers import put_stub_output
from workflows.batch import BatchWorkflow
from workflows.sandbox import workflow_runner

pytestmark = pytest.mark.integration

SHORT = {"options": {"durationSeconds": 5}}


def timed_render(seconds: float, store: Any) -> object:
    """A `render_video` stub that takes `seconds` and stores a stand-in video."""

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        await asyncio.sleep(seconds)
        video = put_stub_output(store, inp, "video.mp4", "video", "video/mp4")
        return RenderResult(video=Video(uri=video.uri, duration=1.0, variant=inp.pipeline.variant), assets=[video])

    return render_video


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{check.__name__}: not met in {timeout} s")
        await asyncio.sleep(0.2)


async def submit(api, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await api.post("/api/batches", json=body, headers=headers)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def status_of(api, job_id: str) -> str:
    response = await api.get(f"/api/status/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def cancel_and_wait(api, accepted: dict[str, Any]) -> None:
    """Cancel the batch and wait until its jobs ended, so no run is left to evict when the stack stops."""
    await api.post(f"/api/batches/{accepted['batchId']}/cancel")
    for job_id in accepted["jobIds"]:
        await wait_for_status(api, job_id, timeout=30)


async def rows_of(stack) -> tuple[int, int]:
    """How many batch and job rows the stack's user has."""
    async with stack.sessions() as session:
        batches = await session.scalar(sa.select(sa.func.count()).where(Batch.user_id == stack.user_id))
        jobs = await session.scalar(sa.select(sa.func.count()).where(Job.user_id == stack.user_id))
    return batches or 0, jobs or 0


async def replay(stack, batch_id: str) -> None:
    history = await stack.client.get_workflow_handle(batch_id).fetch_history()
    replayer = Replayer(
        workflows=[BatchWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    await replayer.replay_workflow(history)


async def test_a_product_batch_starts_one_child_job_per_combination(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        body = {
            "topics": ["tides", "moss"],
            "variants": ["svd", "sadtalker"],
            "aspectRatios": ["9:16"],
            "common": SHORT,
        }
        accepted = await submit(stack.api, body)
        batch_id, job_ids = accepted["batchId"], accepted["jobIds"]
        assert batch_id.startswith("batch-") and len(job_ids) == 4

        async with stack.sessions() as session:
            rows = {r.id: r for r in await session.scalars(sa.select(Job).where(Job.batch_id == batch_id))}
        assert set(rows) == set(job_ids)
        combos = [(rows[j].topic, rows[j].variant, rows[j].request["options"]["aspect_ratio"]) for j in job_ids]
        assert combos == [("tides", "svd", "9:16"), ("tides", "sadtalker", "9:16"),
                          ("moss", "svd", "9:16"), ("moss", "sadtalker", "9:16")]  # fmt: skip
        assert all(rows[j].request["options"]["duration_seconds"] == 5 for j in job_ids)

        # The batch ends once its last child started (4 ≤ the default cap of 4); the children run on.
        result = await stack.client.get_workflow_handle(batch_id, result_type=BatchResult).result()
        assert result.started == job_ids and result.skipped == []
        query = f"BatchId = '{batch_id}' AND WorkflowType = '{names.PIPELINE_WORKFLOW}'"
        children = [wf async for wf in stack.client.list_workflows(query)]
        assert sorted(wf.id for wf in children) == sorted(job_ids)
        for job_id in job_ids:
            description = await stack.client.get_workflow_handle(job_id).describe()
            assert description.parent_id == batch_id and description.status == WorkflowExecutionStatus.RUNNING
            attrs = {k.name: v for k, v in description.typed_search_attributes}
            assert attrs[names.SA_USER_ID] == stack.user_id and attrs[names.SA_BATCH_ID] == batch_id
            assert attrs[names.SA_VARIANT] == rows[job_id].variant and attrs[names.SA_JOB_MODE] == "generate"
            assert await status_of(stack.api, job_id) == "running"
        await replay(stack, batch_id)

        aggregate = (await stack.api.get(f"/api/batches/{batch_id}")).json()
        assert aggregate["status"] == "running" and aggregate["counts"]["running"] == 4
        assert [j["jobId"] for j in aggregate["jobs"]] == job_ids
        assert aggregate["jobs"][1]["statusUrl"] == f"/api/status/{job_ids[1]}"
        assert aggregate["jobs"][1]["variant"] == "sadtalker" and aggregate["jobs"][1]["aspectRatio"] == "9:16"
        listed = (await stack.api.get("/api/batches")).json()
        assert [b["batchId"] for b in listed["data"]] == [batch_id] and listed["data"][0]["jobIds"] == job_ids

        cancelled = await stack.api.post(f"/api/batches/{batch_id}/cancel")
        assert cancelled.status_code == 202 and sorted(cancelled.json()["jobIds"]) == sorted(job_ids)
        for job_id in job_ids:
            assert (await wait_for_status(stack.api, job_id))["status"] == "cancelled"
        aggregate = (await stack.api.get(f"/api/batches/{batch_id}")).json()
        assert aggregate["status"] == "cancelled" and aggregate["counts"]["cancelled"] == 4


async def test_at_most_the_cap_of_children_run_at_once(stack_factory, object_store) -> None:
    render = timed_render(1.0, object_store)
    async with stack_factory(api_limits={"max_concurrent_jobs": 2}, gpu_activities=[render]) as stack:
        items = [{"topic": f"topic {i}", **SHORT} for i in range(5)]
        accepted = await submit(stack.api, {"items": items})
        for job_id in accepted["jobIds"]:
            assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        spans: list[tuple[datetime, datetime]] = []
        for job_id in accepted["jobIds"]:
            description = await stack.client.get_workflow_handle(job_id).describe()
            assert description.start_time is not None and description.close_time is not None
            spans.append((description.start_time, description.close_time))
        # At each child's start, at most one other child was between its start and its close.
        for start, _ in spans:
            assert sum(other_start <= start < other_close for other_start, other_close in spans) <= 2, spans
        assert sorted(spans) == spans, "children start in the order of the request"
        aggregate = (await stack.api.get(f"/api/batches/{accepted['batchId']}")).json()
        assert aggregate["status"] == "completed" and aggregate["counts"]["completed"] == 5
        await replay(stack, accepted["batchId"])


async def test_the_batch_counts_as_one_open_job_until_its_last_child_started(stack_factory) -> None:
    async with stack_factory(gpu=False, api_limits={"max_concurrent_jobs": 2}) as stack:
        services = stack.app.state.services
        accepted = await submit(stack.api, {"items": [{"topic": f"t{i}", **SHORT} for i in range(3)]})
        batch_id, (first, second, third) = accepted["batchId"], accepted["jobIds"]

        async def two_started() -> bool:
            return await status_of(stack.api, second) == "running"

        await eventually(two_started)
        assert await status_of(stack.api, third) == "queued"
        assert await open_job_ids(services, stack.user_id) == {batch_id, first, second}
        refused = await stack.api.post("/api/generate", json={"topic": "one more", **SHORT})
        assert refused.status_code == 429 and refused.headers["Retry-After"]

        assert (await stack.api.post(f"/api/jobs/{first}/cancel")).status_code == 202
        await stack.client.get_workflow_handle(batch_id).result()  # the third started: the batch is done

        async def third_running() -> bool:
            return await status_of(stack.api, third) == "running"

        await eventually(third_running)

        async def batch_not_counted() -> bool:
            return await open_job_ids(services, stack.user_id) == {second, third}

        await eventually(batch_not_counted)
        await cancel_and_wait(stack.api, accepted)


async def test_cancelling_jobs_not_started_and_the_batch(stack_factory, monkeypatch) -> None:
    async with stack_factory(gpu=False, api_limits={"max_concurrent_jobs": 1}) as stack:
        accepted = await submit(stack.api, {"topics": ["a", "b", "c"], "common": SHORT})
        batch_id, (first, second, third) = accepted["batchId"], accepted["jobIds"]

        async def first_running() -> bool:
            return await status_of(stack.api, first) == "running"

        await eventually(first_running)
        # Not started yet: queued on every job endpoint, all nodes pending, no run.
        status = (await stack.api.get(f"/api/status/{second}")).json()
        assert status["status"] == "queued" and status["runId"] is None
        assert {n["state"] for n in status["nodes"]} == {"pending"}
        record = (await stack.api.get(f"/api/jobs/{second}")).json()
        assert record["status"] == "queued" and record["topic"] == "b"
        listed = {j["jobId"]: j["status"] for j in (await stack.api.get("/api/jobs")).json()["data"]}
        assert listed == {first: "running", second: "queued", third: "queued"}
        assert (await stack.api.post(f"/api/jobs/{second}/retry")).status_code == 409
        deleted = await stack.api.delete(f"/api/jobs/{third}")
        assert deleted.status_code == 409 and batch_id in deleted.json()["detail"]
        assert (await stack.api.delete(f"/api/batches/{batch_id}")).status_code == 409

        # One job cancelled before it started: it never starts and reads cancelled.
        assert (await stack.api.post(f"/api/jobs/{third}/cancel")).status_code == 202
        assert (await wait_for_status(stack.api, third, timeout=10))["status"] == "cancelled"
        assert await status_of(stack.api, second) == "queued"

        cancelled = await stack.api.post(f"/api/batches/{batch_id}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["jobIds"] == [first, second]
        for job_id in (first, second):
            assert (await wait_for_status(stack.api, job_id, timeout=30))["status"] == "cancelled"
        skipped = (await stack.api.get(f"/api/status/{second}")).json()
        assert {n["state"] for n in skipped["nodes"]} == {"skipped"}
        assert (await stack.api.post(f"/api/jobs/{second}/cancel")).status_code == 409
        again = await stack.api.post(f"/api/batches/{batch_id}/cancel")
        assert again.status_code == 409 and "has ended" in again.json()["detail"]
        with pytest.raises(WorkflowFailureError):  # the batch ended cancelled
            await stack.client.get_workflow_handle(batch_id).result()
        description = await stack.client.get_workflow_handle(batch_id).describe()
        assert description.status == WorkflowExecutionStatus.CANCELED
        await replay(stack, batch_id)

        async def listed_cancelled() -> bool:
            aggregate = (await stack.api.get(f"/api/batches/{batch_id}")).json()
            return bool(aggregate["status"] == "cancelled" and aggregate["counts"]["cancelled"] == 3)

        await eventually(listed_cancelled)

        # Deleting the ended batch deletes its jobs, their histories and every row.
        deleted_histories: list[str] = []

        async def delete_history(services: Any, workflow_id: str) -> None:
            deleted_histories.append(workflow_id)
            await real_delete_history(services, workflow_id)

        monkeypatch.setattr(erasure, "delete_history", delete_history)
        assert (await stack.api.delete(f"/api/batches/{batch_id}")).status_code == 204
        assert await rows_of(stack) == (0, 0)
        # Temporal deletes them asynchronously: a batch's and its children's take ~30 s on the dev server.
        assert sorted(deleted_histories) == sorted([first, second, third, batch_id])
        assert (await stack.api.get(f"/api/batches/{batch_id}")).status_code == 404


async def test_a_refused_batch_leaves_no_rows(stack_factory, monkeypatch) -> None:
    async with stack_factory(gpu=False, api_limits={"max_concurrent_jobs": 1}) as stack:
        bad = {"items": [{"topic": "fine", **SHORT}, {"topic": "x", "profileId": "prof-nope", **SHORT}]}
        response = await stack.api.post("/api/batches", json=bad)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "items", 1, "profileId"]
        assert await rows_of(stack) == (0, 0)

        def unavailable(*_args: Any, **_kwargs: Any) -> None:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

        monkeypatch.setattr(stack.app.state.services.temporal, "start_workflow", unavailable)
        down = await stack.api.post("/api/batches", json={"topics": ["a", "b"], "common": SHORT})
        assert down.status_code == 503 and "Temporal" in down.json()["detail"]
        assert await rows_of(stack) == (0, 0)
        monkeypatch.undo()

        job = await stack.api.post("/api/generate", json={"topic": "holds the only slot", **SHORT})
        assert job.status_code == 202
        capped = await stack.api.post("/api/batches", json={"topics": ["a", "b"], "common": SHORT})
        assert capped.status_code == 429 and capped.headers["Retry-After"]
        assert await rows_of(stack) == (0, 1)
        await stack.api.post(f"/api/jobs/{job.json()['jobId']}/cancel")
        await wait_for_status(stack.api, job.json()["jobId"], timeout=30)


async def test_idempotency_key_repeats_the_batch_and_refuses_another_body(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        body = {"topics": ["a", "b"], "common": SHORT}
        first = await submit(stack.api, body, **{"Idempotency-Key": "batch-1"})
        again = await submit(stack.api, body, **{"Idempotency-Key": "batch-1"})
        assert again == first and await rows_of(stack) == (1, 2)
        other = await stack.api.post(
            "/api/batches", json={**body, "topics": ["c"]}, headers={"Idempotency-Key": "batch-1"}
        )
        assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        assert first["batchId"] in other.json()["detail"][0]["msg"]
        assert await rows_of(stack) == (1, 2)
        await cancel_and_wait(stack.api, first)


async def test_another_users_batch_is_404(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        accepted = await submit(stack.api, {"topics": ["mine"], "common": SHORT})
        other = await stack.client_for(f"other-{stack.user_id}")
        batch_id = accepted["batchId"]
        assert (await other.get(f"/api/batches/{batch_id}")).status_code == 404
        assert (await other.post(f"/api/batches/{batch_id}/cancel")).status_code == 404
        assert (await other.delete(f"/api/batches/{batch_id}")).status_code == 404
        assert (await other.get(f"/api/status/{accepted['jobIds'][0]}")).status_code == 404
        assert (await other.get("/api/batches")).json() == {"data": [], "count": 0, "nextCursor": None}
        await cancel_and_wait(stack.api, accepted)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"items": [{"topic": f"t{i}"} for i in range(3)]}, ["body", "items"]),
        ({"topics": ["a", "b"], "variants": ["svd", "sadtalker"]}, ["body", "topics"]),
        ({}, ["body", "items"]),
        ({"items": [{"topic": "a"}], "topics": ["b"]}, ["body", "topics"]),
        ({"items": []}, ["body", "items"]),
        ({"items": [{"topic": ""}]}, ["body", "items", 0, "topic"]),
        ({"topics": ["a"], "variants": ["imax"]}, ["body", "variants", 0]),
        ({"topics": ["a"], "common": {"topic": "b"}}, ["body", "common", "topic"]),
        ({"topics": ["a"], "common": {"preset": "nope"}}, ["body", "common", "preset"]),
        ({"topics": ["a"], "common": {"options": {"durationSeconds": 599}}}, ["body", "common", "options", "durationSeconds"]),
        ({"items": [{"topic": "a"}, {"topic": "b", "options": {"durationSeconds": 599}}]}, ["body", "items", 1, "options", "durationSeconds"]),
        ({"topics": ["a"], "common": {"language": "zz"}}, ["body", "common", "language"]),
    ],
)  # fmt: skip
async def test_bad_batches_are_422_naming_the_field(stack_factory, body, loc) -> None:
    async with stack_factory(gpu=False, api_limits={"max_batch_items": 2}) as stack:
        response = await stack.api.post("/api/batches", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc, response.json()
        assert await rows_of(stack) == (0, 0)


async def test_a_foreign_upload_in_an_item_is_403_naming_it(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        body = {"items": [{"topic": "a"}, {"topic": "b", "portrait": "s3://uploads/someone-else/face.png"}]}
        response = await stack.api.post("/api/batches", json=body)
        assert response.status_code == 403 and response.json()["detail"].startswith("items.1.portrait:")
        assert await rows_of(stack) == (0, 0)
