"""The orchestration benchmark's Temporal side: no-op bodies for every task and the hand-written DAG workflow.

Kept out of `bench.orchestration` so the workflow is defined in a module the sandbox passes
through by name (`bench`), however the benchmark is started.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity, workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from schemas import names
    from schemas.plan import PlanNode
    from schemas.tasks import (
        Asset,
        PipelineInput,
        PipelineResult,
        ProfileInput,
        ProfileRef,
        RegisterInput,
        RegisterResult,
        RenderInput,
        RenderPlan,
        RenderResult,
        Script,
        ScriptInput,
        ScriptResult,
        SelectInput,
        TrainLoraInput,
        TrainLoraResult,
        TrainVoiceInput,
        TrainVoiceResult,
        Video,
    )
    from workflows.registry import TASKS

HAND_WRITTEN_WORKFLOW = "HandWrittenDagWorkflow"
HAND_WRITTEN_UNSANDBOXED = "HandWrittenDagWorkflowUnsandboxed"
PROFILE_ID = SearchAttributeKey.for_keyword(names.SA_PROFILE_ID)


# --- no-op task bodies (valid result models, nothing else) -----------------------------------

SCRIPT = ScriptResult(script=Script(stage="A bench studio.", narrative="Nothing to say."), source="bench")
PROFILE = ProfileRef(id="prof-bench", name="bench", portrait_uri="s3://uploads/bench/face.png")
LORA = TrainLoraResult(lora_id="s3://artifacts/profiles/prof-bench/lora.safetensors", steps=1)
VOICE = TrainVoiceResult(voice_id="s3://artifacts/profiles/prof-bench/voice.json")
VIDEO_URI = "s3://artifacts/jobs/bench/render/video.mp4"


@activity.defn(name=names.GENERATE_SCRIPT)
async def generate_script(_inp: ScriptInput) -> ScriptResult:
    return SCRIPT


@activity.defn(name=names.RESOLVE_PROFILE)
async def resolve_or_create_profile(_inp: ProfileInput) -> ProfileRef:
    return PROFILE


@activity.defn(name=names.LOAD_PROFILE)
async def load_existing_profile(_inp: ProfileInput) -> ProfileRef:
    return ProfileRef()


@activity.defn(name=names.SELECT_PIPELINE)
async def select_render_plan(inp: SelectInput) -> RenderPlan:
    return RenderPlan(variant=inp.requested_variant, params=inp.options.model_dump())


@activity.defn(name=names.REGISTER_OUTPUTS)
async def register_outputs(_inp: RegisterInput) -> RegisterResult:
    return RegisterResult(artifacts=[])


@activity.defn(name=names.TRAIN_LORA)
async def train_lora(_inp: TrainLoraInput) -> TrainLoraResult:
    return LORA


@activity.defn(name=names.TRAIN_VOICE)
async def train_voice(_inp: TrainVoiceInput) -> TrainVoiceResult:
    return VOICE


@activity.defn(name=names.RENDER_VIDEO)
async def render_video(inp: RenderInput) -> RenderResult:
    video = Video(uri=VIDEO_URI, duration=1.0, variant=inp.pipeline.variant)
    return RenderResult(video=video, assets=[Asset(kind="video", uri=VIDEO_URI, content_type="video/mp4")])


CPU_NOOPS: list[Callable[..., Any]] = [
    generate_script,
    resolve_or_create_profile,
    load_existing_profile,
    select_render_plan,
    register_outputs,
]
GPU_NOOPS: list[Callable[..., Any]] = [train_lora, train_voice, render_video]


# --- (b) the hand-written baseline -----------------------------------------------------------


@workflow.defn(name=HAND_WRITTEN_WORKFLOW)
class HandWrittenDagWorkflow:
    """The same DAG without LangGraph: each wave of ready nodes runs with `asyncio.gather`.

    For `train_and_generate_v1` the waves are script, profile, {train_lora, train_voice},
    select, render, register: exactly what one would write by hand. Activity options and the
    `ProfileId` search-attribute upsert are those of `PipelineWorkflow`, so both histories
    carry the same events.
    """

    @workflow.run
    async def run(self, job: PipelineInput) -> PipelineResult:
        """Run every node of `job.graph`, wave by wave."""
        state: dict[str, Any] = {"outputs": {}}
        done: set[str] = set()
        while len(done) < len(job.graph.nodes):
            wave = [n for n in job.graph.nodes if n.id not in done and set(job.graph.parents(n.id)) <= done]
            await asyncio.gather(*(self._node(job, state, node) for node in wave))
            done.update(n.id for n in wave)
        render = state.get("render")
        artifacts = state.get("artifacts")
        return PipelineResult(
            job_id=job.job_id,
            video=render.video if render else None,
            profile=state.get("profile"),
            artifacts=artifacts.artifacts if artifacts else [],
        )

    async def _node(self, job: PipelineInput, state: dict[str, Any], node: PlanNode) -> None:
        task = TASKS[node.task]
        result = await workflow.execute_activity(
            task.name,
            task.build_input(job, state, node),
            task_queue=job.cpu_task_queue if task.plane == "cpu" else job.gpu_task_queue,
            activity_id=node.id,
            summary=f"{node.id} · {task.name}",
            result_type=task.output_model,
            start_to_close_timeout=task.start_to_close,
            heartbeat_timeout=task.heartbeat,
            retry_policy=task.retry,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        state[task.state_key] = result
        state["outputs"] = {**state["outputs"], node.id: task.assets_of(result)}
        if isinstance(result, ProfileRef) and result.id:
            workflow.upsert_search_attributes([PROFILE_ID.value_set(result.id)])


@workflow.defn(name=HAND_WRITTEN_UNSANDBOXED, sandboxed=False)
class UnsandboxedHandWrittenDagWorkflow(HandWrittenDagWorkflow):
    """(b′) The baseline as `PipelineWorkflow` runs (outside the sandbox): for reference, not the target's (b)."""

    @workflow.run
    async def run(self, job: PipelineInput) -> PipelineResult:
        """The same waves."""
        return await super().run(job)
