"""Admission of submissions: `Idempotency-Key` replays and the per-user cap on open jobs (429).

Both work without holding a lock across the Temporal call: the job row is inserted first (a
unique `(user, idempotency_key)` makes a concurrent duplicate fail its insert and replay the
winner), then the user's open jobs are counted *including* the new row; over the cap, the row
is deleted and the caller gets 429. Two racing submissions may then both be refused, never
both admitted beyond the cap.
"""

from datetime import timedelta
from typing import Final

from temporalio.client import Client

from api.deps import Services
from api.errors import ApiError, FieldError
from core import repo
from core.db import Job
from schemas import names
from schemas.tasks import JobRequest

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
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


async def open_job_ids(services: Services, user_id: str, enough: int | None = None) -> set[str]:
    """The user's queued or running jobs: running in Temporal, or too recent to be listed yet.

    With `enough`, an upper bound may be returned when it is no larger than `enough` (it
    saves a visibility query on the common path of a user well under the cap).
    """
    client = services.temporal
    # User ids match core.auth.USER_ID_PATTERN ([a-z0-9_.-]), so they are safe inside the quotes.
    running = await _workflow_ids(client, f"UserId = '{user_id}' AND ExecutionStatus = 'Running' AND {_NOT_WAITING}")
    async with services.sessions() as session:
        recent = await repo.recent_job_ids(session, user_id, _RECENT)
        # A batch is one open job until its last job started: its workflow carries the UserId too.
        recent += await repo.recent_batch_ids(session, user_id, _RECENT)
    if enough is not None and len(running | set(recent)) <= enough:
        return running | set(recent)
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


async def check_capacity(services: Services, user_id: str, cap: int, retry_after: int) -> None:
    """429 with `Retry-After` when the user has more than `cap` open jobs (the new one included)."""
    if len(await open_job_ids(services, user_id, enough=cap)) > cap:
        raise ApiError(
            429,
            f"you already have {cap} jobs queued or running; wait for one to finish (or cancel one) and try again",
            headers={"Retry-After": str(retry_after)},
        )


async def _workflow_ids(client: Client, query: str) -> set[str]:
    return {wf.id async for wf in client.list_workflows(query=query)}
