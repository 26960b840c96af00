"""Video clips as uploads (mp4, mov, webm; must decode; at most `max_video_seconds`) and `options.media` references."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.api.test_api import _png, _wav

pytestmark = pytest.mark.integration

YELLOW = (230, 220, 40)
_CODECS = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".webm": ("libvpx", "libopus")}


def write_clip(
    path: Path,
    seconds: float = 1.0,
    size: tuple[int, int] = (96, 64),
    fps: int = 25,
    colour: tuple[int, int, int] = YELLOW,
    tone_hz: float | None = None,
    rotation: int = 0,
) -> Path:
    """A small clip of `colour` with a dark square drifting across it, optionally with a loud sine as its sound."""
    video_codec, audio_codec = _CODECS[path.suffix]
    w, h = size
    with av.open(str(path), "w") as out:
        video = out.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream(audio_codec, rate=48_000, layout="mono") if tone_hz else None
        n = round(seconds * fps)
        for i in range(n):
            picture = np.empty((h, w, 3), np.uint8)
            picture[:] = colour
            x = i * (w - h // 4) // max(n, 1)
            picture[h // 3 : h // 3 + h // 4, x : x + h // 4] = 30
            out.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(video.encode())
        if audio is not None:
            t = np.arange(round(seconds * 48_000)) / 48_000
            tone = (0.8 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None, :]
            for start in range(0, tone.shape[1], 960):
                frame = av.AudioFrame.from_ndarray(tone[:, start : start + 960], format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48_000, start, Fraction(1, 48_000)
                out.mux(audio.encode(frame))
            out.mux(audio.encode())
    return path


@pytest.mark.parametrize(("suffix", "content_type"), [(".mp4", "video/mp4"), (".mov", "video/quicktime"),
                                                      (".webm", "video/webm")])  # fmt: skip
async def test_mp4_mov_and_webm_clips_are_stored(stack_factory, tmp_path: Path, suffix: str, content_type: str) -> None:
    clip = write_clip(tmp_path / f"beach{suffix}", tone_hz=440)  # with sound: kept in the file, never used
    async with stack_factory(gpu=False) as stack:
        response = await stack.api.post("/api/uploads", files=[("files", (clip.name, clip.read_bytes()))])
        assert response.status_code == 201, response.text
        stored = response.json()["data"][0]
        assert stored["contentType"] == content_type and stored["uri"].endswith(suffix)
        assert stored["uri"].startswith(f"s3://uploads/{stack.user_id}/")


async def test_unusable_clips_are_4xx_naming_the_file(stack_factory, tmp_path: Path) -> None:
    whole = write_clip(tmp_path / "whole.mp4").read_bytes()
    cases = [
        ("noise.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "is not a readable video"),
        ("cut.mp4", whole[: len(whole) // 2], "is not a readable video"),  # the index (moov) is at the end
        ("long.mov", write_clip(tmp_path / "long.mov", seconds=2.2).read_bytes(), "longer than 2 s"),
        ("tiny.webm", write_clip(tmp_path / "tiny.webm", size=(48, 32)).read_bytes(), "at least 64×64"),
    ]
    async with stack_factory(gpu=False, api_limits={"max_video_seconds": 2}) as stack:
        before = stack.store.list_keys("uploads", f"{stack.user_id}/")
        for name, data, message in cases:
            response = await stack.api.post(
                "/api/uploads", files=[("files", ("fine.png", _png(64, 64))), ("files", (name, data))]
            )
            assert response.status_code == 422, (name, response.text)
            detail = response.json()["detail"][0]
            assert detail["loc"] == ["body", "files", 1] and name in detail["msg"] and message in detail["msg"], detail
        assert stack.store.list_keys("uploads", f"{stack.user_id}/") == before, "nothing was stored"
        # Exactly at the limit is fine: the length is measured on the decoded frames.
        at_limit = write_clip(tmp_path / "limit.mp4", seconds=2)
        response = await stack.api.post("/api/uploads", files=[("files", ("limit.mp4", at_limit.read_bytes()))])
        assert response.status_code == 201, response.text


async def test_options_media_must_be_the_callers_images_and_clips(stack_factory, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.webm")
    async with stack_factory() as stack:
        stored = await stack.api.post(
            "/api/uploads",
            files=[("files", ("a.png", _png(64, 64))), ("files", ("clip.webm", clip.read_bytes())),
                   ("files", ("voice.wav", _wav(2, 8000)))],
        )  # fmt: skip
        assert stored.status_code == 201, stored.text
        image, video, voice = (item["uri"] for item in stored.json()["data"])
        body = {"mode": "generate", "topic": "tides", "variant": "svd"}

        async def plan(media: list[str]) -> tuple[int, object]:
            response = await stack.api.post("/api/plan", json={**body, "options": {"media": media}})
            return response.status_code, response.json()["detail"] if response.status_code >= 400 else None

        assert await plan([image, video, image]) == (200, None)
        status, detail = await plan([image, "s3://uploads/someone-else/0123.png"])
        assert status == 403 and isinstance(detail, str) and detail.startswith("options.media.1: ")
        assert "not one of your uploads" in detail
        missing = f"s3://uploads/{stack.user_id}/{'0' * 32}.png"
        status, detail = await plan([image, video, missing])
        assert status == 422 and detail == [
            {"loc": ["body", "options", "media", 2], "msg": f"{missing} does not exist", "type": "value_error"}
        ]
        status, detail = await plan([voice])
        assert status == 422 and isinstance(detail, list) and detail[0]["loc"] == ["body", "options", "media", 0]
        assert "not an image or a video clip" in detail[0]["msg"]
        status, detail = await plan(["https://example.com/a.png"])
        assert status == 422 and isinstance(detail, list) and detail[0]["loc"][-3:] == ["options", "media", 0]
