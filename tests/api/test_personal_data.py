"""Personal data: deleting jobs, profiles and uploads removes rows and objects; unused uploads
expire through the retention schedule."""

import asyncio
import uuid
from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.worker import ensure_retention_schedule
from core import repo
from core.db import utcnow
from core.retention import expire_uploads
from core.storage import parse_s3_uri
from gpu_worker.training.voice import voice_uri
from gpu_worker.training.voice_clone import clone_uri
from schemas import names
from schemas.tasks import ExpireResult
from tests.conftest import astronaut_png, wait_for_status
from tests.helpers import gated_render

QUICK = {"topic": "five seconds", "options": {"durationSeconds": 5}}


async def _upload(stack, tmp_path, name: str = "p.png") -> str:
    data = astronaut_png(tmp_path / name).read_bytes()
    response = await stack.api.post("/api/uploads", files=[("files", (name, data))])
    return str(response.json()["data"][0]["uri"])


async def test_deleting_a_job_removes_its_video_rows_and_history(stack_factory) -> None:
    async with stack_factory() as stack:
        job_id = (await stack.api.post("/api/generate", json=QUICK)).json()["jobId"]
        assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        assert stack.store.list_keys(names.ARTIFACTS_BUCKET, f"jobs/{job_id}/")
        assert (await stack.api.delete(f"/api/jobs/{job_id}")).status_code == 204
        assert stack.store.list_keys(names.ARTIFACTS_BUCKET, f"jobs/{job_id}/") == []
        assert (await stack.api.get(f"/api/jobs/{job_id}")).status_code == 404
        assert (await stack.api.get("/api/jobs")).json()["count"] == 0
        async with stack.sessions() as session:
            assert await repo.list_artifacts(session, job_id) == []
        for _ in range(600):  # Temporal deletes the history asynchronously
            try:
                await stack.client.get_workflow_handle(job_id).describe()
            except RPCError:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the workflow history was not deleted")
        assert (await stack.api.delete(f"/api/jobs/{job_id}")).status_code == 404


async def _ready_profile(stack, tmp_path) -> tuple[str, list[str], str]:
    """A trained-looking profile: its uploads, weights, voice (with an XTTS clone), and a training job's checkpoint."""
    image, clip = await _upload(stack, tmp_path, "face.png"), await _upload(stack, tmp_path, "second.png")
    train_job = f"job-{uuid.uuid4().hex[:16]}"
    async with stack.sessions.begin() as session:
        profile = await repo.resolve_or_create_profile(session, stack.user_id, "me", [image], [clip])
        lora = stack.store.put_bytes(names.ARTIFACTS_BUCKET, f"profiles/{profile.id}/lora.safetensors", b"w")
        # Where `train_voice` writes them: the fitted voice and the cloned voice's conditioning (biometric data).
        voice, clone = (
            stack.store.put_bytes(*parse_s3_uri(uri), data)
            for uri, data in ((voice_uri(profile.id), b"{}"), (clone_uri(profile.id), b"latents"))
        )
        await repo.update_profile(session, profile.id, status="ready", lora_id=lora, voice_id=voice, portrait_uri=image)
        graph = {"graph_id": "train_v1", "nodes": [{"id": "train_lora", "task": "train_lora", "plane": "gpu"}]}
        # Trained yesterday (a row without a workflow would otherwise look like a job still starting).
        await repo.insert_job(session, job_id=train_job, user_id=stack.user_id, mode="train_only", variant="svd",
                              topic="t", request={}, graph=graph, profile_id=profile.id,
                              created_at=utcnow() - timedelta(days=1))  # fmt: skip
    checkpoint = stack.store.put_bytes(names.ARTIFACTS_BUCKET, f"jobs/{train_job}/train_lora/step-20.pt", b"c")
    return profile.id, [image, clip, lora, voice, clone, checkpoint], train_job


async def test_deleting_a_profile_removes_weights_uploads_and_checkpoints(stack_factory, tmp_path) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)]) as stack:
        profile_id, objects, _ = await _ready_profile(stack, tmp_path)
        using = (await stack.api.post("/api/generate", json={**QUICK, "profileId": profile_id})).json()["jobId"]
        busy = await stack.api.delete(f"/api/profiles/{profile_id}")
        assert busy.status_code == 409 and using in busy.json()["detail"]
        assert all(stack.store.exists(uri) for uri in objects)
        cancelled = await stack.api.post(f"/api/jobs/{using}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        await wait_for_status(stack.api, using)
        assert (await stack.api.delete(f"/api/profiles/{profile_id}")).status_code == 204
        assert [uri for uri in objects if stack.store.exists(uri)] == []
        assert (await stack.api.get(f"/api/profiles/{profile_id}")).status_code == 404
        assert (await stack.api.delete(f"/api/profiles/{profile_id}")).status_code == 404
        release.set()


async def test_a_running_job_cannot_be_deleted(stack_factory) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)]) as stack:
        job_id = (await stack.api.post("/api/generate", json=QUICK)).json()["jobId"]
        refused = await stack.api.delete(f"/api/jobs/{job_id}")
        assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
        await stack.api.post(f"/api/jobs/{job_id}/cancel")
        await wait_for_status(stack.api, job_id)
        assert (await stack.api.delete(f"/api/jobs/{job_id}")).status_code == 204
        release.set()


async def test_uploads_are_listed_and_deleted_by_name(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        uri = await _upload(stack, tmp_path)
        listed = (await stack.api.get("/api/uploads")).json()
        assert [u["uri"] for u in listed["data"]] == [uri] and listed["data"][0]["sizeBytes"] > 0
        name = uri.rsplit("/", 1)[1]
        assert (await stack.api.delete(f"/api/uploads/{name}")).status_code == 204
        assert not stack.store.exists(uri)
        assert (await stack.api.delete(f"/api/uploads/{name}")).status_code == 404
        for bad in ("..%2F..%2Fetc%2Fpasswd", "x.png", "UPPER0000000000000000000000000000.png"):
            assert (await stack.api.delete(f"/api/uploads/{bad}")).status_code in (404, 422), bad


async def test_retention_deletes_only_uploads_nothing_uses(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        kept_by_profile = await _upload(stack, tmp_path, "a.png")
        kept_by_job = await _upload(stack, tmp_path, "b.png")
        unused = await _upload(stack, tmp_path, "c.png")
        async with stack.sessions.begin() as session:
            await repo.resolve_or_create_profile(session, stack.user_id, "keeper", [kept_by_profile], [])
            await repo.insert_job(session, job_id=f"job-{uuid.uuid4().hex[:16]}", user_id=stack.user_id,
                                  mode="generate", variant="svd", topic="t", request={"portrait": kept_by_job},
                                  graph={})  # fmt: skip
        await asyncio.sleep(1.1)  # object timestamps have one-second resolution
        result = await expire_uploads(stack.sessions, stack.store, timedelta(0), job_window=timedelta(hours=1))
        assert unused in result.deleted and not {kept_by_profile, kept_by_job} & set(result.deleted)
        assert not stack.store.exists(unused)
        assert stack.store.exists(kept_by_profile) and stack.store.exists(kept_by_job)


async def test_the_retention_schedule_runs_the_sweep_on_the_cpu_queue(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        schedule_id = f"retention-{stack.user_id}"
        await ensure_retention_schedule(stack.client, stack.settings, schedule_id)
        await ensure_retention_schedule(stack.client, stack.settings, schedule_id)  # idempotent
        handle = stack.client.get_schedule_handle(schedule_id)
        try:
            described = await handle.describe()
            assert described.schedule.spec.intervals[0].every == timedelta(hours=1), described.schedule.spec
            await handle.trigger()
            for _ in range(100):
                runs = (await handle.describe()).info.recent_actions
                if runs:
                    run = stack.client.get_workflow_handle(runs[0].action.workflow_id)
                    if (await run.describe()).status == WorkflowExecutionStatus.COMPLETED:
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the triggered sweep did not complete")
            result = ExpireResult.model_validate(await run.result())
            assert result.deleted == []  # nothing is a week old here
        finally:
            await handle.delete()
