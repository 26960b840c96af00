"""Inputs and results of the workflow and of every activity (seed §3 tables)."""

from typing import Any, Literal

from pydantic import Field

from schemas.base import Contract
from schemas.media import CaptionPosition, CaptionStyle, JobMode, Variant
from schemas.plan import GraphSpec


class Script(Contract):
    """The script schema: what the LLM must return (seed §4.2)."""

    stage: str = Field(min_length=1, max_length=2000)
    narrative: str = Field(min_length=1, max_length=5000)


class RenderSettings(Contract):
    """Rendering options as the renderer sees them."""

    duration_seconds: float = 12
    resolution: str = "480p"
    aspect_ratio: str = "16:9"
    fps: int = 25
    captions: bool = False
    caption_style: CaptionStyle = "plain"  # these four arrived with word captions and music: old histories lack them
    caption_position: CaptionPosition = "bottom"
    music: str = "none"
    music_volume: float = 0.25
    media: list[str] = Field(default_factory=list)  # these two arrived with the creator workflow
    review: bool = False


class JobRequest(Contract):
    """The validated submission, snake_case, carried in the workflow input."""

    mode: JobMode
    topic: str
    style: str | None = None
    variant: Variant
    profile_id: str | None = None
    profile_name: str | None = None
    training_preset: str | None = None
    portrait: str | None = None
    script: Script | None = None
    language: str = "en"
    voice: str | None = None
    images: list[str] = Field(default_factory=list)
    audio: list[str] = Field(default_factory=list)
    options: RenderSettings = Field(default_factory=RenderSettings)
    callback_url: str | None = None
    consent: bool = False  # the user consented to training on the faces and voices they uploaded


class PipelineInput(Contract):
    """`PipelineWorkflow` input; task-queue names come from the API's settings."""

    job_id: str
    user_id: str
    request: JobRequest
    graph: GraphSpec
    cpu_task_queue: str
    gpu_task_queue: str
    review_timeout_seconds: float = 24 * 3600  # how long a `review` node waits (APP_REVIEW__TIMEOUT_HOURS)


class ScriptInput(Contract):
    """`script.generateScript`."""

    job_id: str
    topic: str
    style: str | None = None
    language: str = "en"
    duration_seconds: float = 12
    given: Script | None = None
    # The chosen voice's pace (the GPU manifest's `words_per_minute`), so the script fills the
    # duration as that voice speaks; None (old histories) means the writer's default pace.
    words_per_minute: float | None = Field(default=None, gt=0)


class ScriptResult(Contract):
    """The validated script and who wrote it (`user`, `ollama:<model>`, `offline`).

    After a review in which the person edited it, `script` is their text and `original` the one
    `source` wrote.
    """

    script: Script
    source: str
    original: Script | None = None


ReviewAction = Literal["edit", "approve", "reject"]
# `pending` until the workflow reaches the review node, then `waiting` for the person.
ReviewState = Literal["pending", "waiting", "approved", "rejected", "timed_out"]


class ScriptReviewInput(Contract):
    """The argument of the `reviewScript` Update: what the person did with the script."""

    action: ReviewAction
    narrative: str | None = Field(default=None, min_length=1, max_length=5000)
    stage: str | None = Field(default=None, min_length=1, max_length=2000)
    reason: str | None = Field(default=None, max_length=500)


class ScriptReview(Contract):
    """Where a job's script review stands: the Update's answer, and what the API shows."""

    state: ReviewState
    script: Script | None = None  # what the render will speak
    original: Script | None = None  # what the writer wrote, once the person edited it
    source: str | None = None  # who wrote the original
    reason: str | None = None  # why it was rejected


class ProfileInput(Contract):
    """`profiles.resolveOrCreate` and `profiles.loadExisting`."""

    job_id: str
    user_id: str
    profile_id: str | None = None
    profile_name: str | None = None
    images: list[str] = Field(default_factory=list)
    audio: list[str] = Field(default_factory=list)
    consent: bool = False  # training refuses to start without it


class ProfileRef(Contract):
    """A profile as nodes see it; `id` None means no profile (built-in presenter and voice)."""

    id: str | None = None
    name: str | None = None
    lora_id: str | None = None
    voice_id: str | None = None
    voice_clone_engine: str | None = None  # set when the voice was cloned (the engine that speaks it)
    portrait_uri: str | None = None


class TrainLoraInput(Contract):
    """`train_lora`: LoRA on the user's images."""

    job_id: str
    node_id: str
    profile_id: str
    images: list[str]
    preset: str = "tiny"


class TrainLoraResult(Contract):
    """Where the trained LoRA weights are."""

    lora_id: str
    steps: int
    final_loss: float | None = None


class TrainVoiceInput(Contract):
    """`train_voice`: a voice from the user's clips."""

    job_id: str
    node_id: str
    profile_id: str
    clips: list[str]


class TrainVoiceResult(Contract):
    """Where the voice profile is."""

    voice_id: str
    clone_engine: str | None = None  # the engine that cloned the voice from the clips (XTTS v2); None: pace only


class SelectInput(Contract):
    """`planner.selectPipeline`."""

    job_id: str
    requested_variant: Variant
    profile: ProfileRef
    options: RenderSettings
    portrait: str | None = None


class RenderPlan(Contract):
    """The render plan `planner.selectPipeline` fixes: the variant and which face is animated.

    Its wire names stay those of the time it was called a pipeline: the activity
    `planner.selectPipeline` returns it and the `pipeline` fields of `RenderInput` and
    `RegisterInput` carry it, as recorded histories do. The rendering options travel once, in
    `RenderInput.options`. `params` is what jobs recorded before this plan was typed (a copy of the
    options plus the portrait); only the portrait of such an old history is still read from it.
    """

    variant: Variant
    portrait_uri: str | None = None  # None: the built-in presenter
    face_source: Literal["request", "profile", "presenter"] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def portrait(self) -> str | None:
        """The portrait to animate, from this plan or an old history's `params`."""
        legacy = self.params.get("portrait_uri")
        return self.portrait_uri or (legacy if isinstance(legacy, str) else None)


class RenderInput(Contract):
    """`render_video`."""

    job_id: str
    node_id: str
    pipeline: RenderPlan
    script: Script
    profile: ProfileRef
    options: RenderSettings
    language: str = "en"
    voice: str | None = None
    portrait: str | None = None


class Asset(Contract):
    """One object a node produced (`kind`: video, thumbnail, audio, image, captions, …)."""

    kind: str
    uri: str
    content_type: str | None = None
    size_bytes: int | None = None


class Video(Contract):
    """The rendered video (seed §3.2)."""

    uri: str
    thumbnail_uri: str | None = None
    duration: float
    variant: Variant
    # Which runtime rendered each stage, ids exactly as the GPU manifest advertises them
    # (`{"speech": "piper:en_US-joe-medium", "talking_head": "embedded-face-mesh"}`); empty in old histories.
    rendering: dict[str, str] = Field(default_factory=dict)


class RenderResult(Contract):
    """`render_video` output: the video and every intermediate asset."""

    video: Video
    assets: list[Asset] = Field(default_factory=list)


class RegisterInput(Contract):
    """`artifacts.registerOutputs`: persist outputs (all, or the partial ones of a failed job)."""

    job_id: str
    user_id: str
    outputs: dict[str, list[Asset]]
    script: ScriptResult | None = None
    profile: ProfileRef | None = None
    pipeline: RenderPlan | None = None
    video: Video | None = None
    partial: bool = False
    failed_stage: str | None = None
    error: str | None = None


class CallbackInput(Contract):
    """`callbacks.notify`: POST the final status of a job to its callback URL."""

    job_id: str
    url: str
    status: Literal["completed", "failed"]
    error_stage: str | None = None
    error: str | None = None
    video: Video | None = None


class ArtifactRef(Contract):
    """A registered artifact row."""

    id: str
    kind: str
    node_id: str
    uri: str


class RegisterResult(Contract):
    """The job's artifact rows after registration."""

    artifacts: list[ArtifactRef]


class PipelineResult(Contract):
    """`PipelineWorkflow` result."""

    job_id: str
    status: Literal["completed"] = "completed"
    video: Video | None = None
    profile: ProfileRef | None = None
    artifacts: list[ArtifactRef] = Field(default_factory=list)


class ExpireInput(Contract):
    """`retention.expireUploads`: delete uploads older than this that nothing uses."""

    retention_hours: float


class ExpireResult(Contract):
    """What a retention sweep deleted and how many old uploads it kept because they are in use."""

    deleted: list[str] = Field(default_factory=list)
    kept_in_use: int = 0


# --- batches -------------------------------------------------------------------------------------


class BatchItem(Contract):
    """One job of a batch: the input a single `POST /api/generate` would start it with, and its labels.

    The API builds `search_attributes` (keyword name → value) and `summary` as it does for a single
    job, so a child started by `BatchWorkflow` looks the same in visibility and the Web UI.
    """

    job: PipelineInput
    search_attributes: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None


class BatchInput(Contract):
    """`BatchWorkflow` input: the jobs to start, in order, and how many of them may run at once."""

    batch_id: str
    user_id: str
    items: list[BatchItem] = Field(min_length=1)
    max_running: int = Field(ge=1)


class CancelJobsInput(Contract):
    """The `BatchWorkflow` signal that cancels some of its jobs: started ones are cancelled, the rest never start."""

    job_ids: list[str]


class BatchResult(Contract):
    """What a batch did: the jobs it started and those cancelled before they started, in order."""

    started: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
