"""Deleting personal data: a job, a profile, an upload — the rows and every object they own.

Faces and voices are biometric data, so deletion is real: objects first (a failure leaves the
row, and the same DELETE can be repeated), then the Temporal history (it holds the topic, the
script and object URIs), then the rows. Nothing is deleted while a job still uses it (409).
"""

import asyncio
import logging

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode

from api.admission import open_job_ids
from api.deps import Services
from api.errors import ApiError
from core import repo
from core.db import Job, Profile
from core.storage import parse_s3_uri, s3_uri
from schemas import names

logger = logging.getLogger(__name__)


async def erase_job(services: Services, user: str, row: Job) -> None:
    """Delete the user's finished job: its outputs, its history and its rows; 409 while it is open."""
    open_ids = await open_job_ids(services, user)
    if row.id in open_ids:
        raise ApiError(409, f"job '{row.id}' is still queued or running; cancel it first")
    if row.batch_id in open_ids:  # its batch may not have started it yet
        raise ApiError(409, f"job '{row.id}' belongs to batch '{row.batch_id}', which is still starting its jobs")
    await erase_closed_job(services, row)


async def erase_closed_job(services: Services, row: Job) -> None:
    """Delete a job known to be closed: its outputs, its history, its rows."""
    await asyncio.to_thread(services.store.delete_prefix, names.ARTIFACTS_BUCKET, f"jobs/{row.id}/")
    await delete_history(services, row.id)
    async with services.sessions.begin() as session:
        await repo.delete_job(session, row.id)
    logger.info("job %s of %s deleted", row.id, row.user_id)


async def delete_history(services: Services, workflow_id: str) -> None:
    """Delete a closed workflow's history (it holds topics, scripts and object URIs); gone already is fine."""
    try:
        await services.temporal.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=services.temporal.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id)
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # already gone: nothing to erase there
            raise


async def erase_profile(services: Services, user: str, profile: Profile) -> None:
    """Delete the user's profile: weights, voice, portrait, training uploads and checkpoints; 409 while in use."""
    async with services.sessions() as session:
        jobs = await repo.jobs_of_profile(session, user, profile.id)
    open_ids = await open_job_ids(services, user)
    busy = {j.id for j in jobs if j.id in open_ids or j.batch_id in open_ids}  # a batch's job may not have started
    if busy:
        raise ApiError(409, f"profile '{profile.id}' is in use by {', '.join(sorted(busy))}; wait or cancel first")
    uploads = {uri for uri in [*profile.images, *profile.audio, profile.portrait_uri] if uri and _is_upload(uri, user)}
    prefixes = [f"profiles/{profile.id}/", *_training_prefixes(jobs)]
    await asyncio.to_thread(_delete_objects, services, uploads, prefixes)
    async with services.sessions.begin() as session:
        await repo.delete_profile(session, profile.id)
    logger.info("profile %s of %s deleted with %d uploads", profile.id, user, len(uploads))


async def erase_upload(services: Services, user: str, name: str) -> None:
    """Delete the user's upload `s3://uploads/<user>/<name>`; 404 when there is none."""
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
