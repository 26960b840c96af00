"""Music options: uploading music asks for a rights confirmation, and `options.music` takes only beds or those uploads."""

import pytest

from tests.api.test_api import _wav
from tests.conftest import astronaut_png

pytestmark = pytest.mark.integration


async def test_music_uploads_need_the_rights_confirmed_and_must_be_audio(stack_factory, tmp_path) -> None:
    async with stack_factory(gpu=False) as stack:
        before = stack.store.list_keys("uploads", f"{stack.user_id}/")
        unconfirmed = await stack.api.post(
            "/api/uploads", files=[("files", ("bed.wav", _wav(3, 8000)))], data={"purpose": "music"}
        )
        assert unconfirmed.status_code == 422, unconfirmed.text
        assert unconfirmed.json()["detail"][0]["loc"] == ["body", "rightsConfirmed"]
        picture = await stack.api.post(
            "/api/uploads",
            files=[("files", ("bed.png", astronaut_png(tmp_path / "a.png").read_bytes()))],
            data={"purpose": "music", "rightsConfirmed": "true"},
        )
        assert picture.status_code == 415 and "music must be audio" in picture.json()["detail"]
        assert stack.store.list_keys("uploads", f"{stack.user_id}/") == before, "nothing was stored"

        stored = await stack.api.post(
            "/api/uploads",
            files=[("files", ("bed.wav", _wav(3, 8000)))],
            data={"purpose": "music", "rightsConfirmed": "true"},
        )
        assert stored.status_code == 201, stored.text
        uri = stored.json()["data"][0]["uri"]
        assert uri.startswith(f"s3://uploads/{stack.user_id}/music-")
        # A music upload is listed and deleted like any other.
        listed = (await stack.api.get("/api/uploads")).json()["data"]
        assert uri in [item["uri"] for item in listed]
        name = uri.rsplit("/", 1)[1]
        assert (await stack.api.delete(f"/api/uploads/{name}")).status_code == 204


async def test_options_music_takes_a_bed_or_the_callers_music_upload(stack_factory) -> None:
    async with stack_factory() as stack:
        body = {"mode": "generate", "topic": "tides", "variant": "svd"}

        async def plan(music: str) -> tuple[int, dict[str, object]]:
            response = await stack.api.post("/api/plan", json={**body, "options": {"music": music}})
            return response.status_code, response.json()

        assert (await plan("calm"))[0] == 200
        status, answer = await plan("jazz")
        assert status == 422 and answer["detail"][0]["loc"][-2:] == ["options", "music"]  # /plan: a tagged union
        assert "calm" in answer["detail"][0]["msg"]

        clip = await stack.api.post("/api/uploads", files=[("files", ("voice.wav", _wav(2, 8000)))])
        status, answer = await plan(clip.json()["data"][0]["uri"])
        assert status == 422 and "not a music upload" in answer["detail"][0]["msg"]
        assert answer["detail"][0]["loc"] == ["body", "options", "music"]

        status, answer = await plan("s3://uploads/someone-else/music-0123.wav")
        assert status == 403 and "not one of your uploads" in str(answer["detail"])

        music = await stack.api.post(
            "/api/uploads",
            files=[("files", ("bed.wav", _wav(3, 8000)))],
            data={"purpose": "music", "rightsConfirmed": "true"},
        )
        assert (await plan(music.json()["data"][0]["uri"]))[0] == 200

        volume = await stack.api.post("/api/plan", json={**body, "options": {"musicVolume": 1.5}})
        assert volume.status_code == 422 and volume.json()["detail"][0]["loc"][-2:] == ["options", "musicVolume"]
