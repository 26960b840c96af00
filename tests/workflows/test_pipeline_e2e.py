"""`PipelineWorkflow` end to end on a real Temporal dev server, Postgres and S3, both workers."""

import asyncio
import io

import av
import httpx
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.script_writer import OllamaScriptWriter
from schemas import names
from schemas.tasks import (
    RenderInput,
    RenderResult,
    TrainLoraInput,
    TrainLoraResult,
    TrainVoiceInput,
    TrainVoiceResult,
    Video,
)
from tests.conftest import astronaut_png, wait_for_status
from workflows.pipeline import PipelineWorkflow
from workflows.sandbox import workflow_runner

pytestmark = pytest.mark.integration


async def replay(history: WorkflowHistory) -> None:
    await Replayer(
        workflows=[PipelineWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    ).replay_workflow(history)


def scheduled(history: WorkflowHistory) -> list[tuple[str, str, str]]:
    return [
        (a.activity_id, a.activity_type.name, a.task_queue.name)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        for a in [e.activity_task_scheduled_event_attributes]
    ]


async def test_generate_job_completes_with_a_playable_video(stack_factory) -> None:
    async with stack_factory() as stack:
        response = await stack.api.post(
            "/api/generate",
            json={
                "topic": "why the sky is blue",
                "variant": "sadtalker",
                "options": {"durationSeconds": 6, "resolution": "480p"},
            },
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        assert response.json()["status"] == "queued"
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "completed", status
        assert [n["id"] for n in status["nodes"]] == ["script", "profile", "select", "render", "register"]
        assert all(n["state"] == "completed" and n["attempt"] >= 1 for n in status["nodes"])

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["variant"] == "sadtalker" and record["scriptSource"] == "offline"
        assert record["temporalUiUrl"].endswith(f"/workflows/{job_id}/{status['runId']}/history")
        kinds = {a["kind"] for a in record["artifacts"]}
        assert {"video", "thumbnail", "audio"} <= kinds
        mp4 = httpx.get(record["video"]["url"]).content
        with av.open(io.BytesIO(mp4)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert container.streams.audio[0].codec_context.name == "aac"

        history = await stack.client.get_workflow_handle(job_id).fetch_history()
        ids = scheduled(history)
        assert [i for i, _, _ in ids] == ["script", "profile", "select", "render", "register"]
        assert {q for i, _, q in ids if i == "render"} == {stack.settings.temporal.gpu_task_queue}
        assert {q for i, _, q in ids if i != "render"} == {stack.settings.temporal.cpu_task_queue}
        await replay(history)


async def _upload(api: httpx.AsyncClient, name: str, data: bytes) -> str:
    response = await api.post("/api/uploads", files=[("files", (name, data))])
    assert response.status_code == 201, response.text
    return response.json()["data"][0]["uri"]


def overlapping_gpu_stubs(delay: float) -> list[object]:
    """GPU stubs under the real names, slow enough to see whether the trainings overlap."""

    @activity.defn(name=names.TRAIN_LORA)
    async def train_lora(inp: TrainLoraInput) -> TrainLoraResult:
        await asyncio.sleep(delay)
        return TrainLoraResult(lora_id=inp.images[0], steps=1)

    @activity.defn(name=names.TRAIN_VOICE)
    async def train_voice(inp: TrainVoiceInput) -> TrainVoiceResult:
        await asyncio.sleep(delay)
        return TrainVoiceResult(voice_id=inp.clips[0])

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        return RenderResult(video=Video(uri=inp.profile.lora_id or "", duration=1.0, variant=inp.pipeline.variant))

    return [train_lora, train_voice, render_video]


async def test_train_and_generate_runs_both_trainings_in_parallel(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu_activities=overlapping_gpu_stubs(1.5)) as stack:
        image = await _upload(stack.api, "face.png", astronaut_png(tmp_path / "face.png").read_bytes())
        clip = await _upload(stack.api, "voice.wav", _tiny_wav())
        response = await stack.api.post(
            "/api/train", json={"topic": "t", "images": [image], "audio": [clip], "profileName": "me", "consent": True}
        )
        assert response.status_code == 202, response.text
        status = await wait_for_status(stack.api, response.json()["jobId"])
        assert status["status"] == "completed", status
        nodes = {n["id"]: n for n in status["nodes"]}
        lora, voice = nodes["train_lora"], nodes["train_voice"]
        assert lora["startedAt"] < voice["finishedAt"] and voice["startedAt"] < lora["finishedAt"], (
            "trainings did not overlap"
        )
        history = await stack.client.get_workflow_handle(response.json()["jobId"]).fetch_history()
        assert [i for i, _, _ in scheduled(history)] == [
            "script",
            "profile",
            "train_lora",
            "train_voice",
            "select",
            "render",
            "register",
        ]
        await replay(history)


def _tiny_wav() -> bytes:
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * 16000)
    return buf.getvalue()


async def test_llm_failure_fails_the_job_before_any_gpu_work(stack_factory) -> None:
    # A real Ollama client against a local endpoint that answers garbage.
    async def garbage(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "model": "m",
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": "not json at all"},
                "done": True,
            },
        )

    writer = OllamaScriptWriter("http://ollama.test", "m", 5)
    writer._client._client = httpx.AsyncClient(base_url="http://ollama.test", transport=httpx.MockTransport(garbage))
    async with stack_factory(writer=writer) as stack:
        response = await stack.api.post("/api/generate", json={"topic": "black holes"})
        job_id = response.json()["jobId"]
        status = await wait_for_status(stack.api, job_id)
        assert status["status"] == "failed"
        assert status["error"]["stage"] == "script"
        assert "no valid script after one repair attempt" in status["error"]["message"]
        assert [n["state"] for n in status["nodes"]] == ["failed", "skipped", "skipped", "skipped", "skipped"]
        history = await stack.client.get_workflow_handle(job_id).fetch_history()
        assert not [q for _, _, q in scheduled(history) if q == stack.settings.temporal.gpu_task_queue]
        await replay(history)
