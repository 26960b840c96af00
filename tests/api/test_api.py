"""The HTTP API against the real stack: errors, status transitions, live progress, downloads."""

import asyncio
import math

import httpx
import numpy as np
import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError

from schemas import names
from schemas.capabilities import CapabilitiesManifest
from schemas.speech import estimate_spoken_seconds, voices_for
from schemas.tasks import Asset, RenderInput, RenderResult
from tests.conftest import astronaut_png, wait_for_status

pytestmark = pytest.mark.integration


async def test_unknown_job_is_404(stack_factory) -> None:
    async with stack_factory() as stack:
        for path in ("/api/status/job-nope", "/api/jobs/job-nope"):
            response = await stack.api.get(path)
            assert response.status_code == 404
            assert "job-nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "topic"]),
        ({"topic": ""}, ["body", "topic"]),
        ({"topic": "x", "variant": "pixar"}, ["body", "variant"]),
        ({"topic": "x", "options": {"resolution": "4k"}}, ["body", "options", "resolution"]),
        ({"topic": "x", "options": {"durationSeconds": -1}}, ["body", "options", "durationSeconds"]),
        ({"topic": "x", "options": {"durationSeconds": 500}}, ["body", "options", "durationSeconds"]),
        ({"topic": "x", "options": {"durationSeconds": 4.5}}, ["body", "options", "durationSeconds"]),
        ({"topic": "x", "language": "zz"}, ["body", "language"]),  # no voice speaks it
        ({"topic": "x", "language": "de"}, ["body", "language"]),  # spoken, but the offline writer writes English
        ({"topic": "x", "voice": "piper:nobody"}, ["body", "voice"]),
        ({"topic": "x", "voice": "espeak-ng:de"}, ["body", "voice"]),  # a German voice for an English job
        (
            {"topic": "x", "script": {"narrative": "Hi there."}, "options": {"durationSeconds": 60}},
            ["body", "script", "narrative"],
        ),  # fmt: skip
        ({"topic": "x", "portrait": "file:///etc/passwd"}, ["body", "portrait"]),
        ({"topic": "x", "profileId": "prof-missing"}, ["body", "profileId"]),
        ({"topic": "x", "colour": "red"}, ["body", "colour"]),
    ],
)
async def test_bad_generate_bodies_are_422_naming_the_field(stack_factory, body, loc) -> None:
    async with stack_factory() as stack:
        response = await stack.api.post("/api/generate", json=body)
        assert response.status_code == 422, response.text
        assert loc in [d["loc"] for d in response.json()["detail"]], response.json()


async def test_train_needs_images_and_own_existing_uploads(stack_factory) -> None:
    async with stack_factory() as stack:
        missing = await stack.api.post("/api/train", json={"topic": "x", "images": [], "consent": True})
        assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "images"]
        foreign = await stack.api.post(
            "/api/train", json={"topic": "x", "images": ["s3://uploads/someone-else/a.png"], "consent": True}
        )
        assert foreign.status_code == 403 and "not one of your uploads" in foreign.json()["detail"]
        absent = await stack.api.post(
            "/api/train", json={"topic": "x", "images": [f"s3://uploads/{stack.user_id}/absent.png"], "consent": True}
        )
        assert absent.status_code == 422 and absent.json()["detail"][0]["loc"] == ["body", "images", 0]


async def test_uploads_reject_unsupported_and_broken_files(stack_factory, tmp_path) -> None:
    async with stack_factory() as stack:
        exe = await stack.api.post("/api/uploads", files=[("files", ("run.exe", b"MZ"))])
        assert exe.status_code == 415 and "unsupported file type" in exe.json()["detail"]
        broken = await stack.api.post("/api/uploads", files=[("files", ("face.png", b"not a png"))])
        assert broken.status_code == 422 and "not a readable image" in broken.json()["detail"][0]["msg"]
        good = await stack.api.post(
            "/api/uploads", files=[("files", ("face.png", astronaut_png(tmp_path / "a.png").read_bytes()))]
        )
        assert good.status_code == 201
        uri = good.json()["data"][0]["uri"]
        assert uri.startswith(f"s3://uploads/{stack.user_id}/") and uri.endswith(".png")


async def test_plan_returns_the_graph_without_running_it(stack_factory) -> None:
    async with stack_factory() as stack:
        response = await stack.api.post("/api/plan", json={"mode": "generate", "topic": "x", "variant": "sadtalker"})
        assert response.status_code == 200, response.text
        graph = response.json()["graph"]
        assert graph["graph_id"] == "generate_v1"
        assert {"from": "select", "to": "render"} in graph["edges"]


async def test_plan_resolves_the_voice_and_fits_the_duration_to_a_user_script(stack_factory, tmp_path) -> None:
    narrative = "Black holes bend light. They also slow down time, as seen from far away. " * 4
    async with stack_factory() as stack:
        caps = CapabilitiesManifest.model_validate((await stack.api.get("/api/capabilities")).json())
        assert caps.gpu is not None
        voice = voices_for(caps.gpu.voices, "en")[0]
        body = {"mode": "generate", "topic": "x", "script": {"narrative": narrative}}
        response = await stack.api.post("/api/plan", json=body)
        assert response.status_code == 200, response.text
        nodes = {n["id"]: n for n in response.json()["graph"]["nodes"]}
        assert nodes["script"]["params"] == {"words_per_minute": voice.words_per_minute}
        spoken = estimate_spoken_seconds(narrative, voice.words_per_minute)
        assert response.json()["durationSeconds"] == math.ceil(spoken * 10) / 10
        assert response.json()["voice"] == voice.id

        image = (
            await stack.api.post(
                "/api/uploads", files=[("files", ("a.png", astronaut_png(tmp_path / "a.png").read_bytes()))]
            )
        ).json()["data"][0]["uri"]
        train = {"mode": "train_and_generate", "topic": "x", "images": [image], "consent": True, "language": "zz"}
        refused = await stack.api.post("/api/plan", json=train)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "language"]
        train_only = {**train, "mode": "train_only", "options": {"durationSeconds": 1}}  # renders nothing: no checks
        assert (await stack.api.post("/api/plan", json=train_only)).status_code == 200


async def test_capabilities_show_both_planes(stack_factory) -> None:
    async with stack_factory() as stack:
        caps = (await stack.api.get("/api/capabilities")).json()
        assert set(caps["gpu"]["variants"]) == {"svd", "sadtalker"}
        assert names.RENDER_VIDEO in caps["gpu"]["tasks"] and names.GENERATE_SCRIPT in caps["cpu"]["tasks"]
        # Other tests' CPU workers (one with an Ollama writer) share this database: the
        # intersection of differing LLM modes is reported as "mixed", never silently one of them.
        assert caps["cpu"]["llm_mode"] in {"offline", "mixed"}


def gated_render(release: asyncio.Event):
    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        percent = 0
        while not release.is_set():
            percent = min(percent + 10, 90)
            activity.heartbeat({"stage": "animate", "percent": percent, "stage_index": 2, "stage_count": 6})
            await asyncio.sleep(0.2)
        raise ApplicationError(
            "stage 'encode' failed: disk full",
            [Asset(kind="audio", uri=inp.portrait or "").model_dump()],
            type="RenderStageFailed",
            non_retryable=True,
        )

    return render_video


async def test_status_goes_queued_running_and_shows_heartbeat_progress_then_partial_outputs(
    stack_factory, tmp_path
) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)]) as stack:
        portrait = (
            await stack.api.post(
                "/api/uploads", files=[("files", ("p.png", astronaut_png(tmp_path / "p.png").read_bytes()))]
            )
        ).json()["data"][0]["uri"]
        response = await stack.api.post("/api/generate", json={"topic": "x", "portrait": portrait})
        job_id = response.json()["jobId"]
        first = (await stack.api.get(f"/api/status/{job_id}")).json()
        assert first["status"] in ("queued", "running")
        seen = {first["status"]}
        for _ in range(150):
            status = (await stack.api.get(f"/api/status/{job_id}")).json()
            seen.add(status["status"])
            render = next(n for n in status["nodes"] if n["id"] == "render")
            if render["state"] == "running" and render["progress"] and render["progress"]["percent"] >= 20:
                break
            await asyncio.sleep(0.1)
        assert render["progress"]["stage"] == "animate" and render["attempt"] == 1 and render["startedAt"]
        assert "running" in seen
        release.set()
        final = await wait_for_status(stack.api, job_id)
        assert final["status"] == "failed"
        assert final["error"]["stage"] == "render" and "disk full" in final["error"]["message"]
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        partial = [a for a in record["artifacts"] if a["partial"]]
        assert [(a["kind"], a["nodeId"], a["uri"]) for a in partial] == [("audio", "render", portrait)]
        assert httpx.get(partial[0]["url"]).status_code == 200


async def test_jobs_list_is_newest_first_with_states(stack_factory) -> None:
    async with stack_factory() as stack:
        ids = []
        for topic in ("one", "two"):
            ids.append(
                (
                    await stack.api.post("/api/generate", json={"topic": topic, "options": {"durationSeconds": 5}})
                ).json()["jobId"]
            )
        for job_id in ids:
            await wait_for_status(stack.api, job_id)
        page = (await stack.api.get("/api/jobs", params={"limit": 1})).json()
        assert page["count"] == 1 and page["data"][0]["jobId"] == ids[-1] and page["data"][0]["status"] == "completed"
        rest = (await stack.api.get("/api/jobs", params={"limit": 1, "cursor": page["nextCursor"]})).json()
        assert rest["data"][0]["jobId"] == ids[0]
        assert (await stack.api.get("/api/jobs", params={"cursor": "garbage"})).status_code == 422


async def test_cancel_stops_the_render_and_marks_the_rest_skipped(stack_factory) -> None:
    async with stack_factory() as stack:
        job_id = (
            await stack.api.post(
                "/api/generate", json={"topic": "a long talk", "options": {"durationSeconds": 60, "resolution": "720p"}}
            )
        ).json()["jobId"]
        for _ in range(300):
            status = (await stack.api.get(f"/api/status/{job_id}")).json()
            render = next(n for n in status["nodes"] if n["id"] == "render")
            if render["state"] == "running" and (render["progress"] or {}).get("percent", 0) > 5:
                break
            await asyncio.sleep(0.1)
        assert (await stack.api.post(f"/api/jobs/{job_id}/cancel")).status_code == 202
        final = await wait_for_status(stack.api, job_id)
        assert final["status"] == "cancelled"
        states = {n["id"]: n["state"] for n in final["nodes"]}
        assert states["render"] == "cancelled" and states["register"] == "skipped"
        again = await stack.api.post(f"/api/jobs/{job_id}/cancel")
        assert again.status_code == 409 and "cancelled" in again.json()["detail"]
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert not [a for a in record["artifacts"] if a["kind"] == "video"]


def _wav(seconds: float, amplitude: int) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        tone = (amplitude * np.sin(np.arange(int(16000 * seconds)) * 2 * np.pi * 220 / 16000)).astype(np.int16)
        w.writeframes(tone.tobytes())
    return buf.getvalue()


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("tiny.png", _png(1, 1), "1×1; images must be at least 64×64"),
        ("silent.wav", _wav(2, 0), "is silent"),
        ("short.wav", _wav(0.3, 8000), "voice clips must be at least 1 s"),
        ("fake.wav", b"RIFF not really audio", "not a readable audio file"),
    ],
)
async def test_unusable_uploads_are_422_naming_the_file(stack_factory, name, data, message) -> None:
    async with stack_factory(gpu=False) as stack:
        stored_before = len(stack.store.list_keys("uploads", f"{stack.user_id}/"))
        response = await stack.api.post("/api/uploads", files=[("files", (name, data))])
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "files", 0] and name in detail["msg"] and message in detail["msg"]
        assert len(stack.store.list_keys("uploads", f"{stack.user_id}/")) == stored_before, "nothing was stored"


async def test_a_good_voice_clip_is_stored(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        response = await stack.api.post("/api/uploads", files=[("files", ("voice.wav", _wav(1.5, 8000)))])
        assert response.status_code == 201 and response.json()["data"][0]["contentType"] == "audio/wav"
