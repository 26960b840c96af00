"""`PipelineWorkflow`: runs a planner graph as a LangGraph graph whose nodes are activities."""

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from schemas import names
    from schemas.plan import PlanNode
    from schemas.tasks import (
        Asset,
        PipelineInput,
        PipelineResult,
        ProfileRef,
        RegisterResult,
        ScriptReview,
        ScriptReviewInput,
    )
    from workflows.compiler import RUN_NODE, shared_graph
    from workflows.registry import (
        CALLBACK_RETRY,
        CALLBACK_TIMEOUT,
        REQUEST_CANCEL_RETRY,
        REQUEST_CANCEL_TIMEOUT,
        TASKS,
        callback_input,
        profile_of,
        register_input,
    )
    from workflows.review import ScriptReviewer

PROFILE_ID = SearchAttributeKey.for_keyword(names.SA_PROFILE_ID)
REVIEW_STATE = SearchAttributeKey.for_keyword(names.SA_REVIEW_STATE)
REQUEST_CANCEL_ID = "review_cancel"
PARTIAL_REGISTER_ID = "register_partial"
# Runs started before this change wait for every cancelled activity, so a cancel that reached a
# short CPU activity was swallowed when it completed anyway and the job went on.
CANCEL_CPU_AT_ONCE = "cancel-cpu-nodes-at-once"
# Runs started before this change left a profile whose training was cancelled in `training`.
RELEASE_PROFILE_ON_CANCEL = "release-profile-on-cancel"
CANCELLED_REGISTER_ID = "register_cancelled"
TRAINING_TASKS = frozenset({names.TRAIN_LORA, names.TRAIN_VOICE})
CALLBACK_ID = "notify_callback"


# Not sandboxed: every module it runs (`workflows`, `schemas`, LangGraph, pydantic) is passed through
# the sandbox anyway (`workflows.sandbox`), so the sandbox re-imports nothing and checks none of that
# code; what it did add was its wrappers around `isinstance`, `issubclass` and `__import__`, which
# LangGraph calls about 800 times per job (about a third of the worker's CPU for a job: README,
# "Orchestration overhead"). Determinism is held by the replay tests, which also replay every golden
# history with this class inside the sandbox (`tests/workflows/test_replay.py`), so a call the sandbox
# forbids still fails a test.
@workflow.defn(name=names.PIPELINE_WORKFLOW, sandboxed=False)
class PipelineWorkflow:
    """One job: the graph spec compiled into a `StateGraph` and run node by node."""

    @workflow.init
    def __init__(self, job: PipelineInput) -> None:
        self._state: dict[str, Any] = {"outputs": {}}
        self._job = job
        review = next((n for n in job.graph.nodes if n.task == names.APPROVE_SCRIPT), None)
        self._reviewer = ScriptReviewer(
            words_per_minute=review.params.get("words_per_minute") if review else None,
            duration_seconds=job.request.options.duration_seconds,
        )

    @workflow.update(name=names.REVIEW_UPDATE)
    async def review_script(self, action: ScriptReviewInput) -> ScriptReview:
        """A person edits, approves or rejects the script the job waits with (validated first)."""
        return self._reviewer.apply(action)

    @review_script.validator
    def _check_review(self, action: ScriptReviewInput) -> None:
        # Refused here, an action leaves no event in the history.
        self._reviewer.check(action)

    @workflow.run
    async def run(self, job: PipelineInput) -> PipelineResult:
        """Run every node of `job.graph`; on a node failure register partial outputs, then fail."""
        try:
            await shared_graph(job.graph).ainvoke({"outputs": {}}, {"configurable": {RUN_NODE: self._run_node}})
        except asyncio.CancelledError:
            await self._release_profile()
            raise  # the job was cancelled: the run ends cancelled
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                await self._release_profile()
                raise
            await self._fail(err)
        await self._notify()
        artifacts: RegisterResult | None = self._state.get("artifacts")
        render = self._state.get("render")
        return PipelineResult(
            job_id=job.job_id,
            video=render.video if render else None,
            profile=profile_of(self._state) if self._state.get("profile") else None,
            artifacts=artifacts.artifacts if artifacts else [],
        )

    async def _run_node(self, node_id: str) -> dict[str, Any]:
        """Run one node of the graph; returns its LangGraph state update."""
        node = self._job.graph.node(node_id)
        if node.task == names.APPROVE_SCRIPT:
            return await self._await_review(node)
        task = TASKS[node.task]
        queue = self._job.cpu_task_queue if task.plane == "cpu" else self._job.gpu_task_queue
        # GPU activities heartbeat and checkpoint: the workflow waits for them to stop. CPU
        # activities are short and never see the cancel, so the job stops without them.
        cancellation = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        if task.plane == "cpu" and workflow.patched(CANCEL_CPU_AT_ONCE):
            cancellation = workflow.ActivityCancellationType.TRY_CANCEL
        # Inputs come from self._state, which holds every finished node's result; the
        # LangGraph state mirrors it so the graph's joins and ordering stay LangGraph's.
        result = await workflow.execute_activity(
            task.name,
            task.build_input(self._job, self._state, node),
            task_queue=queue,
            activity_id=node.id,
            summary=f"{node.id} · {task.name}",
            result_type=task.output_model,
            start_to_close_timeout=task.start_to_close,
            heartbeat_timeout=task.heartbeat,
            retry_policy=task.retry,
            cancellation_type=cancellation,
        )
        assets = task.assets_of(result)
        self._state[task.state_key] = result
        self._state["outputs"] = {**self._state["outputs"], node.id: assets}
        update = {task.state_key: result, "outputs": {node.id: assets}}
        if isinstance(result, ProfileRef) and result.id:
            workflow.upsert_search_attributes([PROFILE_ID.value_set(result.id)])
        return update

    async def _await_review(self, node: PlanNode) -> dict[str, Any]:
        """Wait for the person to approve the script (the `review` node): no activity, a durable wait.

        The wait is a timer of the job's `review_timeout_seconds`; a rejection or the timeout ends
        the job cancelled.
        """
        reviewer = self._reviewer
        reviewer.open(self._state["script"])
        workflow.upsert_search_attributes([REVIEW_STATE.value_set(reviewer.state)])
        timeout = timedelta(seconds=self._job.review_timeout_seconds)
        try:
            await workflow.wait_condition(lambda: reviewer.decided, timeout=timeout, timeout_summary=names.REVIEW_TIMER)
        except TimeoutError:
            reviewer.time_out()
        workflow.upsert_search_attributes([REVIEW_STATE.value_set(reviewer.state)])
        if reviewer.state != "approved":
            await self._cancel_itself()
        script = reviewer.result()
        self._state["script"] = script
        self._state["outputs"] = {**self._state["outputs"], node.id: []}
        return {"script": script, "outputs": {node.id: []}}

    async def _cancel_itself(self) -> None:
        """End the run cancelled: a workflow cannot cancel itself, so an activity asks the server to.

        The cancel then arrives like a person's: whatever awaits (the activity, or the wait
        after it) raises, and `run` lets the cancellation end the run.
        """
        await workflow.execute_activity(
            names.REQUEST_CANCEL,
            self._job.job_id,
            task_queue=self._job.cpu_task_queue,
            activity_id=REQUEST_CANCEL_ID,
            summary=f"{REQUEST_CANCEL_ID} · {names.REQUEST_CANCEL}",
            start_to_close_timeout=REQUEST_CANCEL_TIMEOUT,
            retry_policy=REQUEST_CANCEL_RETRY,
            cancellation_type=workflow.ActivityCancellationType.ABANDON,
        )
        await workflow.wait_condition(lambda: False)

    async def _release_profile(self) -> None:
        """A training cancelled halfway leaves a profile nobody can use: mark it failed, saying why."""
        profile = self._state.get("profile")
        unfinished = [
            n.id for n in self._job.graph.nodes if n.task in TRAINING_TASKS and n.id not in self._state["outputs"]
        ]
        if not unfinished or profile is None or profile.id is None:
            return
        if not workflow.patched(RELEASE_PROFILE_ON_CANCEL):
            return
        await self._register_outcome(CANCELLED_REGISTER_ID, error="training was cancelled", stage=unfinished[0])

    async def _register_outcome(self, activity_id: str, *, error: str, stage: str) -> None:
        """Run `artifacts.registerOutputs` outside the graph: what the job made, and why it stopped."""
        register = TASKS[names.REGISTER_OUTPUTS]
        await workflow.execute_activity(
            register.name,
            register_input(self._job, self._state, error=error, stage=stage),
            task_queue=self._job.cpu_task_queue,
            activity_id=activity_id,
            summary=f"{activity_id} · {register.name}",
            result_type=register.output_model,
            start_to_close_timeout=register.start_to_close,
            retry_policy=register.retry,
        )

    async def _fail(self, err: ActivityError) -> None:
        """Register what the failed job produced (seed §6), then fail with the node's reason."""
        stage = err.activity_id or "unknown"
        cause = err.cause
        message = str(getattr(cause, "message", "") or err)
        if partial := _partial_outputs(cause):
            self._state["outputs"] = {**self._state["outputs"], stage: partial}
        await self._register_outcome(PARTIAL_REGISTER_ID, error=message, stage=stage)
        await self._notify(error=message, stage=stage)
        raise ApplicationError(
            f"{stage} failed: {message}",
            {"stage": stage, "task": err.activity_type, "message": message},
            type=names.ERR_NODE_FAILED,
            non_retryable=True,
        ) from err

    async def _notify(self, *, error: str | None = None, stage: str | None = None) -> None:
        """POST the final status to the job's callback URL, if it has one; never fails the job.

        Jobs without a callback URL schedule nothing here, so their histories are unchanged.
        """
        if self._job.request.callback_url is None:
            return
        try:
            await workflow.execute_activity(
                names.NOTIFY_CALLBACK,
                callback_input(self._job, self._state, error=error, stage=stage),
                task_queue=self._job.cpu_task_queue,
                activity_id=CALLBACK_ID,
                summary=f"{CALLBACK_ID} · {names.NOTIFY_CALLBACK}",
                start_to_close_timeout=CALLBACK_TIMEOUT,
                retry_policy=CALLBACK_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("completion callback of %s not delivered: %s", self._job.job_id, err.cause or err)


def _partial_outputs(cause: BaseException | None) -> list[Asset]:
    """Outputs a failed GPU activity listed in its error details (`details[0]`: asset dicts).

    Malformed details are ignored rather than raised: an exception here would fail the
    workflow task and retry it forever instead of failing the job.
    """
    if not isinstance(cause, ApplicationError) or not cause.details or not isinstance(cause.details[0], list):
        return []
    try:
        return [Asset.model_validate(d) for d in cause.details[0]]
    except ValidationError:
        workflow.logger.warning("ignoring malformed partial outputs in the failure of %s", cause.type)
        return []
