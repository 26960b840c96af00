"""Job status folded from the Temporal history plus `describe()` (never stored by the API).

The history gives what happened (scheduled, completed, failed, the workflow's end); the
pending activities of `describe()` give what is happening: the running attempt, its
heartbeat progress, and the last failure of a node that is retrying. Listings and retries,
which need only the state, read it from a workflow's execution status (`job_state`).
"""

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from temporalio.api.enums.v1 import EventType, PendingActivityState, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHistory
from temporalio.converter import DataConverter

from schemas import names
from schemas.api import JobError, JobState, JobStatus, NodeError, NodeStatus
from schemas.tasks import PipelineInput, ScriptReview

TERMINAL_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "cancelled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "failed",
}

# A workflow's execution status as a job state; "queued" needs the history (nothing ran yet).
JOB_STATES: Final[dict[WorkflowExecutionStatus, JobState]] = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "failed",
    WorkflowExecutionStatus.TIMED_OUT: "failed",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "running",
}


def job_state(status: WorkflowExecutionStatus | None) -> JobState:
    """The job state of a workflow execution status (`running` when the server did not say)."""
    return JOB_STATES.get(status, "running") if status is not None else "running"


async def job_states(client: Client, job_ids: Iterable[str]) -> dict[str, JobState]:
    """The state of each job that visibility already lists, from one query (absent: not listed yet)."""
    ids = ", ".join(f"'{job_id}'" for job_id in job_ids)  # ids are ours (job-<hex>), never user input
    states: dict[str, JobState] = {}
    if ids:
        async for wf in client.list_workflows(query=f"WorkflowId IN ({ids})"):
            if wf.status is not None:
                states.setdefault(wf.id, job_state(wf.status))
    return states


async def read_status(client: Client, job_id: str) -> JobStatus:
    """The job's status, folded from its history and (while the run is open) `describe()`.

    The history and `describe()` are independent reads, so they run concurrently; `describe()`
    is ignored once the run closed.
    """
    handle = client.get_workflow_handle(job_id)
    results = await asyncio.gather(handle.fetch_history(), handle.describe(), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    history, description = results
    assert isinstance(history, WorkflowHistory) and isinstance(description, WorkflowExecutionDescription)
    return await fold_status(history, description if is_open(history) else None, client.data_converter)


def is_open(history: WorkflowHistory) -> bool:
    """True while the run has not closed."""
    last = history.events[-1].event_type
    return last not in TERMINAL_EVENTS and last != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW


def event_time(event: HistoryEvent) -> datetime:
    """When the event happened, in UTC."""
    return event.event_time.ToDatetime(tzinfo=UTC)


async def job_input(history: WorkflowHistory, converter: DataConverter) -> PipelineInput:
    """The workflow input (graph spec included) from the first history event."""
    return await job_input_of(history.events[0], converter)


async def job_input_of(started: HistoryEvent, converter: DataConverter) -> PipelineInput:
    """The workflow input carried by a run's first event (`WorkflowExecutionStarted`)."""
    [job] = await converter.decode(started.workflow_execution_started_event_attributes.input.payloads, [PipelineInput])
    return job  # type: ignore[no-any-return]


async def fold_status(
    history: WorkflowHistory,
    description: WorkflowExecutionDescription | None,
    converter: DataConverter,
) -> JobStatus:
    """Fold one run's history (and, while it runs, its pending activities) into the status JSON."""
    fold = StatusFold(await job_input(history, converter), history.events[0], converter)
    for event in history.events:
        await fold.apply(event)
    return await fold.status(description)


class StatusFold:
    """The status of one run, folded event by event: a follower applies only the new events.

    `status()` adds what `describe()` says about pending activities without keeping it, so the
    same fold serves every later event.
    """

    def __init__(self, job: PipelineInput, started: HistoryEvent, converter: DataConverter) -> None:
        self.job = job
        self.converter = converter
        self.nodes = {n.id: NodeStatus(id=n.id, task=n.task, plane=n.plane) for n in job.graph.nodes}
        self.by_scheduled_id: dict[int, str] = {}
        self.review = next((n.id for n in job.graph.nodes if n.task == names.APPROVE_SCRIPT), None)
        self.review_end: JobError | None = None  # why the review ended the job, when it did
        self.state: JobState = "queued"
        self.error: JobError | None = None
        self.finished_at: datetime | None = None
        self.started_at = event_time(started)
        self.run_id = started.workflow_execution_started_event_attributes.original_execution_run_id or None
        self.last_event_id = 0

    @property
    def closed(self) -> bool:
        """Whether the run's terminal event was applied."""
        return self.state in ("completed", "failed", "cancelled")

    @property
    def pending_activities(self) -> bool:
        """Whether a node's activity may be pending (scheduled, running or retrying): `describe()` then tells more."""
        return not self.closed and any(n.state in ("scheduled", "running", "retrying") for n in self.nodes.values())

    async def apply(self, event: HistoryEvent) -> None:
        """Fold one more event of the run (events arrive in order; one seen before is ignored)."""
        if event.event_id <= self.last_event_id:
            return
        self.last_event_id = event.event_id
        nodes, by_scheduled_id = self.nodes, self.by_scheduled_id
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            by_scheduled_id[event.event_id] = attrs.activity_id
            if attrs.activity_id in nodes:
                nodes[attrs.activity_id] = _with(nodes[attrs.activity_id], state="scheduled", attempt=1)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs_s = event.activity_task_started_event_attributes
            _update(nodes, by_scheduled_id, attrs_s.scheduled_event_id, state="running", attempt=attrs_s.attempt,
                    started_at=event_time(event))  # fmt: skip
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            _update(nodes, by_scheduled_id, sid, state="completed", finished_at=event_time(event),
                    progress=_done(nodes, by_scheduled_id, sid))  # fmt: skip
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attrs_f = event.activity_task_failed_event_attributes
            failure = attrs_f.failure
            info = failure.application_failure_info
            err = NodeError(message=failure.message, type=info.type or None, non_retryable=info.non_retryable)
            _update(nodes, by_scheduled_id, attrs_f.scheduled_event_id, state="failed", finished_at=event_time(event),
                    error=err)  # fmt: skip
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            attrs_t = event.activity_task_timed_out_event_attributes
            err = NodeError(message=f"timed out: {attrs_t.failure.message}", type=names.ERR_TIMED_OUT)
            _update(nodes, by_scheduled_id, attrs_t.scheduled_event_id, state="failed", finished_at=event_time(event),
                    error=err)  # fmt: skip
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            sid = event.activity_task_canceled_event_attributes.scheduled_event_id
            _update(nodes, by_scheduled_id, sid, state="cancelled", finished_at=event_time(event))
        elif self.review is not None and kind in _REVIEW_EVENTS:
            self.review_end = await _fold_review(event, nodes, self.review, self.converter) or self.review_end
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            # A reset's marker names the new run (the last one wins when a reset run was reset again).
            attrs_w = event.workflow_task_failed_event_attributes
            if (
                attrs_w.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
                and attrs_w.new_run_id
            ):
                self.run_id = attrs_w.new_run_id
        elif kind in TERMINAL_EVENTS:
            self.state = TERMINAL_EVENTS[kind]  # type: ignore[assignment]
            self.finished_at = event_time(event)
            cancelled = kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED
            self.error = self.review_end if cancelled else _job_error(event, nodes)

    async def status(self, description: WorkflowExecutionDescription | None = None) -> JobStatus:
        """The status JSON now; `description` (while the run is open) adds the pending activities' details."""
        nodes = dict(self.nodes)
        status = self.state
        if status == "queued" and description is not None:
            for pending in description.raw_description.pending_activities:
                await _apply_pending(nodes, pending, self.converter)
        if status == "queued" and any(n.state not in ("pending", "scheduled") for n in nodes.values()):
            status = "running"
        if status in ("failed", "cancelled", "completed"):
            for node_id, node in nodes.items():
                if node.state == "pending":
                    nodes[node_id] = _with(node, state="skipped")
                elif node.state in ("scheduled", "running", "retrying", "waiting") and status == "cancelled":
                    nodes[node_id] = _with(node, state="cancelled")
        ordered = [nodes[i] for i in self.job.graph.topological_order()]
        return JobStatus(job_id=self.job.job_id, run_id=self.run_id, status=status, error=self.error, nodes=ordered,
                         started_at=self.started_at, finished_at=self.finished_at)  # fmt: skip


_REVIEW_EVENTS = {
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_FIRED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
}


async def is_review_timer(event: HistoryEvent, converter: DataConverter) -> bool:
    """Whether a `TimerStarted` event is the timer a review waits with (found by its summary)."""
    summary = event.user_metadata.summary
    return bool(summary.data) and await converter.decode([summary], [str]) == [names.REVIEW_TIMER]


async def _fold_review(
    event: HistoryEvent, nodes: dict[str, NodeStatus], review: str, converter: DataConverter
) -> JobError | None:
    """The review node's state from its timer and the Updates' answers; the job's error when it ended the job.

    The review runs no activity: it is `waiting` from its timer's start, `completed` once an
    Update answered `approved`, `cancelled` when one answered `rejected` or the timer fired.
    """
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_TIMER_STARTED:
        if await is_review_timer(event, converter):
            nodes[review] = _with(nodes[review], state="waiting", started_at=event_time(event), attempt=1)
        return None
    if kind == EventType.EVENT_TYPE_TIMER_FIRED:
        if nodes[review].state != "waiting":
            return None
        nodes[review] = _with(nodes[review], state="cancelled", finished_at=event_time(event))
        return JobError(stage=review, message="review timed out: nobody approved the script in time")
    outcome = event.workflow_execution_update_completed_event_attributes.outcome
    if not outcome.success.payloads:
        return None
    [answer] = await converter.decode(outcome.success.payloads, [ScriptReview])
    if answer.state == "approved":
        nodes[review] = _with(nodes[review], state="completed", finished_at=event_time(event))
    elif answer.state == "rejected":
        nodes[review] = _with(nodes[review], state="cancelled", finished_at=event_time(event))
        return JobError(stage=review, message=f"rejected: {answer.reason or 'no reason given'}")
    return None


def _with(node: NodeStatus, **fields: Any) -> NodeStatus:
    return node.model_copy(update=fields)


def _update(nodes: dict[str, NodeStatus], by_scheduled_id: dict[int, str], scheduled_id: int, **fields: Any) -> None:
    node_id = by_scheduled_id.get(scheduled_id)
    if node_id is not None and node_id in nodes:
        nodes[node_id] = _with(nodes[node_id], **fields)


def _done(nodes: dict[str, NodeStatus], by_scheduled_id: dict[int, str], scheduled_id: int) -> dict[str, Any] | None:
    node = nodes.get(by_scheduled_id.get(scheduled_id, ""))
    if node is None or node.progress is None:
        return {"stage": "done", "percent": 100.0}
    return {**node.progress, "percent": 100.0}


async def _apply_pending(nodes: dict[str, NodeStatus], pending: PendingActivityInfo, converter: DataConverter) -> None:
    node = nodes.get(pending.activity_id)
    # A description read before the history's latest events may still list a node that has ended.
    if node is None or node.state not in ("scheduled", "running", "retrying"):
        return
    progress = None
    if pending.heartbeat_details.payloads:
        [progress] = await converter.decode(pending.heartbeat_details.payloads, [dict])
    last_error = None
    if pending.HasField("last_failure"):
        last_error = NodeError(
            message=pending.last_failure.message, type=pending.last_failure.application_failure_info.type or None
        )
    if (
        pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        or pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
    ):
        state = "running"
    elif pending.attempt > 1:
        state = "retrying"
    else:
        state = "scheduled"
    started_at = pending.last_started_time.ToDatetime(tzinfo=UTC) if pending.HasField("last_started_time") else None
    nodes[node.id] = _with(
        node,
        state=state,
        attempt=pending.attempt,
        progress=progress or node.progress,
        error=last_error,
        started_at=started_at,
    )


def _job_error(event: HistoryEvent, nodes: dict[str, NodeStatus]) -> JobError | None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        failure = event.workflow_execution_failed_event_attributes.failure
        failed = next((n.id for n in nodes.values() if n.state == "failed"), None)
        return JobError(stage=failed, message=failure.message)
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason or "no reason given"
        return JobError(stage=None, message=f"terminated by an operator: {reason}")
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return JobError(stage=None, message="the workflow timed out")
    return None
