"""Script review (`options.review`): the job waits on a Temporal Update before any GPU time.

Against the real stack; the render is a stub that records the script it was given, except in
the test that listens to the delivered narration through its word captions.
"""

import asyncio
import io
from typing import Any

import av
import httpx
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

from schemas import names
from schemas.speech import estimate_spoken_seconds
from schemas.tasks import RenderInput, RenderResult, ScriptReviewInput, Video
from tests.conftest import astronaut_png, wait_for_status
from tests.helpers import put_stub_output
from tests.workflows.test_pipeline_e2e import _upload, replay

pytestmark = pytest.mark.integration

REVIEWED = {"topic": "why the tide turns", "variant": "sadtalker", "options": {"durationSeconds": 8, "review": True}}
EDIT_SENTENCE = "Harbour lights shimmer on the rising water."
REVIEW_STATE = SearchAttributeKey.for_keyword(names.SA_REVIEW_STATE)
UPDATE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
}


def recording_render(store: Any, seen: list[RenderInput], fail_first: bool = False) -> object:
    """A `render_video` stub that records its input (and fails its first attempt non-retryably if asked)."""

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        seen.append(inp)
        if fail_first and len(seen) == 1:
            raise ApplicationError("the GPU fell over", type=names.ERR_RENDER_STAGE_FAILED, non_retryable=True)
        video = put_stub_output(store, inp, "video.mp4", "video", "video/mp4")
        return RenderResult(video=Video(uri=video.uri, duration=8.0, variant=inp.pipeline.variant), assets=[video])

    return render_video


async def submit(api: httpx.AsyncClient, body: dict[str, Any] | None = None) -> str:
    response = await api.post("/api/generate", json=body or REVIEWED)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


async def wait_for_review(api: httpx.AsyncClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll until the job waits for its review; the status then says `running` with the node `waiting`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = (await api.get(f"/api/status/{job_id}")).json()
        review = next(n for n in status["nodes"] if n["id"] == "review")
        if review["state"] == "waiting":
            assert status["status"] == "running", status
            view = (await api.get(f"/api/jobs/{job_id}/script")).json()
            assert view["state"] == "waiting", view
            return dict(view)
        assert status["status"] in ("queued", "running"), status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.2)


def narrative_fitting(view: dict[str, Any]) -> str:
    """The edit sentence, then more of its words, until the estimated length reaches the middle of the accepted range."""
    low, high = view["spokenSecondsRange"]
    words = EDIT_SENTENCE.rstrip(".").split()
    text = EDIT_SENTENCE
    while estimate_spoken_seconds(text, view["wordsPerMinute"]) < (low + high) / 2:
        text = f"{text.rstrip('.')} {words[len(text.split()) % len(words)].lower()}."
    return text


async def update_events(stack: Any, job_id: str) -> list[int]:
    history = await stack.client.get_workflow_handle(job_id).fetch_history()
    return [e.event_type for e in history.events if e.event_type in UPDATE_EVENTS]


async def test_an_approved_script_is_rendered_and_the_wait_ran_no_activity(stack_factory, object_store) -> None:
    seen: list[RenderInput] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen)]) as stack:
        job_id = await submit(stack.api)
        view = await wait_for_review(stack.api, job_id)
        assert view["source"] == "offline" and view["narrative"] and not view["edited"]
        assert view["estimatedSeconds"] > 0 and view["waitingUntil"] is not None
        assert seen == []  # no GPU time before the approval

        approved = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})
        assert approved.status_code == 200, approved.text[:500]
        assert approved.json()["state"] == "approved"
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "completed", status
        assert [(n["id"], n["state"]) for n in status["nodes"]] == [
            ("script", "completed"), ("profile", "completed"), ("select", "completed"),
            ("review", "completed"), ("render", "completed"), ("register", "completed"),
        ]  # fmt: skip
        assert seen[0].script.narrative == view["narrative"]

        history = await stack.client.get_workflow_handle(job_id).fetch_history()
        activities = [
            e.activity_task_scheduled_event_attributes.activity_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert activities == ["script", "profile", "select", "render", "register"]
        await replay(history)
        description = await stack.client.get_workflow_handle(job_id).describe()
        assert description.typed_search_attributes.get(REVIEW_STATE) == "approved"


async def test_an_edit_then_approve_renders_the_edit_and_the_record_keeps_both(stack_factory, object_store) -> None:
    seen: list[RenderInput] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen)]) as stack:
        job_id = await submit(stack.api)
        view = await wait_for_review(stack.api, job_id)
        edit = narrative_fitting(view)
        edited = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "edit", "narrative": edit})
        assert edited.status_code == 200, edited.text
        answer = edited.json()
        assert answer["state"] == "waiting" and answer["narrative"] == edit and answer["edited"]
        assert answer["originalNarrative"] == view["narrative"] and answer["stage"] == view["stage"]
        again = (await stack.api.get(f"/api/jobs/{job_id}/script")).json()
        assert again["narrative"] == edit and again["state"] == "waiting"

        approved = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})
        assert approved.status_code == 200 and approved.json()["narrative"] == edit
        assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        assert seen[0].script.narrative == edit

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["scriptEdited"] and record["scriptSource"] == "offline"
        assert record["scriptSummary"].startswith(EDIT_SENTENCE[:40])


async def test_a_rejected_script_ends_the_job_cancelled_with_the_reason(stack_factory, object_store) -> None:
    seen: list[RenderInput] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen)]) as stack:
        job_id = await submit(stack.api)
        await wait_for_review(stack.api, job_id)
        rejected = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "reject", "reason": "wrong tone"})
        assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "cancelled", status
        assert status["error"] == {"stage": "review", "message": "rejected: wrong tone"}
        states = {n["id"]: n["state"] for n in status["nodes"]}
        assert states["review"] == "cancelled" and states["render"] == "skipped" and seen == []
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["status"] == "cancelled" and record["error"]["message"] == "rejected: wrong tone"
        after = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})
        assert after.status_code == 409 and "rejected" in after.json()["detail"]
        listed = (await stack.api.get("/api/jobs")).json()["data"]
        assert [j["status"] for j in listed if j["jobId"] == job_id] == ["cancelled"]


async def test_a_review_nobody_answers_times_out_cancelled(stack_factory) -> None:
    async with stack_factory(gpu=False, review={"timeout_hours": 1.5 / 3600}) as stack:
        job_id = await submit(stack.api)
        status = await wait_for_status(stack.api, job_id, timeout=60)
        assert status["status"] == "cancelled", status
        assert status["error"]["stage"] == "review" and status["error"]["message"].startswith("review timed out")
        view = (await stack.api.get(f"/api/jobs/{job_id}/script")).json()
        assert view["state"] == "timed_out"
        late = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})
        assert late.status_code == 409 and "timed out" in late.json()["detail"]


async def test_cancel_while_waiting_ends_the_job_cancelled(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        job_id = await submit(stack.api)
        await wait_for_review(stack.api, job_id)
        assert (await stack.api.post(f"/api/jobs/{job_id}/cancel")).status_code == 202
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "cancelled" and status["error"] is None
        assert {n["id"]: n["state"] for n in status["nodes"]}["review"] == "cancelled"
        assert (await stack.api.get(f"/api/jobs/{job_id}/script")).json()["state"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"action": "edit"}, "narrative", "needs the new narrative"),
        ({"action": "edit", "narrative": "Too short."}, "narrative", "too little"),
        ({"action": "approve", "narrative": EDIT_SENTENCE * 30}, "narrative", "more than"),
        ({"action": "approve", "reason": "why not"}, "reason", "only a rejection"),
        ({"action": "reject", "narrative": EDIT_SENTENCE}, "narrative", "carries no edit"),
    ],
)
async def test_a_bad_action_is_422_naming_the_field_and_leaves_no_history_event(
    stack_factory, body, field, message
) -> None:
    async with stack_factory(gpu=False) as stack:
        job_id = await submit(stack.api)
        await wait_for_review(stack.api, job_id)
        response = await stack.api.post(f"/api/jobs/{job_id}/script", json=body)
        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert detail["loc"] == ["body", field] and message in detail["msg"]
        # The workflow's validator refuses the same action sent past the API.
        handle = stack.client.get_workflow_handle(job_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(names.REVIEW_UPDATE, ScriptReviewInput.model_validate(body))
        assert isinstance(refused.value.cause, ApplicationError)
        assert refused.value.cause.type == names.ERR_REVIEW_INVALID and message in refused.value.cause.message
        assert await update_events(stack, job_id) == []
        await handle.cancel()


async def test_a_second_approve_is_409_and_the_same_key_repeats_the_first_answer(stack_factory, object_store) -> None:
    seen: list[RenderInput] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen)]) as stack:
        job_id = await submit(stack.api)
        await wait_for_review(stack.api, job_id)
        url, key = f"/api/jobs/{job_id}/script", {"Idempotency-Key": "approve-once"}
        first = await stack.api.post(url, json={"action": "approve"}, headers=key)
        assert first.status_code == 200
        assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        repeated = await stack.api.post(url, json={"action": "approve"}, headers=key)
        assert repeated.status_code == 200 and repeated.json() == first.json()
        other = await stack.api.post(url, json={"action": "reject"}, headers=key)
        assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        second = await stack.api.post(url, json={"action": "approve"})
        assert second.status_code == 409 and "approved" in second.json()["detail"]
        assert len(seen) == 1


async def test_actions_on_a_job_without_review_are_409(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        job_id = await submit(stack.api, {**REVIEWED, "options": {"durationSeconds": 8}})
        view = (await stack.api.get(f"/api/jobs/{job_id}/script")).json()
        assert view["state"] == "not_requested"
        response = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})
        assert response.status_code == 409 and "without options.review" in response.json()["detail"]
        await stack.client.get_workflow_handle(job_id).cancel()


async def test_train_only_with_review_is_422(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        image = await _upload(stack.api, "face.png", astronaut_png(tmp_path / "face.png").read_bytes())
        body = {"mode": "train_only", "images": [image], "profileName": "p", "consent": True,
                "options": {"review": True}}  # fmt: skip
        response = await stack.api.post("/api/plan", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "options", "review"]


async def test_retry_after_an_approved_review_keeps_the_script_and_asks_no_new_review(
    stack_factory, object_store
) -> None:
    seen: list[RenderInput] = []
    async with stack_factory(gpu_activities=[recording_render(object_store, seen, fail_first=True)]) as stack:
        job_id = await submit(stack.api)
        view = await wait_for_review(stack.api, job_id)
        edit = narrative_fitting(view)
        approve = {"action": "approve", "narrative": edit}
        assert (await stack.api.post(f"/api/jobs/{job_id}/script", json=approve)).status_code == 200
        assert (await wait_for_status(stack.api, job_id))["status"] == "failed"

        retried = await stack.api.post(f"/api/jobs/{job_id}/retry")
        assert retried.status_code == 202, retried.text
        status = await wait_for_status(stack.api, job_id, done={"completed", "failed", "cancelled"})
        assert status["status"] == "completed", status
        assert [i.script.narrative for i in seen] == [edit, edit]
        assert (await stack.api.get(f"/api/jobs/{job_id}/script")).json()["state"] == "approved"


async def test_waiting_jobs_do_not_count_towards_the_cap_but_are_capped_themselves(stack_factory) -> None:
    limits = {"max_concurrent_jobs": 1}
    async with stack_factory(gpu=False, api_limits=limits, review={"max_waiting": 1}) as stack:
        waiting = await submit(stack.api)
        await wait_for_review(stack.api, waiting)
        other = await submit(stack.api, {**REVIEWED, "options": {"durationSeconds": 8}})  # admitted: 1 open job
        full = await stack.api.post("/api/generate", json=REVIEWED)
        assert full.status_code == 429 and "queued or running" in full.json()["detail"]
        await stack.client.get_workflow_handle(other).cancel()
        await wait_for_status(stack.api, other)
        refused = await stack.api.post("/api/generate", json=REVIEWED)  # under the cap, over the waiting reviews
        assert refused.status_code == 429 and "review" in refused.json()["detail"]
        await stack.client.get_workflow_handle(waiting).cancel()


async def test_the_delivered_narration_is_the_edit(stack_factory) -> None:
    """The real render speaks the edit: its word captions carry the edit's words."""
    async with stack_factory() as stack:
        body = {**REVIEWED, "options": {"durationSeconds": 6, "review": True, "captions": True}}
        job_id = await submit(stack.api, body)
        view = await wait_for_review(stack.api, job_id)
        edit = narrative_fitting(view)
        approved = await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve", "narrative": edit})
        assert approved.status_code == 200, approved.json()
        status = await wait_for_status(stack.api, job_id, timeout=240)
        assert status["status"] == "completed", status
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        [vtt] = [a for a in record["artifacts"] if a["kind"] == "captions" and a["uri"].endswith(".vtt")]
        text = httpx.get(vtt["url"]).text
        assert "Harbour" in text and "shimmer" in text
        with av.open(io.BytesIO(httpx.get(record["video"]["url"]).content)) as container:
            assert container.streams.audio


async def test_a_batch_with_review_waits_for_each_job_and_a_queued_one_is_pending(stack_factory, object_store) -> None:
    seen: list[RenderInput] = []
    limits = {"max_concurrent_jobs": 1}
    async with stack_factory(gpu_activities=[recording_render(object_store, seen)], api_limits=limits) as stack:
        body = {"topics": ["Tides", "Moss"], "variants": ["sadtalker"], "aspectRatios": ["16:9"],
                "common": {"options": {"durationSeconds": 8, "review": True}}}  # fmt: skip
        accepted = await stack.api.post("/api/batches", json=body)
        assert accepted.status_code == 202, accepted.text
        first, second = accepted.json()["jobIds"]
        await wait_for_review(stack.api, first)
        queued = (await stack.api.get(f"/api/jobs/{second}/script")).json()
        assert queued["state"] == "pending"  # its batch has not started it: one job runs at a time
        early = await stack.api.post(f"/api/jobs/{second}/script", json={"action": "approve"})
        assert early.status_code == 409 and "not started" in early.json()["detail"]

        for job_id in (first, second):
            if job_id == second:
                await wait_for_review(stack.api, second)
            assert (await stack.api.post(f"/api/jobs/{job_id}/script", json={"action": "approve"})).status_code == 200
            assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        assert len(seen) == 2
