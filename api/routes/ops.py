"""Operator routes: retry a failed job by resetting its workflow, or resubmit it as a new job."""

import logging
import uuid

from fastapi import APIRouter, Depends, status
from sqlalchemy import select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowHistory

from api.deps import JobIdPath, PrincipalDep, Services, ServicesDep, SettingsDep, UserDep, get_principal
from api.errors import ApiError
from api.routes.jobs import _own_job
from api.status import job_input
from api.submit import check_references, plan_request, start_job
from core.db import Job
from schemas.api import JobAccepted, JobState
from schemas.base import ApiModel
from schemas.tasks import JobRequest

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["operations"], dependencies=[Depends(get_principal)])

_RETRYABLE = {WorkflowExecutionStatus.FAILED, WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT}
_STATES: dict[WorkflowExecutionStatus, JobState] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}


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


@router.post("/jobs/{job_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_job(job_id: JobIdPath, caller: PrincipalDep, services: ServicesDep) -> JobRetried:
    """Reset a failed job to just before its first failed node; completed nodes are reused.

    The job's owner may retry it; an admin may retry any user's job (operators on call).
    """
    # The server does not de-duplicate resets by request id: a second reset of the same failed
    # run would terminate the first reset's run and start another. Holding the job row's lock
    # makes concurrent retries (any API replica) take turns; the later one then sees the job
    # running and gets a 409.
    async with services.sessions.begin() as session:
        locked = select(Job.id).where(Job.id == job_id).with_for_update()
        if not caller.is_admin:
            locked = locked.where(Job.user_id == caller.user_id)
        if (await session.execute(locked)).first() is None:
            raise ApiError(404, f"job '{job_id}' not found")
        return await _reset(services, job_id, caller.user_id)


async def _reset(services: Services, job_id: str, user: str) -> JobRetried:
    client = services.temporal
    description = await client.get_workflow_handle(job_id).describe()
    if description.status not in _RETRYABLE:
        state = _STATES.get(description.status, "running") if description.status else "running"
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


@router.post("/jobs/{job_id}/resubmit", status_code=status.HTTP_202_ACCEPTED)
async def resubmit_job(job_id: JobIdPath, user: UserDep, services: ServicesDep, settings: SettingsDep) -> JobAccepted:
    """Start a new job with the same request (profile, topic, options) as this one."""
    row = await _own_job(services, user, job_id)
    request = JobRequest.model_validate(row.request)
    await check_references(request, user, services)
    resolved, graph = await plan_request(request, services)
    new_id = await start_job(resolved, graph, user, services, settings)
    logger.info("job %s resubmitted as %s", job_id, new_id)
    return JobAccepted(job_id=new_id, status="queued")
