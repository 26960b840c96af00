"""`GET /api/jobs/{id}` says what ran: the render's `rendering` through the workflow, `registerOutputs`
and Postgres to the record, keys being the stage ids and values the runtime ids the GPU manifest advertises."""

import asyncio
from itertools import cycle
from typing import Any

import pytest
from temporalio import activity

from core.storage import ObjectStore
from schemas import names
from schemas.tasks import Asset, RenderInput, RenderResult, Video
from tests.conftest import astronaut_png, wait_for_status
from tests.helpers import EMBEDDED_SVD_RENDERING, gated_render, put_stub_output

pytestmark = pytest.mark.integration

# The one stage vocabulary (ARCHITECTURE.md, "Render stages").
STAGES = {"speech", "scene", "image_to_video", "talking_head", "lipsync", "captions", "music", "upscale", "mux"}
EMBEDDED_SVD = EMBEDDED_SVD_RENDERING


def rendered_with(store: ObjectStore, *renderings: dict[str, str]) -> Any:
    """`render_video` that writes a (fake) video and thumbnail and reports `renderings` in turn, one per call."""
    reports = cycle(renderings)

    def put(inp: RenderInput, name: str, kind: str, content_type: str) -> Asset:
        return put_stub_output(store, inp, name, kind, content_type)

    @activity.defn(name=names.RENDER_VIDEO)
    async def render_video(inp: RenderInput) -> RenderResult:
        video = await asyncio.to_thread(put, inp, "video.mp4", "video", "video/mp4")
        thumb = await asyncio.to_thread(put, inp, "thumbnail.jpg", "thumbnail", "image/jpeg")
        variant, rendering = inp.pipeline.variant, next(reports)
        result = Video(uri=video.uri, thumbnail_uri=thumb.uri, duration=1.0, variant=variant, rendering=rendering)
        return RenderResult(video=result, assets=[video, thumb])

    return render_video


async def test_the_record_carries_what_the_render_reported(stack_factory, object_store) -> None:
    async with stack_factory(gpu_activities=[rendered_with(object_store, EMBEDDED_SVD)]) as stack:
        response = await stack.api.post("/api/generate", json={"topic": "what ran", "variant": "svd"})
        job_id = response.json()["jobId"]
        assert (await wait_for_status(stack.api, job_id))["status"] == "completed"
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
    assert record["rendering"] == EMBEDDED_SVD  # stage ids stay snake_case on the camelCase wire


async def test_a_job_still_rendering_has_an_empty_rendering(stack_factory) -> None:
    release = asyncio.Event()
    async with stack_factory(gpu_activities=[gated_render(release)]) as stack:
        job_id = (await stack.api.post("/api/generate", json={"topic": "not yet"})).json()["jobId"]
        await wait_for_status(stack.api, job_id, done={"running"})
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        assert record["rendering"] == {}  # nothing registered yet: the column is NULL
        await stack.api.post(f"/api/jobs/{job_id}/cancel")
        release.set()
        assert (await wait_for_status(stack.api, job_id))["status"] in {"cancelled", "failed"}


@pytest.mark.parametrize("variant", ["svd", "sadtalker"])
async def test_a_real_render_says_which_advertised_runtime_rendered_each_stage(
    stack_factory, tmp_path, variant: str
) -> None:
    """The real GPU worker: every stage it reports is a known stage, rendered by a runtime it advertises."""
    async with stack_factory() as stack:
        face = astronaut_png(tmp_path / "face.png").read_bytes()
        portrait = (await stack.api.post("/api/uploads", files=[("files", ("face.png", face))])).json()["data"][0]
        body = {"topic": "how tides work", "variant": variant, "portrait": portrait["uri"],
                "options": {"durationSeconds": 5, "captions": True}}  # fmt: skip
        response = await stack.api.post("/api/generate", json=body)
        assert response.status_code == 202, response.text
        job_id = response.json()["jobId"]
        assert (await wait_for_status(stack.api, job_id, timeout=120))["status"] == "completed"
        record = (await stack.api.get(f"/api/jobs/{job_id}")).json()
        advertised = (await stack.api.get("/api/capabilities")).json()["gpu"]["runtimes"][variant]
    rendering = record["rendering"]
    assert "speech" in rendering, f"the render did not say what ran: {rendering}"
    assert set(rendering) <= STAGES, rendering
    for stage, runtime in rendering.items():
        assert runtime in advertised.get(stage, []), f"{stage}: {runtime} is not advertised ({advertised})"
