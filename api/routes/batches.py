"""Batch routes: submit several generate jobs at once, read their aggregate status, cancel, delete."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, status

from api import batches
from api.admission import IDEMPOTENCY_KEY_RULES
from api.deps import ServicesDep, SettingsDep, UserDep, get_principal
from api.owned import OwnedBatch
from schemas.api import BatchAccepted, BatchCancelled, BatchesPublic, BatchPublic, BatchRequest

router = APIRouter(prefix="/api", dependencies=[Depends(get_principal)], tags=["batches"])

BatchIdempotencyKey = Annotated[
    str | None,
    Header(
        **IDEMPOTENCY_KEY_RULES,
        description="the same key (per user) with the same body returns the batch it first created",
    ),
]


@router.post("/batches", status_code=status.HTTP_202_ACCEPTED)
async def submit_batch(
    body: BatchRequest, user: UserDep, services: ServicesDep, settings: SettingsDep, key: BatchIdempotencyKey = None
) -> BatchAccepted:
    """Start several generate jobs, at most `APP_API__MAX_CONCURRENT_JOBS` of them running at once."""
    return await batches.submit_batch(body, user, services, settings, key)


@router.get("/batches")
async def list_batches(
    user: UserDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> BatchesPublic:
    """The caller's batches, newest first, each with its jobs' states."""
    return await batches.list_batches(services, user, limit, cursor)


@router.get("/batches/{batch_id}")
async def batch_status(batch: OwnedBatch, services: ServicesDep, settings: SettingsDep) -> BatchPublic:
    """The batch's aggregate status: how many jobs are in each state, and each job with its links."""
    return await batches.batch_public(services, settings, batch)


@router.post("/batches/{batch_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_batch(batch: OwnedBatch, services: ServicesDep) -> BatchCancelled:
    """Cancel the batch's jobs that have not finished; it starts no more."""
    return await batches.cancel_batch(services, batch)


@router.delete("/batches/{batch_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_batch(batch: OwnedBatch, user: UserDep, services: ServicesDep) -> None:
    """Delete a finished batch and every job of it: outputs, histories and rows."""
    await batches.erase_batch(services, user, batch)
