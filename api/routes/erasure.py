"""Deleting personal data: a job, a profile, an upload — the rows and every object they own.

Faces and voices are biometric data, so deletion is real: objects first (a failure leaves the
row, and the same DELETE can be repeated), then the Temporal history (it holds the topic, the
script and object URIs), then the rows. Nothing is deleted while a job still uses it (409).
"""

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode

from api.admission import open_job_ids
from api.deps import JobIdPath, ProfileIdPath, Services, ServicesDep, UserDep, get_principal
from api.errors import ApiError
from core import repo
from core.db import Job
from core.storage import parse_s3_uri, s3_uri
from schemas import names
from schemas.api import UploadedObject, UploadsListed

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["personal data"], dependencies=[Depends(get_principal)])

UPLOAD_NAME = r"^[0-9a-f]{32}\.[a-z0-9]{2,5}$"  # the names `POST /api/uploads` generates


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_job(job_id: JobIdPath, user: UserDep, services: ServicesDep) -> None:
    """Delete a finished job: its video and every other output, its history and its rows."""
    async with services.sessions() as session:
        row = await repo.get_job(session, user, job_id)
    if row is None:
        raise ApiError(404, f"job '{job_id}' not found")
    if job_id in await open_job_ids(services, user):
        raise ApiError(409, f"job '{job_id}' is still queued or running; cancel it first")
    await _erase_job(services, row, prefix=f"jobs/{job_id}/")


@router.delete("/profiles/{profile_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_profile(profile_id: ProfileIdPath, user: UserDep, services: ServicesDep) -> None:
    """Delete a profile: LoRA weights, voice, portrait, the training uploads and checkpoints.

    Videos already rendered with it stay (they are the user's jobs; delete those separately).
    """
    async with services.sessions() as session:
        profile = await repo.get_profile(session, user, profile_id)
        jobs = await repo.jobs_of_profile(session, user, profile_id) if profile else []
    if profile is None:
        raise ApiError(404, f"profile '{profile_id}' not found")
    busy = {j.id for j in jobs} & await open_job_ids(services, user)
    if busy:
        raise ApiError(409, f"profile '{profile_id}' is in use by {', '.join(sorted(busy))}; wait or cancel first")
    uploads = {uri for uri in [*profile.images, *profile.audio, profile.portrait_uri] if uri and _is_upload(uri, user)}
    prefixes = [f"profiles/{profile_id}/", *_training_prefixes(jobs)]
    await asyncio.to_thread(_delete_objects, services, uploads, prefixes)
    async with services.sessions.begin() as session:
        await repo.delete_profile(session, profile_id)
    logger.info("profile %s of %s deleted with %d uploads", profile_id, user, len(uploads))


@router.get("/uploads")
async def list_uploads(user: UserDep, services: ServicesDep) -> UploadsListed:
    """The caller's stored uploads (unused ones expire after the retention period)."""
    objects = await asyncio.to_thread(services.store.list_objects, names.UPLOADS_BUCKET, f"{user}/")
    data = [UploadedObject(uri=s3_uri(names.UPLOADS_BUCKET, o.key), size_bytes=o.size, uploaded_at=o.last_modified)
            for o in objects]  # fmt: skip
    return UploadsListed(data=data, count=len(data))


@router.delete("/uploads/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_upload(
    name: Annotated[str, Path(pattern=UPLOAD_NAME, examples=["3f0c9a7d5b1e4c2a8f6d0b9e7c5a3e1f.png"])],
    user: UserDep,
    services: ServicesDep,
) -> None:
    """Delete one of the caller's uploads (`name` is the last part of its `s3://uploads/<user>/…` URI)."""
    uri = s3_uri(names.UPLOADS_BUCKET, f"{user}/{name}")
    if not await asyncio.to_thread(services.store.exists, uri):
        raise ApiError(404, f"upload '{name}' not found")
    await asyncio.to_thread(services.store.delete, uri)


def _is_upload(uri: str, user: str) -> bool:
    bucket, key = parse_s3_uri(uri)
    return bucket == names.UPLOADS_BUCKET and key.startswith(f"{user}/")


def _training_prefixes(jobs: list[Job]) -> list[str]:
    """Where the profile's training jobs kept checkpoints: `jobs/<job>/<training node>/`."""
    training = {names.TRAIN_LORA, names.TRAIN_VOICE}
    return [
        f"jobs/{job.id}/{node['id']}/"
        for job in jobs
        for node in job.graph.get("nodes", [])
        if node.get("task") in training
    ]


def _delete_objects(services: Services, uploads: set[str], artifact_prefixes: list[str]) -> None:
    for uri in uploads:
        services.store.delete(uri)
    for prefix in artifact_prefixes:
        services.store.delete_prefix(names.ARTIFACTS_BUCKET, prefix)


async def _erase_job(services: Services, row: Job, prefix: str) -> None:
    await asyncio.to_thread(services.store.delete_prefix, names.ARTIFACTS_BUCKET, prefix)
    try:
        await services.temporal.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=services.temporal.namespace, workflow_execution=WorkflowExecution(workflow_id=row.id)
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # already gone: nothing to erase there
            raise
    async with services.sessions.begin() as session:
        await repo.delete_job(session, row.id)
    logger.info("job %s of %s deleted", row.id, row.user_id)
