"""Job routes: submit, plan, read (status, record, listing, live stream), retry, resubmit, cancel, delete."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, WebSocket, status
from pydantic import Field

from api import erasure, live, reset, review, submit, views
from api.admission import IDEMPOTENCY_KEY_RULES
from api.batch_jobs import cancel_job as request_cancel
from api.batch_jobs import listed_states, read_job_status
from api.deps import FollowersDep, JobIdPath, PrincipalDep, ServicesDep, SettingsDep, UserDep, get_principal
from api.errors import ApiError, FieldError
from api.owned import OwnedJob
from api.reset import JobRetried
from core import repo
from core.temporal import web_ui_url
from schemas.api import (
    GenerateRequest,
    JobAccepted,
    JobRecord,
    JobsPublic,
    JobStatus,
    PlanResponse,
    ScriptReviewIn,
    ScriptReviewPublic,
    TrainRequest,
)
from schemas.capabilities import CapabilitiesManifest

# The WebSocket authenticates itself (cookie, close codes), so the `/api` routes get the
# caller check from their own router, included into this one at the end of the module.
router = APIRouter()
_api = APIRouter(prefix="/api", dependencies=[Depends(get_principal)])

AnyRequest = Annotated[GenerateRequest | TrainRequest, Field(discriminator="mode")]

IdempotencyKey = Annotated[
    str | None,
    Header(
        **IDEMPOTENCY_KEY_RULES,
        description="the same key (per user) returns the job it first created instead of starting another",
    ),
]


@_api.post("/generate", status_code=status.HTTP_202_ACCEPTED, tags=["jobs"])
async def generate(
    body: GenerateRequest, user: UserDep, services: ServicesDep, settings: SettingsDep, key: IdempotencyKey = None
) -> JobAccepted:
    """Start a generation job (`generate_v1`)."""
    return JobAccepted(job_id=await submit.submit(body, user, services, settings, key), status="queued")


@_api.post("/train", status_code=status.HTTP_202_ACCEPTED, tags=["jobs"])
async def train(
    body: TrainRequest, user: UserDep, services: ServicesDep, settings: SettingsDep, key: IdempotencyKey = None
) -> JobAccepted:
    """Start a training job (`train_and_generate_v1`, or `train_v1` for `train_only`); needs `consent: true`."""
    return JobAccepted(job_id=await submit.submit(body, user, services, settings, key), status="queued")


@_api.post("/plan", tags=["jobs"])
async def plan_only(body: Annotated[AnyRequest, Body()], user: UserDep, services: ServicesDep) -> PlanResponse:
    """Return the graph a submission would run, without running it."""
    return await submit.preview(body, user, services)


@_api.get("/capabilities", tags=["jobs"])
async def capabilities(services: ServicesDep) -> CapabilitiesManifest:
    """The live capabilities manifest: what every worker seen in the last two minutes can do."""
    return await services.capabilities.get()


@_api.get("/status/{job_id}", tags=["jobs"])
async def job_status(job: OwnedJob, followers: FollowersDep) -> JobStatus:
    """Live job state and per-node states, read from the Temporal history."""
    return await read_job_status(followers, job)


@_api.get("/jobs/{job_id}", tags=["jobs"])
async def job_record(job: OwnedJob, services: ServicesDep, settings: SettingsDep, followers: FollowersDep) -> JobRecord:
    """The enriched job record: variant, script summary, profile, artifacts with download URLs."""
    live_status = await read_job_status(followers, job)
    async with services.sessions() as session:
        artifacts = await repo.list_artifacts(session, job.id)
        profile = await repo.get_profile(session, job.user_id, job.profile_id) if job.profile_id else None
    public = await asyncio.to_thread(lambda: [views.artifact_public(services.store, a) for a in artifacts])
    ui_url = web_ui_url(settings.temporal, job.id, live_status.run_id)
    return views.job_record(job, live_status, public, profile, ui_url)


@_api.get("/jobs", tags=["jobs"])
async def list_jobs(
    user: UserDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobsPublic:
    """The caller's jobs, newest first; each one's state from one visibility query per page."""
    async with services.sessions() as session:
        try:
            rows, next_cursor = await repo.list_jobs(session, user, limit, cursor)
        except repo.InvalidCursorError as err:
            raise FieldError(("query", "cursor"), "not a cursor this API returned") from err
    states = await listed_states(services.temporal, rows)
    data = [views.job_summary(r, states.get(r.id, "queued")) for r in rows]
    return JobsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.websocket("/ws/jobs/{job_id}")
async def job_updates(websocket: WebSocket, job_id: str) -> None:
    """Stream the job's status JSON whenever it changes; close after the final state.

    Authenticated by the session cookie (or a bearer header from non-browser clients); a refusal
    is a close code and reason (`api/live.py`).
    """
    await live.serve(websocket, job_id)


@_api.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, tags=["jobs"])
async def cancel_job(job: OwnedJob, services: ServicesDep, followers: FollowersDep) -> JobAccepted:
    """Ask the job to stop: the running GPU activity learns it through its heartbeat."""
    live_status = await read_job_status(followers, job)
    if live_status.status not in ("queued", "running"):
        raise ApiError(409, f"job '{job.id}' is {live_status.status}; only queued or running jobs can be cancelled")
    await request_cancel(services.temporal, job)  # a batch's job not started yet: through its batch
    return JobAccepted(job_id=job.id, status=live_status.status)


@_api.get("/jobs/{job_id}/script", tags=["jobs"])
async def job_script(job: OwnedJob, services: ServicesDep) -> ScriptReviewPublic:
    """The job's script and where its review stands (`options.review`), with its estimated spoken length."""
    return await review.read_view(services.temporal, job)


@_api.post("/jobs/{job_id}/script", tags=["jobs"])
async def review_script(
    job: OwnedJob, body: ScriptReviewIn, services: ServicesDep, key: IdempotencyKey = None
) -> ScriptReviewPublic:
    """Edit, approve or reject the script the job waits with; `approve` releases the render.

    `edit` needs `narrative` (checked like a user script: it must fill the video); `reject` ends
    the job cancelled. 409 once the review is over; the same `Idempotency-Key` repeats the first answer.
    """
    return await review.act(services.temporal, job.id, body, key)


@_api.post("/jobs/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED, tags=["operations"])
async def retry_job(job_id: JobIdPath, caller: PrincipalDep, services: ServicesDep) -> JobRetried:
    """Reset a failed job to just before its first failed node; completed nodes are reused.

    The job's owner may retry it; an admin may retry any user's job (operators on call).
    """
    return await reset.retry(services, job_id, caller)


@_api.post("/jobs/{job_id}/resubmit", status_code=status.HTTP_202_ACCEPTED, tags=["operations"])
async def resubmit_job(job: OwnedJob, services: ServicesDep, settings: SettingsDep) -> JobAccepted:
    """Start a new job with the same request (profile, topic, options) as this one."""
    return JobAccepted(job_id=await submit.resubmit(job, services, settings), status="queued")


@_api.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["personal data"])
async def delete_job(job: OwnedJob, services: ServicesDep) -> None:
    """Delete a finished job: its video and every other output, its history and its rows."""
    await erasure.erase_job(services, job.user_id, job)


router.include_router(_api)
