"""The caller's own rows by path id: a job, a profile or a batch, else a 404 that does not say whose it is."""

from typing import Annotated

from fastapi import Depends, Path

from api.deps import ID_PATTERN, JobIdPath, ProfileIdPath, Services, ServicesDep, UserDep
from api.errors import ApiError
from core import repo
from core.db import Batch, Job, Profile

BatchIdPath = Annotated[str, Path(pattern=ID_PATTERN, examples=["batch-3f0c9a7d5b1e4c2a"])]


async def find_own_job(services: Services, user_id: str, job_id: str) -> Job | None:
    """The user's job, or None when it does not exist or belongs to another user."""
    async with services.sessions() as session:
        return await repo.get_job(session, user_id, job_id)


async def owned_job(job_id: JobIdPath, user: UserDep, services: ServicesDep) -> Job:
    """The caller's job named by the `job_id` path parameter, else 404."""
    row = await find_own_job(services, user, job_id)
    if row is None:
        raise ApiError(404, f"job '{job_id}' not found")
    return row


async def owned_profile(profile_id: ProfileIdPath, user: UserDep, services: ServicesDep) -> Profile:
    """The caller's profile named by the `profile_id` path parameter, else 404."""
    async with services.sessions() as session:
        row = await repo.get_profile(session, user, profile_id)
    if row is None:
        raise ApiError(404, f"profile '{profile_id}' not found")
    return row


async def owned_batch(batch_id: BatchIdPath, user: UserDep, services: ServicesDep) -> Batch:
    """The caller's batch named by the `batch_id` path parameter, else 404 (also for another user's)."""
    async with services.sessions() as session:
        row = await repo.get_batch(session, user, batch_id)
    if row is None:
        raise ApiError(404, f"batch '{batch_id}' not found")
    return row


OwnedJob = Annotated[Job, Depends(owned_job)]
OwnedProfile = Annotated[Profile, Depends(owned_profile)]
OwnedBatch = Annotated[Batch, Depends(owned_batch)]
