"""The task registry: every task a graph may name, its plane, contracts, timeouts and retries.

Each task also knows how to build its activity input from the job and the graph state, and
under which state key its result lands, so the compiler stays generic.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.common import RetryPolicy

from schemas import names
from schemas.plan import Plane, PlanNode
from schemas.tasks import (
    Asset,
    CallbackInput,
    PipelineInput,
    ProfileInput,
    ProfileRef,
    RegisterInput,
    RegisterResult,
    RenderInput,
    RenderPlan,
    RenderResult,
    ScriptInput,
    ScriptResult,
    SelectInput,
    TrainLoraInput,
    TrainLoraResult,
    TrainVoiceInput,
    TrainVoiceResult,
)

State = dict[str, Any]
InputBuilder = Callable[[PipelineInput, State, PlanNode], BaseModel]

# Errors that can never succeed on retry; activities raise ApplicationError with these types.
NON_RETRYABLE_ERRORS = [
    names.ERR_INVALID_INPUT,
    names.ERR_NO_FACE_IN_PORTRAIT,
    names.ERR_MISSING_WEIGHTS,
    names.ERR_SCRIPT_INVALID,
    names.ERR_PROFILE_NOT_FOUND,
]

_CPU_RETRY = RetryPolicy(
    maximum_attempts=3, initial_interval=timedelta(seconds=1), non_retryable_error_types=NON_RETRYABLE_ERRORS
)
# Control steps that read or write Postgres and S3 ride out an outage of a few minutes (a
# database failover, a storage restart) instead of failing the job; they are idempotent.
_STORE_RETRY = RetryPolicy(
    maximum_attempts=12,
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
_GPU_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)


# Completion callbacks (not a graph node): 10 attempts, 1 s doubling to at most 5 min (~9 min of waits);
# the activity marks 4xx answers other than 408/429 non-retryable itself.
CALLBACK_RETRY = RetryPolicy(
    maximum_attempts=10,
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[names.ERR_CALLBACK_REJECTED, names.ERR_CALLBACK_NOT_CONFIGURED],
)
CALLBACK_TIMEOUT = timedelta(seconds=60)


# Tasks the workflow runs itself (no activity, so no worker advertises them), with their plane.
BUILT_IN_TASKS: dict[str, Plane] = {names.APPROVE_SCRIPT: "cpu"}
# Asking the server to cancel the job (a rejected or timed-out review): one quick call, retried
# through a short outage; nothing is lost by running it twice.
REQUEST_CANCEL_TIMEOUT = timedelta(seconds=30)
REQUEST_CANCEL_RETRY = _STORE_RETRY


def plane_of(task: str) -> Plane | None:
    """The plane a task runs on, built-in tasks included; None for a task nobody registered."""
    if task in BUILT_IN_TASKS:
        return BUILT_IN_TASKS[task]
    spec = TASKS.get(task)
    return spec.plane if spec else None


def _no_assets(_result: object) -> list[Asset]:
    return []


@dataclass(frozen=True)
class TaskDef:
    """What the compiler needs to run one task as a Temporal activity."""

    name: str
    plane: Plane
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    state_key: str
    build_input: InputBuilder
    start_to_close: timedelta
    heartbeat: timedelta | None = None
    retry: RetryPolicy = field(default_factory=lambda: _CPU_RETRY)
    assets_of: Callable[[Any], list[Asset]] = field(default_factory=lambda: _no_assets)


def profile_of(state: State) -> ProfileRef:
    """The profile with whatever the training nodes of this job produced merged in."""
    profile: ProfileRef = state.get("profile") or ProfileRef()
    updates: dict[str, str | None] = {}
    if lora := state.get("lora"):
        updates["lora_id"] = lora.lora_id
    if voice := state.get("voice"):
        updates["voice_id"] = voice.voice_id
        updates["voice_clone_engine"] = voice.clone_engine  # a voice trained again without cloning has none
    return profile.model_copy(update=updates)


def _script_input(job: PipelineInput, _state: State, node: PlanNode) -> ScriptInput:
    r = job.request
    return ScriptInput(
        job_id=job.job_id,
        topic=r.topic,
        style=r.style,
        language=r.language,
        duration_seconds=r.options.duration_seconds,
        given=r.script,
        # The planner puts the chosen voice's pace here; graphs planned before that have none.
        words_per_minute=node.params.get("words_per_minute"),
    )


def _profile_input(job: PipelineInput, _state: State, _node: PlanNode) -> ProfileInput:
    r = job.request
    return ProfileInput(
        job_id=job.job_id,
        user_id=job.user_id,
        profile_id=r.profile_id,
        profile_name=r.profile_name,
        images=r.images,
        audio=r.audio,
        consent=r.consent,
    )


def _train_lora_input(job: PipelineInput, state: State, node: PlanNode) -> TrainLoraInput:
    return TrainLoraInput(
        job_id=job.job_id,
        node_id=node.id,
        profile_id=_required_profile_id(state),
        images=job.request.images,
        preset=node.params.get("preset", "tiny"),
    )


def _train_voice_input(job: PipelineInput, state: State, node: PlanNode) -> TrainVoiceInput:
    return TrainVoiceInput(
        job_id=job.job_id, node_id=node.id, profile_id=_required_profile_id(state), clips=job.request.audio
    )


def _select_input(job: PipelineInput, state: State, node: PlanNode) -> SelectInput:
    return SelectInput(
        job_id=job.job_id,
        requested_variant=node.params.get("variant", job.request.variant),
        profile=profile_of(state),
        options=job.request.options,
        portrait=job.request.portrait,
    )


def _render_input(job: PipelineInput, state: State, node: PlanNode) -> RenderInput:
    plan: RenderPlan = state.get("pipeline") or RenderPlan(variant=node.params.get("variant", job.request.variant))
    return RenderInput(
        job_id=job.job_id,
        node_id=node.id,
        pipeline=plan,  # the field keeps its wire name
        script=state["script"].script,
        profile=profile_of(state),
        options=job.request.options,
        language=job.request.language,
        voice=job.request.voice,
        portrait=job.request.portrait,
    )


def register_input(
    job: PipelineInput, state: State, *, error: str | None = None, stage: str | None = None
) -> RegisterInput:
    """Input of `artifacts.registerOutputs`; with `error` set it registers a failed job's partial outputs."""
    render: RenderResult | None = state.get("render")
    return RegisterInput(
        job_id=job.job_id,
        user_id=job.user_id,
        outputs=state.get("outputs", {}),
        script=state.get("script"),
        profile=profile_of(state) if state.get("profile") else None,
        pipeline=state.get("pipeline"),
        video=render.video if render else None,
        partial=error is not None,
        failed_stage=stage,
        error=error,
    )


def callback_input(
    job: PipelineInput, state: State, *, error: str | None = None, stage: str | None = None
) -> CallbackInput:
    """Input of `callbacks.notify` for a job with a `callback_url`: its final status."""
    if job.request.callback_url is None:
        raise ValueError("the job has no callback URL")
    render: RenderResult | None = state.get("render")
    return CallbackInput(
        job_id=job.job_id,
        url=job.request.callback_url,
        status="failed" if error is not None else "completed",
        error=error,
        error_stage=stage,
        video=render.video if render and error is None else None,
    )


def _register_input(job: PipelineInput, state: State, _node: PlanNode) -> RegisterInput:
    return register_input(job, state)


def _required_profile_id(state: State) -> str:
    profile = state.get("profile")
    if profile is None or profile.id is None:
        raise ValueError("training needs a profile node before it")
    return str(profile.id)


def _render_assets(result: RenderResult) -> list[Asset]:
    return result.assets


TASKS: dict[str, TaskDef] = {
    t.name: t
    for t in [
        TaskDef(names.GENERATE_SCRIPT, "cpu", ScriptInput, ScriptResult, "script", _script_input, timedelta(minutes=3)),
        TaskDef(names.RESOLVE_PROFILE, "cpu", ProfileInput, ProfileRef, "profile", _profile_input, timedelta(seconds=60),
                retry=_STORE_RETRY),
        TaskDef(names.LOAD_PROFILE, "cpu", ProfileInput, ProfileRef, "profile", _profile_input, timedelta(seconds=60),
                retry=_STORE_RETRY),
        TaskDef(names.SELECT_PIPELINE, "cpu", SelectInput, RenderPlan, "pipeline", _select_input, timedelta(seconds=60),
                retry=_STORE_RETRY),
        TaskDef(names.REGISTER_OUTPUTS, "cpu", RegisterInput, RegisterResult, "artifacts", _register_input, timedelta(seconds=60),
                retry=_STORE_RETRY),
        TaskDef(
            names.TRAIN_LORA, "gpu", TrainLoraInput, TrainLoraResult, "lora", _train_lora_input,
            timedelta(hours=2), heartbeat=timedelta(seconds=30), retry=_GPU_RETRY,
            assets_of=lambda r: [Asset(kind="lora", uri=r.lora_id)],
        ),
        TaskDef(
            names.TRAIN_VOICE, "gpu", TrainVoiceInput, TrainVoiceResult, "voice", _train_voice_input,
            timedelta(hours=1), heartbeat=timedelta(seconds=30), retry=_GPU_RETRY,
            assets_of=lambda r: [Asset(kind="voice", uri=r.voice_id)],
        ),
        TaskDef(
            names.RENDER_VIDEO, "gpu", RenderInput, RenderResult, "render", _render_input,
            timedelta(hours=2), heartbeat=timedelta(seconds=30), retry=_GPU_RETRY, assets_of=_render_assets,
        ),
    ]
}  # fmt: skip
