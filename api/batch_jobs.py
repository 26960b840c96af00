"""A batch's jobs before their workflow exists: their status, their state in listings, their cancel.

A batch writes every job row at once, but `BatchWorkflow` starts their workflows only as slots
free up, so a job may have a row and no history yet. Such a job is `queued` while its batch may
still start it, and `cancelled` once it never will: the batch was cancelled (or ended otherwise),
or the job was cancelled on its own (`cancel_jobs` signal; the batch lists those in its memo).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.followers import StatusFollowers
from api.status import job_states
from core.db import Job
from schemas import names
from schemas.api import JobState, JobStatus, NodeStatus
from schemas.plan import GraphSpec
from schemas.tasks import CancelJobsInput


@dataclass(frozen=True)
class BatchRun:
    """What a batch's workflow says about its jobs that have no workflow (yet)."""

    open: bool = True  # still starting jobs (also: not listed by visibility yet)
    completed: bool = False  # ended after starting every job not cancelled beforehand
    skipped: frozenset[str] = field(default_factory=frozenset)  # cancelled before they started

    def listed_state(self, job_id: str) -> JobState:
        """The state of its job that visibility does not list: queued, or cancelled when it never starts.

        After a completed batch every job not skipped did start; visibility lags a little behind.
        """
        if job_id in self.skipped:
            return "cancelled"
        return "queued" if self.open or self.completed else "cancelled"


def _batch_run(status: WorkflowExecutionStatus | None, memo: Mapping[str, Any]) -> BatchRun:
    return BatchRun(
        open=status == WorkflowExecutionStatus.RUNNING,
        completed=status == WorkflowExecutionStatus.COMPLETED,
        skipped=frozenset(memo.get(names.BATCH_SKIPPED_MEMO, [])),
    )


async def describe_batch(client: Client, batch_id: str) -> BatchRun:
    """The batch's run as the server has it now (a batch whose history is gone counts as ended)."""
    try:
        description = await client.get_workflow_handle(batch_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return BatchRun(open=False)
    return _batch_run(description.status, await description.memo())


async def batch_runs(client: Client, batch_ids: Iterable[str]) -> dict[str, BatchRun]:
    """The runs of these batches from one visibility query (a batch not listed yet is absent)."""
    ids = ", ".join(f"'{batch_id}'" for batch_id in sorted(set(batch_ids)))  # ours (batch-<hex>), never user input
    runs: dict[str, BatchRun] = {}
    if ids:
        async for wf in client.list_workflows(query=f"WorkflowId IN ({ids})"):
            runs.setdefault(wf.id, _batch_run(wf.status, await wf.memo()))
    return runs


async def _has_workflow(client: Client, job_id: str) -> bool:
    try:
        await client.get_workflow_handle(job_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def unstarted_state(client: Client, row: Job) -> JobState | None:
    """`queued` or `cancelled` for a batch's job without a workflow; None when its workflow exists."""
    if row.batch_id is None or await _has_workflow(client, row.id):
        return None
    run = await describe_batch(client, row.batch_id)
    if row.id in run.skipped:
        return "cancelled"
    if run.open:
        return "queued"
    # The batch ended: it may have started the job just before (then its status is the workflow's).
    return None if await _has_workflow(client, row.id) else "cancelled"


def unstarted_status(row: Job, state: JobState) -> JobStatus:
    """The status JSON of a job that has no workflow: its graph's nodes pending (skipped once cancelled)."""
    graph = GraphSpec.model_validate(row.graph)
    by_id = {node.id: node for node in graph.nodes}
    node_state = "pending" if state == "queued" else "skipped"
    nodes = [
        NodeStatus(id=i, task=by_id[i].task, plane=by_id[i].plane, state=node_state) for i in graph.topological_order()
    ]
    return JobStatus(job_id=row.id, run_id=None, status=state, nodes=nodes)


async def read_job_status(followers: StatusFollowers, row: Job) -> JobStatus:
    """The job's status (its follower's, `api.followers`), and for a batch's job not started yet, `queued` or `cancelled`."""
    try:
        return await followers.read(row.id)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or row.batch_id is None:
            raise
    state = await unstarted_state(followers.client, row)
    return await followers.read(row.id) if state is None else unstarted_status(row, state)


async def listed_states(client: Client, rows: list[Job]) -> dict[str, JobState]:
    """Each job's state from visibility (`api.status.job_states`), batches' unstarted jobs filled in.

    A job on its own that visibility does not list yet stays absent (the caller reads it as queued).
    """
    states = await job_states(client, [row.id for row in rows])
    waiting = [row for row in rows if row.id not in states and row.batch_id is not None]
    if waiting:
        runs = await batch_runs(client, {str(row.batch_id) for row in waiting})
        for row in waiting:
            states[row.id] = runs.get(str(row.batch_id), BatchRun()).listed_state(row.id)
    return states


async def cancel_job(client: Client, row: Job) -> None:
    """Cancel the job's workflow; a batch's job not started yet is cancelled through its batch instead.

    The batch cancels it itself if it started it meanwhile (see `BatchWorkflow.cancel_jobs`).
    """
    try:
        await client.get_workflow_handle(row.id).cancel()
        return
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or row.batch_id is None:
            raise
    try:
        await client.get_workflow_handle(row.batch_id).signal(
            names.CANCEL_BATCH_JOBS, CancelJobsInput(job_ids=[row.id])
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # the batch ended: it will never start the job
            raise


async def cancel_quietly(client: Client, workflow_id: str) -> bool:
    """Request the workflow's cancel; False when it had already closed (nothing left to cancel)."""
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True
