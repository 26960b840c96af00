"""The render stack end to end: API → PipelineWorkflow → the real GPU worker's `render_video` → S3 → API.

Real Temporal dev server, Postgres and S3 server, both workers in-process, the embedded CPU
runtimes, a real photo as the presenter, and short narrations (`durationSeconds` small).
"""

import io
import wave
from typing import Any

import av
import httpx
import numpy as np
import pytest

import gpu_worker.media.pipeline as pipeline
from gpu_worker.media.encode import EncodeError
from tests.conftest import astronaut_png, wait_for_status

pytestmark = pytest.mark.integration


async def _portrait(api: httpx.AsyncClient, tmp_path) -> str:
    data = astronaut_png(tmp_path / "face.png").read_bytes()
    response = await api.post("/api/uploads", files=[("files", ("face.png", data))])
    assert response.status_code == 201, response.text
    return str(response.json()["data"][0]["uri"])


async def _generate(api: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    response = await api.post("/api/generate", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["jobId"]
    return job_id, await wait_for_status(api, job_id, timeout=90)


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


@pytest.mark.parametrize(("variant", "captions"), [("svd", True), ("sadtalker", False)])
async def test_variant_renders_a_talking_video_end_to_end(
    stack_factory, tmp_path, variant: str, captions: bool
) -> None:
    async with stack_factory() as stack, httpx.AsyncClient() as http:
        portrait = await _portrait(stack.api, tmp_path)
        job_id, status = await _generate(
            stack.api,
            {
                "topic": "how libraries keep books in order",
                "variant": variant,
                "portrait": portrait,
                "options": {"durationSeconds": 5, "resolution": "480p", "captions": captions},
            },
        )
        assert status["status"] == "completed", status
        render = next(n for n in status["nodes"] if n["id"] == "render")
        assert render["state"] == "completed" and render["attempt"] == 1

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["variant"] == variant and record["video"] is not None
        artifacts = {a["kind"]: a for a in record["artifacts"] if a["nodeId"] == "render"}
        expected = {"video", "thumbnail", "audio", "scene"}  # the embedded svd camera keeps no base clip
        assert expected | ({"captions"} if captions else set()) == set(artifacts)
        assert not any(a["partial"] for a in record["artifacts"])

        mp4 = (await http.get(record["video"]["url"])).raise_for_status().content
        speech = _wav_seconds((await http.get(artifacts["audio"]["url"])).raise_for_status().content)
        with av.open(io.BytesIO(mp4), mode="r") as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert (video.codec_context.width, video.codec_context.height) == (854, 480)
            assert container.metadata["comment"].startswith("AI-generated"), container.metadata  # disclosure
            duration = (container.duration or 0) / 1_000_000
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            container.seek(0)
            sound = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
        assert 2.0 < speech < 15.0
        assert duration == pytest.approx(speech, rel=0.05)
        assert len(frames) == pytest.approx(speech * 25, rel=0.05)

        first = frames[0].astype(np.int16)
        change = [np.abs(f.astype(np.int16) - first).mean() for f in frames[:: max(1, len(frames) // 10)]]
        assert max(change) > 1.0, f"the picture never changes: {change}"
        distinct = {hash(f[::8, ::8].tobytes()) for f in frames}
        assert len(distinct) > len(frames) // 2, "most frames are repeats"

        rms = float(np.sqrt(np.mean(np.square(sound.astype(np.float64)))))
        assert rms > 0.01 and np.abs(sound).max() > 0.1, f"the audio is (nearly) silent: rms {rms}"


def _encode_dies_mid_stream(frames: Any, *_args: Any, **_kwargs: Any) -> int:
    for i, _frame in enumerate(frames):
        if i == 10:
            raise EncodeError("ffmpeg stopped reading frames: No space left on device")
    raise AssertionError("unreachable")


async def test_a_failing_render_stage_fails_the_job_and_keeps_the_earlier_outputs(
    stack_factory, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(pipeline, "encode_frames", _encode_dies_mid_stream)
    async with stack_factory() as stack, httpx.AsyncClient() as http:
        portrait = await _portrait(stack.api, tmp_path)
        job_id, status = await _generate(
            stack.api,
            {
                "topic": "why the sea is salty",
                "variant": "svd",
                "portrait": portrait,
                "options": {"durationSeconds": 5, "resolution": "480p", "captions": True},
            },
        )
        assert status["status"] == "failed", status
        assert status["error"]["stage"] == "render"
        assert "stage 'encode'" in status["error"]["message"] and "No space left" in status["error"]["message"]
        render = next(n for n in status["nodes"] if n["id"] == "render")
        assert render["state"] == "failed"
        assert [n["state"] for n in status["nodes"] if n["id"] == "register"] == ["skipped"]

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["video"] is None
        partial = {a["kind"]: a for a in record["artifacts"] if a["partial"]}
        assert set(partial) == {"audio", "scene", "captions"}, record["artifacts"]
        for artifact in partial.values():
            assert artifact["nodeId"] == "render" and f"/jobs/{job_id}/render/" in artifact["uri"]
            assert (await http.get(artifact["url"])).status_code == 200
        assert not [a for a in record["artifacts"] if a["kind"] == "video"]
