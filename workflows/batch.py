"""`BatchWorkflow`: starts a batch's jobs as child `PipelineWorkflow`s, at most `max_running` at a time.

Each child's workflow id is its job id and its input is exactly what a single submission would
start, so every job endpoint, the page and the Web UI treat it as any other job. Children are
started with `ParentClosePolicy.ABANDON`: the batch ends as soon as its last child has started
(until then it counts as one open job of its user), and the children run on without it. A cancel
of the batch cancels the children still running and starts no more; the `cancel_jobs` signal
cancels single jobs, started or not (those not started are listed in the memo, so the API can
tell them from queued ones).
"""

import asyncio
import functools

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ChildWorkflowError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from schemas import names
    from schemas.tasks import BatchInput, BatchItem, BatchResult, CancelJobsInput


@workflow.defn(name=names.BATCH_WORKFLOW)
class BatchWorkflow:
    """One batch: its jobs started in order, never more than `max_running` of them running at once."""

    @workflow.init
    def __init__(self, batch: BatchInput) -> None:
        self._batch = batch
        self._running: set[str] = set()  # started by this run and not finished yet
        self._started: list[str] = []
        self._skipped: list[str] = []  # cancelled before they started: never started
        self._starting: asyncio.Future[workflow.ChildWorkflowHandle[object, object]] | None = None
        self._starting_job = ""

    @workflow.run
    async def run(self, batch: BatchInput) -> BatchResult:
        """Start every job not cancelled beforehand, waiting for a free slot before each one."""
        try:
            for item in batch.items:
                await workflow.wait_condition(functools.partial(self._may_go_on, item.job.job_id))
                if item.job.job_id not in self._skipped:
                    await self._start(item)
        except asyncio.CancelledError:
            # The children outlive the batch (ABANDON): stop the running ones here, or nobody will;
            # one whose start was under way when the cancel came is among them once it started.
            await self._started_meanwhile()
            await self._cancel(sorted(self._running))
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        return BatchResult(started=self._started, skipped=self._skipped)

    def _may_go_on(self, job_id: str) -> bool:
        """A slot is free, or the job was cancelled while it waited for one (then it needs none)."""
        return job_id in self._skipped or len(self._running) < self._batch.max_running

    @workflow.signal(name=names.CANCEL_BATCH_JOBS)
    async def cancel_jobs(self, request: CancelJobsInput) -> None:
        """Cancel these jobs of the batch: the running ones now, the others before they start."""
        ours = {item.job.job_id for item in self._batch.items}
        unstarted = [j for j in request.job_ids if j in ours and j not in self._started and j not in self._skipped]
        if unstarted:
            self._skipped.extend(unstarted)
            workflow.upsert_memo({names.BATCH_SKIPPED_MEMO: self._skipped})
        await self._cancel([j for j in request.job_ids if j in self._running])

    async def _start(self, item: BatchItem) -> None:
        job = item.job
        # Shielded: a cancel of the batch must not abandon a start the server may already be doing
        # (that child would run on, uncounted and uncancelled); `run` waits for it instead.
        self._starting = asyncio.ensure_future(
            workflow.start_child_workflow(
                names.PIPELINE_WORKFLOW,
                job,
                id=job.job_id,
                task_queue=job.cpu_task_queue,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=self._search_attributes(item),
                static_summary=item.summary,
            )
        )
        self._starting_job = job.job_id
        try:
            handle = await asyncio.shield(self._starting)
        except WorkflowAlreadyStartedError:
            # Someone started this job already (an operator, by hand): it is not ours to count.
            workflow.logger.warning("job %s of batch %s was already started", job.job_id, self._batch.batch_id)
            self._started.append(job.job_id)
            return
        self._started.append(job.job_id)
        self._running.add(job.job_id)
        asyncio.create_task(self._until_finished(job.job_id, handle))

    async def _started_meanwhile(self) -> None:
        """After a cancel: let a start that was under way finish, and count its child as running."""
        starting, self._starting = self._starting, None
        if starting is None or (starting.done() and self._starting_job in self._started):
            return
        try:
            handle = await starting
        except (WorkflowAlreadyStartedError, asyncio.CancelledError):
            return
        if self._starting_job not in self._started:
            self._started.append(self._starting_job)
            self._running.add(self._starting_job)
            asyncio.create_task(self._until_finished(self._starting_job, handle))

    async def _until_finished(self, job_id: str, handle: workflow.ChildWorkflowHandle[object, object]) -> None:
        try:
            await handle
        except ChildWorkflowError:
            pass  # a failed or cancelled job frees its slot like a completed one; its own status says why
        finally:
            self._running.discard(job_id)

    async def _cancel(self, job_ids: list[str]) -> None:
        """Ask the server to cancel these running children (each one's own run then ends `cancelled`)."""
        await asyncio.gather(*(self._cancel_one(job_id) for job_id in job_ids))

    async def _cancel_one(self, job_id: str) -> None:
        try:
            await workflow.get_external_workflow_handle(job_id).cancel()
        except FailureError as err:  # it finished meanwhile: nothing left to stop
            workflow.logger.info("job %s of batch %s not cancelled: %s", job_id, self._batch.batch_id, err)

    def _search_attributes(self, item: BatchItem) -> TypedSearchAttributes:
        pairs = [SearchAttributePair(SearchAttributeKey.for_keyword(k), v) for k, v in item.search_attributes.items()]
        pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(names.SA_BATCH_ID), self._batch.batch_id))
        return TypedSearchAttributes(pairs)
