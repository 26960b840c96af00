"""Admission of submissions: `Idempotency-Key` replays and the per-user cap on open jobs (429).

Both work without holding a lock across the Temporal call: the job row is inserted first (a
unique `(user, idempotency_key)` makes a concurrent duplicate fail its insert and replay the
winner), then the user's open jobs are counted *including* the new row; over the cap, the row
is deleted and the caller gets 429. Two racing submissions may then both be refused, never
both admitted beyond the cap.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from temporalio.client import Client

from api.deps import Services
from api.errors import ApiError, FieldError
from core import repo
from core.db import Job
from schemas import names
from schemas.tasks import JobRequest

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

# The header's rules, shared by every submission route (`Header(**IDEMPOTENCY_KEY_RULES, description=…)`).
IDEMPOTENCY_KEY_RULES: Final[dict[str, Any]] = {
    "alias": IDEMPOTENCY_HEADER,
    "min_length": 1,
    "max_length": 200,
    "pattern": r"^[\x21-\x7e]+$",
}


# A job waiting for its person's review holds no worker: it does not count towards the cap.
_WAITING: Final = f"{names.SA_REVIEW_STATE} = 'waiting'"
_NOT_WAITING: Final = f"({names.SA_REVIEW_STATE} IS NULL OR {names.SA_REVIEW_STATE} != 'waiting')"
# Visibility is eventually consistent: a job started this recently may not be listed yet, so
# recent rows count as open unless visibility already shows them closed.
_RECENT: Final = timedelta(minutes=2)


def same_request(row: Job, request: JobRequest) -> bool:
    """Whether a replayed `Idempotency-Key` carries the request the job was created with."""
    return row.request == request.model_dump(mode="json")


def replay(row: Job, request: JobRequest) -> str:
    """The job id to answer a repeated `Idempotency-Key` with; 422 when the body differs."""
    if not same_request(row, request):
        raise FieldError(
            ("header", IDEMPOTENCY_HEADER),
            f"was already used for job '{row.id}' with a different request; use a new key for a new job",
        )
    return row.id


async def open_job_ids(services: Services, user_id: str) -> set[str]:
    """The user's queued or running jobs by id: running in Temporal, or too recent to be listed yet.

    Deleting needs the ids (an open job's data stays); admission only counts (`count_open_jobs`).
    """
    client = services.temporal
    # User ids match core.auth.USER_ID_PATTERN ([a-z0-9_.-]), so they are safe inside the quotes.
    running = await _workflow_ids(client, f"UserId = '{user_id}' AND ExecutionStatus = 'Running' AND {_NOT_WAITING}")
    async with services.sessions() as session:
        recent = await repo.recent_job_ids(session, user_id, _RECENT)
        # A batch is one open job until its last job started: its workflow carries the UserId too.
        recent += await repo.recent_batch_ids(session, user_id, _RECENT)
    if not recent:
        return running
    ids = ", ".join(f"'{job_id}'" for job_id in recent)  # ids are ours (job-<hex>), never user input
    closed = await _workflow_ids(client, f"WorkflowId IN ({ids}) AND (ExecutionStatus != 'Running' OR {_WAITING})")
    return running | (set(recent) - closed)


async def check_reviews(services: Services, user_id: str, most: int, retry_after: int, *, adding: int = 1) -> None:
    """429 when `adding` more jobs would make more than `most` with a review still to come or waiting for them."""
    query = (
        f"UserId = '{user_id}' AND ExecutionStatus = 'Running' AND {names.SA_REVIEW_STATE} IN ('pending', 'waiting')"
    )
    count = await services.temporal.count_workflows(query)
    if count.count + adding > most:
        raise ApiError(
            429,
            f"you already have {most} jobs whose script waits for your review; approve or reject some first",
            headers={"Retry-After": str(retry_after)},
        )


async def count_open_jobs(services: Services, user_id: str) -> int:
    """How many jobs the user has open, from two visibility counts and one SQL count, run at once (no listing).

    Jobs (and batches) started before the cutoff, and every job a batch started, are counted by
    Temporal while they run; newer single jobs and batches, which visibility may not list yet, by
    their rows (a new job's row is inserted before this runs, so it counts itself). The second
    count takes back out the recent ones that visibility already shows closed or waiting for review.
    """
    cutoff = datetime.now(UTC) - _RECENT
    before = cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    user = f"UserId = '{user_id}'"
    # A batch's jobs have no row of their own to count: Temporal counts them once their batch started them.
    batch_job = f"({names.SA_BATCH_ID} IS NOT NULL AND WorkflowType = '{names.PIPELINE_WORKFLOW}')"
    counted = f"{user} AND ExecutionStatus = 'Running' AND (StartTime < '{before}' OR {batch_job}) AND {_NOT_WAITING}"
    # Recent rows whose run already closed or waits for its review are not open: taken back out.
    own_row = (
        f"((WorkflowType = '{names.PIPELINE_WORKFLOW}' AND {names.SA_BATCH_ID} IS NULL) "
        f"OR WorkflowType = '{names.BATCH_WORKFLOW}')"
    )
    recent_not_open = (
        f"{user} AND StartTime >= '{before}' AND {own_row} AND (ExecutionStatus != 'Running' OR {_WAITING})"
    )

    async def recent_rows() -> int:
        async with services.sessions() as session:
            return await repo.count_recent_submissions(session, user_id, cutoff)

    older, not_open, recent = await asyncio.gather(
        services.temporal.count_workflows(counted), services.temporal.count_workflows(recent_not_open), recent_rows()
    )
    return older.count + recent - not_open.count


async def check_capacity(services: Services, user_id: str, cap: int, retry_after: int) -> None:
    """429 with `Retry-After` when the user has more than `cap` open jobs (the new one included)."""
    if await count_open_jobs(services, user_id) > cap:
        raise ApiError(
            429,
            f"you already have {cap} jobs queued or running; wait for one to finish (or cancel one) and try again",
            headers={"Retry-After": str(retry_after)},
        )


async def _workflow_ids(client: Client, query: str) -> set[str]:
    return {wf.id async for wf in client.list_workflows(query=query)}
