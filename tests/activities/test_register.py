"""`artifacts.registerOutputs` writes what ran (`Video.rendering`) into the job row; old inputs without it still register."""

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment

from activities.control import ControlActivities
from activities.script_writer import OfflineScriptWriter
from core import repo
from core.storage import ObjectStore
from schemas import names
from schemas.tasks import RegisterInput, Video
from tests.helpers import EMBEDDED_SVD_RENDERING

pytestmark = pytest.mark.integration

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RENDERING = EMBEDDED_SVD_RENDERING


Sessions = async_sessionmaker[AsyncSession]


async def _new_job(sessions: Sessions, user: str) -> str:
    job_id = f"job-{uuid.uuid4().hex[:16]}"
    async with sessions.begin() as session:
        await repo.insert_job(session, job_id=job_id, user_id=user, mode="generate", variant="svd", topic="t",
                              request={}, graph={})  # fmt: skip
    return job_id


async def _register(sessions: Sessions, store: ObjectStore, inp: RegisterInput) -> dict[str, str] | None:
    activities = ControlActivities(sessions, store, OfflineScriptWriter())
    await ActivityEnvironment().run(activities.register_outputs, inp)
    async with sessions() as session:
        row = await repo.get_job(session, inp.user_id, inp.job_id)
    assert row is not None and row.finished_at is not None
    return row.rendering


def _golden_register_input(name: str) -> RegisterInput:
    """The `registerOutputs` input recorded in a golden history, decoded as the worker would decode it."""
    history = WorkflowHistory.from_json(name, json.loads((HISTORIES / f"{name}.json").read_text()))
    for event in history.events:
        scheduled = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and (
            scheduled.activity_type.name == names.REGISTER_OUTPUTS
        ):
            assert b'"rendering"' not in scheduled.input.payloads[0].data  # recorded before the field existed
            [inp] = pydantic_data_converter.payload_converter.from_payloads(scheduled.input.payloads, [RegisterInput])
            assert isinstance(inp, RegisterInput)
            return inp
    raise AssertionError(f"{name} has no {names.REGISTER_OUTPUTS}")


def test_a_video_without_rendering_still_validates() -> None:
    old = {"uri": "s3://artifacts/jobs/job-1/render/video.mp4", "duration": 2.0, "variant": "svd"}
    assert Video.model_validate(old).rendering == {}
    inp = RegisterInput.model_validate({"job_id": "job-1", "user_id": "u", "outputs": {}, "video": old})
    assert inp.video is not None and inp.video.rendering == {}


async def test_register_writes_what_ran_into_the_job_row(sessions: Sessions, object_store: ObjectStore) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    job_id = await _new_job(sessions, user)
    video = Video(
        uri=f"s3://artifacts/jobs/{job_id}/render/video.mp4", duration=3.0, variant="svd", rendering=RENDERING
    )
    inp = RegisterInput(job_id=job_id, user_id=user, outputs={"render": []}, video=video)
    assert await _register(sessions, object_store, inp) == RENDERING


async def test_a_register_input_from_an_old_history_registers_with_empty_rendering(
    sessions: Sessions, object_store: ObjectStore
) -> None:
    old = _golden_register_input("generate_v1")
    assert old.video is not None and old.video.rendering == {}
    user = f"user-{uuid.uuid4().hex[:8]}"
    job_id = await _new_job(sessions, user)
    # The recorded outputs are gone from this S3 server; what matters here is the summary.
    inp = old.model_copy(update={"job_id": job_id, "user_id": user, "outputs": {}})
    assert await _register(sessions, object_store, inp) == {}


async def test_a_failed_job_without_a_video_leaves_rendering_unset(
    sessions: Sessions, object_store: ObjectStore
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    job_id = await _new_job(sessions, user)
    inp = RegisterInput(job_id=job_id, user_id=user, outputs={}, partial=True, failed_stage="render", error="boom")
    assert await _register(sessions, object_store, inp) is None
