"""Retrying a failed job: reset its workflow to just before the first node that did not complete.

A reset keeps the same workflow id (= job id) and starts a new run that replays the base run's
history up to the reset point, so completed nodes keep their results and are not run again.
"""

import logging
import uuid

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Services
from api.errors import ApiError
from api.status import job_input, job_state
from core import repo
from core.auth import Principal
from schemas.api import JobState
from schemas.base import ApiModel

logger = logging.getLogger(__name__)


class JobRetried(ApiModel):
    """Answer to a retry: the same job on a new run that resumes at the first failed node."""

    job_id: str
    run_id: str
    previous_run_id: str
    reset_event_id: int
    status: JobState = "running"


def reset_point(history: WorkflowHistory, node_ids: set[str]) -> int | None:
    """The `WorkflowTaskCompleted` event that scheduled the earliest graph node that did not complete.

    Resetting there keeps every completed node's result in the new run (they are not run
    again) and discards everything after, including the partial register of the failure path
    (its activity id is not a node id). None when every node completed or none was scheduled.
    """
    completed: set[int] = set()
    scheduled: dict[int, tuple[str, int]] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_id, attrs.workflow_task_completed_event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed.add(event.activity_task_completed_event_attributes.scheduled_event_id)
    unfinished = [wft for sid, (node, wft) in scheduled.items() if node in node_ids and sid not in completed]
    return min(unfinished, default=None)


def _last_task_completed(history: WorkflowHistory) -> int | None:
    ids = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    return ids[-1] if ids else None


async def retry(services: Services, job_id: str, caller: Principal) -> JobRetried:
    """Reset the failed job (the caller's own, or any user's for an admin); 404 or 409 otherwise."""
    # The server does not de-duplicate resets by request id: a second reset of the same failed
    # run would terminate the first reset's run and start another. Holding the job row's lock
    # makes concurrent retries (any API replica) take turns; the later one then sees the job
    # running and gets a 409.
    async with services.sessions.begin() as session:
        if not await repo.lock_job(session, job_id, None if caller.is_admin else caller.user_id):
            raise ApiError(404, f"job '{job_id}' not found")
        return await _reset(services, job_id, caller.user_id)


async def _reset(services: Services, job_id: str, user: str) -> JobRetried:
    client = services.temporal
    try:
        description = await client.get_workflow_handle(job_id).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        # A batch's job that its batch has not started (or never will): no run to reset.
        raise ApiError(
            409, f"job '{job_id}' has no run to retry (not started yet); only failed jobs can be retried"
        ) from err
    state = job_state(description.status)
    if state != "failed":  # failed, terminated or timed out
        raise ApiError(409, f"job '{job_id}' is {state}; only failed jobs can be retried")
    base_run = description.run_id
    history = await client.get_workflow_handle(job_id, run_id=base_run).fetch_history()
    job = await job_input(history, client.data_converter)
    # A terminated job may have no failed node: then it resumes after its last workflow task.
    event_id = reset_point(history, {n.id for n in job.graph.nodes}) or _last_task_completed(history)
    if event_id is None:
        raise ApiError(409, f"job '{job_id}' failed before running any node; resubmit it instead")
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=job_id, run_id=base_run),
            reason=f"retry requested by {user} through the API",
            workflow_task_finish_event_id=event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    logger.info("job %s reset from run %s at event %d to run %s", job_id, base_run, event_id, response.run_id)
    return JobRetried(job_id=job_id, run_id=response.run_id, previous_run_id=base_run, reset_event_id=event_id)
