"""Saved presets: `GET/POST/DELETE /api/presets` per user, and bodies that name one (`preset`)."""

import pytest

from core import repo
from tests.api.test_api import _wav
from tests.conftest import wait_for_status

pytestmark = pytest.mark.integration

SHORTS = {
    "name": "shorts",
    "variant": "sadtalker",
    "language": "en",
    "options": {"durationSeconds": 6, "aspectRatio": "9:16", "captions": True, "captionStyle": "karaoke"},
}


async def test_presets_are_created_listed_newest_first_and_deleted(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        assert (await stack.api.get("/api/presets")).json() == {"data": [], "count": 0}
        created = await stack.api.post("/api/presets", json=SHORTS)
        assert created.status_code == 201, created.text
        preset = created.json()
        assert preset["name"] == "shorts" and preset["variant"] == "sadtalker" and preset["voice"] is None
        assert preset["options"]["aspectRatio"] == "9:16" and preset["options"]["captionStyle"] == "karaoke"
        assert (await stack.api.post("/api/presets", json={"name": "Café · calm"})).status_code == 201

        listed = (await stack.api.get("/api/presets")).json()
        assert listed["count"] == 2 and [p["name"] for p in listed["data"]] == ["Café · calm", "shorts"]
        assert listed["data"][0]["options"] is None and listed["data"][1] == preset

        duplicate = await stack.api.post("/api/presets", json={"name": "shorts", "variant": "svd"})
        assert duplicate.status_code == 409 and "preset 'shorts' exists" in duplicate.json()["detail"]

        assert (await stack.api.delete("/api/presets/Caf%C3%A9%20%C2%B7%20calm")).status_code == 204
        missing = await stack.api.delete("/api/presets/Caf%C3%A9%20%C2%B7%20calm")
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        assert [p["name"] for p in (await stack.api.get("/api/presets")).json()["data"]] == ["shorts"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": ""}, ["body", "name"]),
        ({"name": "x" * 65}, ["body", "name"]),
        ({"name": "a/b"}, ["body", "name"]),
        ({"name": ".."}, ["body", "name"]),
        ({"name": "x", "variant": "imax"}, ["body", "variant"]),
        ({"name": "x", "options": {"fps": 500}}, ["body", "options", "fps"]),
        ({"name": "x", "topic": "y"}, ["body", "topic"]),  # a preset holds options, not a topic
    ],
)
async def test_bad_preset_bodies_are_422_naming_the_field(stack_factory, body, loc) -> None:
    async with stack_factory(gpu=False) as stack:
        response = await stack.api.post("/api/presets", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc


async def test_a_user_has_at_most_the_configured_number_of_presets(stack_factory) -> None:
    async with stack_factory(gpu=False, api_limits={"max_presets": 2}) as stack:
        for name in ("one", "two"):
            assert (await stack.api.post("/api/presets", json={"name": name})).status_code == 201
        refused = await stack.api.post("/api/presets", json={"name": "three"})
        assert refused.status_code == 409 and "2 presets" in refused.json()["detail"]
        assert (await stack.api.delete("/api/presets/one")).status_code == 204
        assert (await stack.api.post("/api/presets", json={"name": "three"})).status_code == 201


async def test_users_never_see_each_others_presets(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        assert (await stack.api.post("/api/presets", json=SHORTS)).status_code == 201
        other = await stack.client_for(f"other-{stack.user_id}")
        assert (await other.get("/api/presets")).json() == {"data": [], "count": 0}
        assert (await other.delete("/api/presets/shorts")).status_code == 404
        used = await other.post("/api/plan", json={"mode": "generate", "topic": "x", "preset": "shorts"})
        assert used.status_code == 422 and used.json()["detail"][0]["loc"] == ["body", "preset"]
        # The same name is free for another user, and theirs is not the first user's.
        assert (await other.post("/api/presets", json={"name": "shorts", "variant": "svd"})).status_code == 201
        mine = (await stack.api.get("/api/presets")).json()["data"]
        assert [(p["name"], p["variant"]) for p in mine] == [("shorts", "sadtalker")]


async def test_an_unknown_preset_is_422_naming_preset(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        for path, body in [
            ("/api/generate", {"topic": "x", "preset": "nope"}),
            ("/api/train", {"images": ["s3://uploads/u/a.png"], "consent": True, "preset": "nope"}),
            ("/api/plan", {"mode": "generate", "topic": "x", "preset": "nope"}),
        ]:
            response = await stack.api.post(path, json=body)
            assert response.status_code == 422, (path, response.text)
            detail = response.json()["detail"][0]
            assert detail["loc"] == ["body", "preset"] and "nope" in detail["msg"]


async def test_a_job_runs_with_the_preset_and_the_body_overrides_it(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        assert (await stack.api.post("/api/presets", json=SHORTS)).status_code == 201
        # The preset's language applies: a body without one gets it, a body's own wins.
        zz = await stack.api.post("/api/presets", json={"name": "zz", "language": "zz"})
        assert zz.status_code == 201
        refused = await stack.api.post("/api/plan", json={"mode": "generate", "topic": "x", "preset": "zz"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "language"]
        planned = await stack.api.post("/api/plan", json={"mode": "generate", "topic": "x", "preset": "zz", "language": "en"})  # fmt: skip
        assert planned.status_code == 200, planned.text

        body = {"topic": "tides", "preset": "shorts", "options": {"captions": False, "fps": 30}}
        started = await stack.api.post("/api/generate", json=body)
        assert started.status_code == 202, started.text
        job_id = started.json()["jobId"]
        async with stack.sessions() as session:
            row = await repo.get_job(session, stack.user_id, job_id)
        assert row is not None and row.preset == "shorts" and row.variant == "sadtalker"
        options = row.request["options"]
        assert (options["duration_seconds"], options["aspect_ratio"], options["caption_style"]) == (
            6,
            "9:16",
            "karaoke",
        )
        assert (options["captions"], options["fps"]) == (False, 30)  # the body's own options

        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["preset"] == "shorts" and record["variant"] == "sadtalker"
        # Deleting the preset leaves the job's record as it ran.
        assert (await stack.api.delete("/api/presets/shorts")).status_code == 204
        assert (await stack.api.get(f"/api/jobs/{job_id}")).json()["preset"] == "shorts"
        plain = await stack.api.post("/api/generate", json={"topic": "plain", "options": {"durationSeconds": 5}})
        assert (await stack.api.get(f"/api/jobs/{plain.json()['jobId']}")).json()["preset"] is None
        for started_id in (job_id, plain.json()["jobId"]):
            await stack.api.post(f"/api/jobs/{started_id}/cancel")
            await wait_for_status(stack.api, started_id)


async def test_music_in_a_preset_passes_the_usual_reference_checks(stack_factory) -> None:
    async with stack_factory(gpu=False) as stack:
        stored = await stack.api.post(
            "/api/uploads",
            files=[("files", ("bed.wav", _wav(3, 8000)))],
            data={"purpose": "music", "rightsConfirmed": "true"},
        )
        mine = stored.json()["data"][0]["uri"]
        foreign = "s3://uploads/someone-else/music-0123.wav"
        for name, music in [("mine", mine), ("foreign", foreign)]:
            saved = await stack.api.post("/api/presets", json={"name": name, "options": {"music": music}})
            assert saved.status_code == 201, saved.text
        plan = {"mode": "generate", "topic": "x"}
        assert (await stack.api.post("/api/plan", json={**plan, "preset": "mine"})).status_code == 200
        refused = await stack.api.post("/api/plan", json={**plan, "preset": "foreign"})
        assert refused.status_code == 403 and "not one of your uploads" in refused.json()["detail"]
        # The body's own music overrides the preset's, and then nothing foreign is left to refuse.
        overridden = {**plan, "preset": "foreign", "options": {"music": "calm"}}
        assert (await stack.api.post("/api/plan", json=overridden)).status_code == 200
