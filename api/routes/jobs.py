"""Job routes: submit, plan, status (from Temporal), records and listings (from Postgres)."""

import asyncio
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, status
from pydantic import Field
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHistory

from api.admission import IDEMPOTENCY_HEADER
from api.deps import JobIdPath, ServicesDep, SettingsDep, UserDep, get_principal
from api.errors import ApiError, FieldError
from api.status import fold_status, is_open
from api.submit import check_caller, check_references, plan_submission, start_job, to_job_request
from core import repo
from core.capabilities import live_capabilities
from core.db import Artifact, Job, Profile
from core.storage import ObjectStore
from core.temporal import web_ui_url
from schemas.api import (
    ArtifactPublic,
    GenerateRequest,
    JobAccepted,
    JobRecord,
    JobsPublic,
    JobState,
    JobStatus,
    JobSummary,
    PlanResponse,
    ProfilePublic,
    TrainRequest,
)
from schemas.capabilities import CapabilitiesManifest

router = APIRouter(prefix="/api", tags=["jobs"], dependencies=[Depends(get_principal)])

AnyRequest = Annotated[GenerateRequest | TrainRequest, Field(discriminator="mode")]

_LIST_STATES: dict[WorkflowExecutionStatus, JobState] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="the same key (per user) returns the job it first created instead of starting another",
    ),
]


async def _submit(
    body: GenerateRequest | TrainRequest, user: str, services: ServicesDep, settings: SettingsDep, key: str | None
) -> JobAccepted:
    check_caller(body, user)
    request = to_job_request(body)
    await check_references(request, user, services)
    request, graph = await plan_submission(body, request, services)
    job_id = await start_job(request, graph, user, services, settings, idempotency_key=key)
    return JobAccepted(job_id=job_id, status="queued")


@router.post("/generate", status_code=status.HTTP_202_ACCEPTED)
async def generate(
    body: GenerateRequest, user: UserDep, services: ServicesDep, settings: SettingsDep, key: IdempotencyKey = None
) -> JobAccepted:
    """Start a generation job (`generate_v1`)."""
    return await _submit(body, user, services, settings, key)


@router.post("/train", status_code=status.HTTP_202_ACCEPTED)
async def train(
    body: TrainRequest, user: UserDep, services: ServicesDep, settings: SettingsDep, key: IdempotencyKey = None
) -> JobAccepted:
    """Start a training job (`train_and_generate_v1`, or `train_v1` for `train_only`); needs `consent: true`."""
    return await _submit(body, user, services, settings, key)


@router.post("/plan")
async def plan_only(body: Annotated[AnyRequest, Body()], user: UserDep, services: ServicesDep) -> PlanResponse:
    """Return the graph a submission would run, without running it."""
    check_caller(body, user)
    request = to_job_request(body)
    await check_references(request, user, services)
    resolved, graph = await plan_submission(body, request, services)
    renders = resolved.mode != "train_only"
    return PlanResponse(
        graph=graph,
        voice=resolved.voice if renders else None,
        duration_seconds=resolved.options.duration_seconds if renders else None,
    )


@router.get("/capabilities")
async def capabilities(services: ServicesDep) -> CapabilitiesManifest:
    """The live capabilities manifest: what every worker seen in the last two minutes can do."""
    return await live_capabilities(services.sessions)


async def _own_job(services: ServicesDep, user: str, job_id: str) -> Job:
    async with services.sessions() as session:
        row = await repo.get_job(session, user, job_id)
    if row is None:
        raise ApiError(404, f"job '{job_id}' not found")
    return row


async def _status(services: ServicesDep, job_id: str, user: str | None = None) -> JobStatus:
    """Fold the job's status; with `user`, also check it is theirs (404 otherwise).

    The ownership check, the history and `describe()` are independent reads, so they run
    concurrently (one round trip instead of three); `describe()` is ignored once the run closed.
    """
    handle = services.temporal.get_workflow_handle(job_id)
    reads: list[Awaitable[object]] = [handle.fetch_history(), handle.describe()]
    if user is not None:
        reads.insert(0, _own_job(services, user, job_id))
    results = await asyncio.gather(*reads, return_exceptions=True)
    for result in results:  # the ownership check first: another user's job is a plain 404
        if isinstance(result, BaseException):
            raise result
    history, description = results[-2], results[-1]
    assert isinstance(history, WorkflowHistory) and isinstance(description, WorkflowExecutionDescription)
    return await fold_status(history, description if is_open(history) else None, services.temporal.data_converter)


@router.get("/status/{job_id}")
async def job_status(job_id: JobIdPath, user: UserDep, services: ServicesDep) -> JobStatus:
    """Live job state and per-node states, read from the Temporal history."""
    return await _status(services, job_id, user)


def _artifact(store: ObjectStore, row: Artifact) -> ArtifactPublic:
    return ArtifactPublic(id=row.id, kind=row.kind, node_id=row.node_id, uri=row.uri, url=store.presigned_url(row.uri),
                          content_type=row.content_type, size_bytes=row.size_bytes, partial=row.partial)  # fmt: skip


def profile_public(row: Profile) -> ProfilePublic:
    """The API view of a profile row."""
    return ProfilePublic(id=row.id, name=row.name, status=row.status, lora_id=row.lora_id, voice_id=row.voice_id,
                         portrait_uri=row.portrait_uri, created_at=row.created_at)  # fmt: skip


@router.get("/jobs/{job_id}")
async def job_record(job_id: JobIdPath, user: UserDep, services: ServicesDep, settings: SettingsDep) -> JobRecord:
    """The enriched job record: variant, script summary, profile, artifacts with download URLs."""
    row = await _own_job(services, user, job_id)
    live = await _status(services, job_id)
    async with services.sessions() as session:
        artifacts = await repo.list_artifacts(session, job_id)
        profile = await repo.get_profile(session, user, row.profile_id) if row.profile_id else None
    public = await asyncio.to_thread(lambda: [_artifact(services.store, a) for a in artifacts])
    video = next((a for a in public if a.kind == "video" and not a.partial), None)
    narrative = (row.script or {}).get("narrative")
    return JobRecord(
        job_id=row.id, user_id=row.user_id, mode=row.mode, variant=row.variant, topic=row.topic,
        status=live.status, created_at=row.created_at, graph=row.graph,
        script_summary=(narrative[:280] + "…" if narrative and len(narrative) > 280 else narrative),
        script_source=row.script_source, profile=profile_public(profile) if profile else None,
        video=video, artifacts=public, error=live.error, run_id=live.run_id,
        temporal_ui_url=web_ui_url(settings.temporal, job_id, live.run_id),
        rendering=row.rendering or {},  # NULL: registered before the column existed, or no render yet
    )  # fmt: skip


@router.get("/jobs")
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
    states: dict[str, JobState] = {}
    if rows:
        ids = ", ".join(f"'{r.id}'" for r in rows)  # ids are ours (job-<hex>), never user input
        async for wf in services.temporal.list_workflows(query=f"WorkflowId IN ({ids})"):
            if wf.status is not None:
                states.setdefault(wf.id, _LIST_STATES.get(wf.status, "running"))
    data = [JobSummary(job_id=r.id, mode=r.mode, variant=r.variant, topic=r.topic, status=states.get(r.id, "queued"),
                       created_at=r.created_at) for r in rows]  # fmt: skip
    return JobsPublic(data=data, count=len(data), next_cursor=next_cursor)


@router.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_job(job_id: JobIdPath, user: UserDep, services: ServicesDep) -> JobAccepted:
    """Ask the job to stop: the running GPU activity learns it through its heartbeat."""
    await _own_job(services, user, job_id)
    live = await _status(services, job_id)
    if live.status not in ("queued", "running"):
        raise ApiError(409, f"job '{job_id}' is {live.status}; only queued or running jobs can be cancelled")
    await services.temporal.get_workflow_handle(job_id).cancel()
    return JobAccepted(job_id=job_id, status=live.status)
