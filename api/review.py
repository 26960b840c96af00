"""Script review through the API: read where a job's review stands, and edit, approve or reject.

Everything comes from the Temporal history: the written script (the `script` node's result), the
answers of the `reviewScript` Updates, and the review's timer. An action is checked here first
(409 when the job is not waiting, 422 naming the field) and again by the Update's validator, so a
refused action never reaches the history. An `Idempotency-Key` becomes the Update's id, and a
repeated key is answered with the first answer found in the history.
"""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.admission import IDEMPOTENCY_HEADER
from api.errors import ApiError, FieldError
from api.status import TERMINAL_EVENTS, event_time, is_review_timer, job_input
from core.db import Job
from schemas import names
from schemas.api import ReviewStatePublic, ScriptReviewIn, ScriptReviewPublic
from schemas.plan import GraphSpec
from schemas.review import review_action_problem
from schemas.speech import estimate_spoken_seconds, spoken_seconds_range
from schemas.tasks import JobRequest, PipelineInput, ScriptResult, ScriptReview, ScriptReviewInput

# How long the API waits for a CPU worker to take an action before answering 503 (the action
# is not lost: the same Idempotency-Key later returns its answer).
UPDATE_WAIT: Final = timedelta(seconds=30)
_KEY_PREFIX: Final = "review-"


@dataclass
class ReviewHistory:
    """What a job's history says about its review."""

    job: PipelineInput
    written: ScriptResult | None = None
    answers: dict[str, tuple[ScriptReviewInput, ScriptReview]] = field(default_factory=dict)  # by Update id
    last: ScriptReview | None = None
    waiting_since: datetime | None = None
    timed_out: bool = False
    closed: bool = False

    @property
    def review_params(self) -> dict[str, object] | None:
        """The review node's params; None when the job was submitted without a review."""
        node = next((n for n in self.job.graph.nodes if n.task == names.APPROVE_SCRIPT), None)
        return node.params if node else None

    @property
    def words_per_minute(self) -> float | None:
        """The pace edits are checked with (the voice's, chosen at submission)."""
        pace = (self.review_params or {}).get("words_per_minute")
        return float(pace) if isinstance(pace, int | float) else None

    @property
    def state(self) -> ReviewStatePublic:
        """`not_requested`, `pending`, `waiting`, `approved`, `rejected`, `timed_out` or `cancelled`."""
        if self.review_params is None:
            return "not_requested"
        if self.last is not None and self.last.state in ("approved", "rejected"):
            return self.last.state
        if self.timed_out:
            return "timed_out"
        if self.waiting_since is not None:
            return "cancelled" if self.closed else "waiting"
        return "pending"


async def fold_review(history: WorkflowHistory, converter: DataConverter) -> ReviewHistory:
    """The review of one run's history."""
    review = ReviewHistory(job=await job_input(history, converter))
    script_node = next((n.id for n in review.job.graph.nodes if n.task == names.GENERATE_SCRIPT), None)
    requests: dict[str, ScriptReviewInput] = {}
    scheduled: dict[int, str] = {}
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_id
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if scheduled.get(attrs.scheduled_event_id) == script_node and attrs.result.payloads:
                [review.written] = await converter.decode(attrs.result.payloads, [ScriptResult])
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED:
            # An Update reapplied by a reset (a retry) is admitted first; its acceptance then omits the request.
            admitted = event.workflow_execution_update_admitted_event_attributes.request
            [requests[admitted.meta.update_id]] = await converter.decode(
                admitted.input.args.payloads, [ScriptReviewInput]
            )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.args.payloads:
                [requests[request.meta.update_id]] = await converter.decode(
                    request.input.args.payloads, [ScriptReviewInput]
                )
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            done = event.workflow_execution_update_completed_event_attributes
            if done.outcome.success.payloads and done.meta.update_id in requests:
                [answer] = await converter.decode(done.outcome.success.payloads, [ScriptReview])
                review.answers[done.meta.update_id] = (requests[done.meta.update_id], answer)
                review.last = answer
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            if await is_review_timer(event, converter):
                review.waiting_since = event_time(event)
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            review.timed_out = review.waiting_since is not None
        elif kind in TERMINAL_EVENTS:
            review.closed = True
    return review


def public_view(review: ReviewHistory, answer: ScriptReview | None = None) -> ScriptReviewPublic:
    """The API view of the review: as it stands now, or as one Update `answer` left it."""
    duration = review.job.request.options.duration_seconds
    current = answer or review.last
    script = current.script if current and current.script else (review.written.script if review.written else None)
    original = current.original if current else None
    pace = review.words_per_minute
    return ScriptReviewPublic(
        job_id=review.job.job_id,
        state=answer.state if answer else review.state,
        stage=script.stage if script else None,
        narrative=script.narrative if script else None,
        source=review.written.source if review.written else None,
        edited=original is not None,
        original_stage=original.stage if original else None,
        original_narrative=original.narrative if original else None,
        reason=current.reason if current else None,
        duration_seconds=duration,
        words_per_minute=pace,
        estimated_seconds=round(estimate_spoken_seconds(script.narrative, pace), 1) if script and pace else None,
        spoken_seconds_range=list(spoken_seconds_range(duration)) if pace else None,
        waiting_until=review.waiting_since + timedelta(seconds=review.job.review_timeout_seconds)
        if review.waiting_since
        else None,
    )


async def read_review(client: Client, job_id: str) -> ReviewHistory:
    """The job's review, from its current run's history."""
    history = await client.get_workflow_handle(job_id).fetch_history()
    return await fold_review(history, client.data_converter)


async def read_view(client: Client, row: Job) -> ScriptReviewPublic:
    """The review view of a job; a batch's job not started yet has no history: its script is `pending`."""
    try:
        return public_view(await read_review(client, row.id))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or row.batch_id is None:
            raise
    graph = GraphSpec.model_validate(row.graph)
    requested = any(n.task == names.APPROVE_SCRIPT for n in graph.nodes)
    duration = JobRequest.model_validate(row.request).options.duration_seconds
    return ScriptReviewPublic(
        job_id=row.id, state="pending" if requested else "not_requested", duration_seconds=duration
    )


async def act(client: Client, job_id: str, body: ScriptReviewIn, key: str | None) -> ScriptReviewPublic:
    """Take a person's review action on the job; the answer is the review as the action left it.

    Raises:
        FieldError: a field of the action is wrong (422), or `key` was used with another action.
        ApiError: 409 when the job is not waiting for a review; 503 when no CPU worker took it in time.
    """
    try:
        review = await read_review(client, job_id)
    except RPCError as err:  # a batch's job its batch has not started yet
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise ApiError(409, f"job '{job_id}' has not started yet: its script is not written") from err
    action = ScriptReviewInput(action=body.action, narrative=body.narrative, stage=body.stage, reason=body.reason)
    update_id = f"{_KEY_PREFIX}{key}" if key else f"{_KEY_PREFIX}{uuid.uuid4().hex}"
    if update_id in review.answers:
        first, answer = review.answers[update_id]
        if first != action:
            raise FieldError(("header", IDEMPOTENCY_HEADER), "was already used for another review action of this job")
        return public_view(review, answer)
    if review.state != "waiting":
        raise ApiError(409, _not_waiting(job_id, review.state))
    problem = review_action_problem(action, review.words_per_minute, review.job.request.options.duration_seconds)
    if problem is not None:
        raise FieldError(("body", problem[0]), problem[1])
    handle = client.get_workflow_handle(job_id)
    try:
        answer = await asyncio.wait_for(
            handle.execute_update(names.REVIEW_UPDATE, action, id=update_id, result_type=ScriptReview),
            UPDATE_WAIT.total_seconds(),
        )
    except TimeoutError as err:
        raise ApiError(
            503, "no CPU worker took the action in time; send it again with the same Idempotency-Key"
        ) from err
    except WorkflowUpdateFailedError as err:
        raise _refused(job_id, err.cause) from err
    except RPCError as err:
        if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise
        raise ApiError(409, f"job '{job_id}' ended before the action reached it: {err.message}") from err
    return public_view(review, answer)


def _refused(job_id: str, cause: BaseException | None) -> FieldError | ApiError:
    """The answer to an action the workflow's validator refused (it changed between our read and the Update)."""
    if isinstance(cause, ApplicationError) and cause.type == names.ERR_REVIEW_INVALID and cause.details:
        return FieldError(("body", str(cause.details[0])), cause.message)
    message = cause.message if isinstance(cause, ApplicationError) else str(cause)
    return ApiError(409, f"job '{job_id}': {message}")


def _not_waiting(job_id: str, state: str) -> str:
    if state == "not_requested":
        return f"job '{job_id}' was submitted without options.review: there is no review to act on"
    if state == "pending":
        return f"job '{job_id}' is not waiting for a review yet: its script is still being written"
    return f"the review of job '{job_id}' is {state.replace('_', ' ')}: it takes no more actions"
