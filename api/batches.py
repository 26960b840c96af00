"""Batches: several generate jobs in one request, started by one `BatchWorkflow` (issue 14).

Each job is checked and planned exactly as `POST /api/generate` would (`api.submit`); a field
error names the field of the batch body it came from. The batch row and every job row are
written in one transaction, then the user's open jobs are counted (the batch is one of them
until its last job started) and the workflow starts; a refusal at any step leaves no rows.
"""

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api import batch_jobs, erasure, submit
from api.admission import IDEMPOTENCY_HEADER, open_job_ids
from api.deps import Services
from api.errors import ApiError, FieldError
from core import repo
from core.db import Batch, Job
from core.settings import Settings
from core.temporal import web_ui_url
from schemas import names
from schemas.api import (
    BatchAccepted,
    BatchCancelled,
    BatchesPublic,
    BatchJob,
    BatchPublic,
    BatchRequest,
    BatchSummary,
    GenerateRequest,
    JobState,
)
from schemas.plan import GraphSpec
from schemas.tasks import BatchInput, BatchItem, JobRequest, PipelineInput
from workflows.planner import Loc, PlanningError

logger = logging.getLogger(__name__)

JOB_STATES: Final[tuple[JobState, ...]] = ("queued", "running", "completed", "failed", "cancelled")
_PRODUCT_FIELDS: Final = {
    "topics": "topics",
    "variants": "variants",
    "aspect_ratios": "aspectRatios",
    "common": "common",
}


@dataclass(frozen=True)
class _Item:
    """One job of the batch as a generate body, and where its fields sit in the batch body."""

    body: GenerateRequest
    where: Callable[[Loc], Loc]


@dataclass(frozen=True)
class _Planned:
    request: JobRequest
    graph: GraphSpec
    preset: str | None


# --- submitting ----------------------------------------------------------------------------------


def expand(body: BatchRequest, max_items: int) -> list[_Item]:
    """The batch's jobs as generate bodies: its `items`, or `topics` × `variants` × `aspectRatios` with `common`.

    Raises:
        FieldError: both forms or neither, or more than `max_items` jobs.
    """
    if body.items is not None:
        for name, alias in _PRODUCT_FIELDS.items():
            if name in body.model_fields_set:
                raise FieldError(("body", alias), "give either `items` or `topics` (with its options), not both")
        if len(body.items) > max_items:
            raise FieldError(("body", "items"), f"{len(body.items)} jobs; a batch has at most {max_items}")
        return [_Item(item, functools.partial(_in_items, i)) for i, item in enumerate(body.items)]
    if body.topics is None:
        raise FieldError(("body", "items"), "give `items` (generate bodies) or `topics`")
    # None: the body leaves the variant (or the aspect ratio) to `common` and its preset.
    variants: list[str | None] = [*body.variants] if body.variants else [None]
    ratios: list[str | None] = [*body.aspect_ratios] if body.aspect_ratios else [None]
    count = len(body.topics) * len(variants) * len(ratios)
    if count > max_items:
        raise FieldError(
            ("body", "topics"),
            f"{len(body.topics)} topics × {len(variants)} variants × {len(ratios)} aspect ratios = {count} jobs; "
            f"a batch has at most {max_items}",
        )
    common = body.common.model_dump(exclude_unset=True, by_alias=False) if body.common else {}
    common.pop("topic", None)
    items = []
    for (t, topic), (v, variant), (a, ratio) in product(enumerate(body.topics), enumerate(variants), enumerate(ratios)):
        where = functools.partial(_in_product, (t, v, a), variant is not None, ratio is not None)
        items.append(_Item(_generate_body(common, topic, variant, ratio, where), where))
    return items


def _generate_body(
    common: dict[str, Any], topic: str, variant: str | None, ratio: str | None, where: Callable[[Loc], Loc]
) -> GenerateRequest:
    data = {**common, "topic": topic}
    if variant is not None:
        data["variant"] = variant
    if ratio is not None:
        data["options"] = {**common.get("options", {}), "aspect_ratio": ratio}
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as err:  # every part was validated already; kept so a future field cannot 500
        first = err.errors()[0]
        raise FieldError(where(("body", *first["loc"])), first["msg"]) from err


def _in_items(index: int, loc: Loc) -> Loc:
    return ("body", "items", index, *loc[1:]) if loc[:1] == ("body",) else loc


def _in_product(indexes: tuple[int, int, int], variant_given: bool, ratio_given: bool, loc: Loc) -> Loc:
    """A generate body's field as the product form names it: a topic, a variant, an aspect ratio, or `common`."""
    if loc[:1] != ("body",):
        return loc
    t, v, a = indexes
    rest = loc[1:]
    if rest[:1] == ("topic",):
        return ("body", "topics", t, *rest[1:])
    if rest == ("variant",) and variant_given:
        return ("body", "variants", v)
    if rest in {("options", "aspectRatio"), ("options", "aspect_ratio")} and ratio_given:
        return ("body", "aspectRatios", a)
    return ("body", "common", *rest)


async def _plan(item: _Item, user_id: str, services: Services, settings: Settings) -> _Planned:
    """Check and plan one job as `POST /api/generate` does; errors name the batch body's field."""
    try:
        submit.check_caller(item.body, user_id)
        body = await submit.with_preset(item.body, user_id, services)
        request = submit.to_job_request(body)
        profile = await submit.check_references(request, user_id, services)
        request, graph = await submit.plan_submission(body, request, profile, services)
        await submit.check_callback(request, settings)
    except FieldError as err:
        raise FieldError(item.where(err.loc), err.message, err.status_code) from err
    except PlanningError as err:
        raise type(err)(item.where(err.loc), err.message, err.kind) from err
    return _Planned(request, graph, body.preset)


async def submit_batch(
    body: BatchRequest, user_id: str, services: Services, settings: Settings, key: str | None
) -> BatchAccepted:
    """Check and plan every job, record them with the batch, admit it, start `BatchWorkflow`.

    Returns the new batch, or the earlier one when `key` repeats with the same body.
    """
    items = expand(body, settings.api.max_batch_items)
    request = body.model_dump(mode="json", exclude_unset=True)
    if key is not None and (earlier := await _by_key(services, user_id, key)) is not None:
        return _replay(earlier, request)
    planned = [await _plan(item, user_id, services, settings) for item in items]
    batch_id = f"batch-{uuid.uuid4().hex[:16]}"
    jobs = [submit.pipeline_input(submit.new_job_id(), user_id, p.request, p.graph, settings) for p in planned]
    try:
        async with services.sessions.begin() as session:
            await repo.insert_batch(session, batch_id=batch_id, user_id=user_id, request=request,
                                    job_ids=[job.job_id for job in jobs], idempotency_key=key)  # fmt: skip
            for job, plan in zip(jobs, planned, strict=True):
                await submit.insert_job_row(
                    session, job.job_id, user_id, job.request, job.graph, preset=plan.preset, batch_id=batch_id
                )
    except IntegrityError:
        if key is None or (earlier := await _by_key(services, user_id, key)) is None:
            raise
        return _replay(earlier, request)  # a concurrent submission with the same key won
    try:
        await submit.admit(services, settings, user_id, reviews=sum(job.request.options.review for job in jobs))
        await _start_workflow(services, settings, batch_id, user_id, jobs)
    except BaseException:
        # The batch never started: drop its rows so no job exists that nothing will start.
        async with services.sessions.begin() as session:
            await repo.delete_batch(session, batch_id)
        raise
    logger.info("batch %s of %s started with %d jobs", batch_id, user_id, len(jobs))
    return BatchAccepted(batch_id=batch_id, job_ids=[job.job_id for job in jobs])


async def _by_key(services: Services, user_id: str, key: str) -> Batch | None:
    async with services.sessions() as session:
        return await repo.get_batch_by_idempotency_key(session, user_id, key)


def _replay(earlier: Batch, request: dict[str, Any]) -> BatchAccepted:
    """The earlier answer for a repeated `Idempotency-Key`; 422 on the header when the body differs."""
    if earlier.request != request:
        raise FieldError(
            ("header", IDEMPOTENCY_HEADER),
            f"was already used for batch '{earlier.id}' with a different request; use a new key for a new batch",
        )
    return BatchAccepted(batch_id=earlier.id, job_ids=earlier.job_ids)


async def _start_workflow(
    services: Services, settings: Settings, batch_id: str, user_id: str, jobs: list[PipelineInput]
) -> None:
    items = [BatchItem(job=job, search_attributes=submit.search_attributes(job), summary=submit.summary(job)) for job in jobs]  # fmt: skip
    batch = BatchInput(batch_id=batch_id, user_id=user_id, items=items, max_running=settings.api.max_concurrent_jobs)
    attrs = [
        SearchAttributePair(SearchAttributeKey.for_keyword(names.SA_USER_ID), user_id),
        SearchAttributePair(SearchAttributeKey.for_keyword(names.SA_BATCH_ID), batch_id),
    ]
    await services.temporal.start_workflow(
        names.BATCH_WORKFLOW,
        batch,
        id=batch_id,
        task_queue=settings.temporal.cpu_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(attrs),
        static_summary=f"batch of {len(jobs)} jobs",
    )


# --- reading -------------------------------------------------------------------------------------


def overall_state(states: list[JobState]) -> JobState:
    """A batch's state: queued until a job started, running while any is open, then how they ended."""
    kinds = set(states)
    if "running" in kinds or ("queued" in kinds and len(kinds) > 1):
        return "running"
    if "queued" in kinds:
        return "queued"
    for ended in ("failed", "cancelled"):
        if ended in kinds:
            return ended
    return "completed"


def _summary(batch: Batch, states: dict[str, JobState]) -> BatchSummary:
    ordered = [states[job_id] for job_id in batch.job_ids if job_id in states]
    counts = {state: ordered.count(state) for state in JOB_STATES}
    return BatchSummary(batch_id=batch.id, created_at=batch.created_at, status=overall_state(ordered), counts=counts,
                        job_ids=[job_id for job_id in batch.job_ids if job_id in states])  # fmt: skip


async def _states(services: Services, rows: list[Job]) -> dict[str, JobState]:
    listed = await batch_jobs.listed_states(services.temporal, rows)
    return {row.id: listed.get(row.id, "queued") for row in rows}


async def _rows(services: Services, batch: Batch) -> list[Job]:
    """The batch's job rows in the order of its request (jobs deleted on their own left out)."""
    async with services.sessions() as session:
        rows = (await repo.jobs_of_batches(session, [batch.id]))[batch.id]
    order = {job_id: i for i, job_id in enumerate(batch.job_ids)}
    return sorted(rows, key=lambda row: order.get(row.id, len(order)))


async def batch_public(services: Services, settings: Settings, batch: Batch) -> BatchPublic:
    """The batch's aggregate status and each of its jobs (deleted jobs left out)."""
    rows = await _rows(services, batch)
    states = await _states(services, rows)
    jobs = [_job(row, states[row.id]) for row in rows]
    return BatchPublic(**dict(_summary(batch, states)), jobs=jobs,
                       temporal_ui_url=web_ui_url(settings.temporal, batch.id))  # fmt: skip


def _job(row: Job, state: JobState) -> BatchJob:
    options = row.request.get("options") or {}
    return BatchJob(job_id=row.id, topic=row.topic, variant=row.variant,
                    aspect_ratio=str(options.get("aspect_ratio", "16:9")), status=state,
                    status_url=f"/api/status/{row.id}", record_url=f"/api/jobs/{row.id}")  # fmt: skip


async def list_batches(services: Services, user_id: str, limit: int, cursor: str | None) -> BatchesPublic:
    """One page of the caller's batches, newest first, each with its jobs' states (two visibility queries).

    Raises:
        FieldError: `cursor` is not one this API returned.
    """
    async with services.sessions() as session:
        try:
            batches, next_cursor = await repo.list_batches(session, user_id, limit, cursor)
        except repo.InvalidCursorError as err:
            raise FieldError(("query", "cursor"), "not a cursor this API returned") from err
        rows = await repo.jobs_of_batches(session, [b.id for b in batches])
    states = await _states(services, [row for jobs in rows.values() for row in jobs])
    data = [_summary(b, {r.id: states[r.id] for r in rows[b.id]}) for b in batches]
    return BatchesPublic(data=data, count=len(data), next_cursor=next_cursor)


# --- cancelling and deleting ---------------------------------------------------------------------


async def cancel_batch(services: Services, batch: Batch) -> BatchCancelled:
    """Cancel the batch's workflow (no more jobs start) and every job of it still running; 409 when all ended."""
    client = services.temporal
    rows = await _rows(services, batch)
    run = await batch_jobs.describe_batch(client, batch.id)
    # The batch first, so it starts no more; it cancels the children it runs, as this does.
    batch_open = run.open and await batch_jobs.cancel_quietly(client, batch.id)
    stopped = [row.id for row in rows if await _stop(services, row, batch_open, run.skipped)]
    if not stopped and not batch_open:
        raise ApiError(409, f"batch '{batch.id}' has ended: every job of it is completed, failed or cancelled")
    logger.info("batch %s cancelled (%d jobs asked to stop)", batch.id, len(stopped))
    return BatchCancelled(batch_id=batch.id, job_ids=stopped)


async def _stop(services: Services, row: Job, batch_open: bool, skipped: frozenset[str]) -> bool:
    """Cancel the job if it runs; True when it was open (running, or waiting for the batch just cancelled)."""
    try:
        description = await services.temporal.get_workflow_handle(row.id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return batch_open and row.id not in skipped
    if description.status != WorkflowExecutionStatus.RUNNING:
        return False
    return await batch_jobs.cancel_quietly(services.temporal, row.id)


async def erase_batch(services: Services, user_id: str, batch: Batch) -> None:
    """Delete the batch and every job of it (outputs, histories, rows); 409 while any is open."""
    rows = await _rows(services, batch)
    open_ids = await open_job_ids(services, user_id)
    busy = sorted(({batch.id} | {row.id for row in rows}) & open_ids)
    if busy:
        raise ApiError(409, f"batch '{batch.id}' is still running ({', '.join(busy)}); cancel it first")
    for row in rows:
        await erasure.erase_closed_job(services, row)
    await erasure.delete_history(services, batch.id)
    async with services.sessions.begin() as session:
        await repo.delete_batch(session, batch.id)
    logger.info("batch %s of %s deleted with %d jobs", batch.id, user_id, len(rows))
