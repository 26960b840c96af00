"""HTTP bodies: camelCase on the wire (seed §5, ARCHITECTURE.md "API bodies")."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, field_validator

from schemas.base import ApiModel
from schemas.media import MUSIC_BEDS, AspectRatio, CaptionPosition, CaptionStyle, JobMode, Resolution, Variant
from schemas.plan import GraphSpec

JobState = Literal["queued", "running", "completed", "failed", "cancelled"]
# `waiting`: a review node waiting for its person (no activity runs).
NodeState = Literal[
    "pending", "scheduled", "running", "retrying", "waiting", "completed", "failed", "cancelled", "skipped"
]

S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9!_.*'()/-]{1,512}$"
S3Uri = Annotated[str, Field(pattern=S3_URI_PATTERN)]
LANGUAGE_PATTERN = r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$"
# A preset's name is a path segment of `DELETE /api/presets/{name}`: no slashes, no control
# characters, and not only dots (`.` and `..` are what URL clients normalise away).
_NAME_CHAR = r"[^/\\\x00-\x1f\x7f]"
PRESET_NAME_PATTERN = rf"^{_NAME_CHAR}*[^./\\\x00-\x1f\x7f]{_NAME_CHAR}*$"
PresetName = Annotated[str, Field(min_length=1, max_length=64, pattern=PRESET_NAME_PATTERN)]
_PRESET_DESCRIPTION = (
    "the name of one of your saved presets (`GET /api/presets`); fields present in this body override it"
)


class RenderOptions(ApiModel):
    """Rendering knobs; values beyond the advertised constraints are rejected, never capped."""

    duration_seconds: float = Field(default=12, gt=0, le=600)
    resolution: Resolution = "480p"
    aspect_ratio: AspectRatio = "16:9"
    fps: int = Field(default=25, ge=1, le=60)
    captions: bool = False
    caption_style: CaptionStyle = Field(default="plain", description="`karaoke` highlights the word being spoken")
    caption_position: CaptionPosition = "bottom"
    music: str = Field(
        default="none",
        max_length=600,
        description="`none`, a bed our code synthesises (`calm`, `upbeat`), or one of your music uploads (s3://uploads/…)",
    )
    music_volume: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="the bed's level where no one speaks (before, after and in long pauses), 0–1; under speech it is ducked",
    )
    media: list[S3Uri] = Field(
        default_factory=list,
        max_length=20,
        description="svd only: your uploaded images and clips (s3://uploads/…), one per scene in order, "
        "instead of a generated backdrop",
    )
    review: bool = Field(
        default=False,
        description="wait after the script (and training) until you approve, edit or reject it (POST /api/jobs/{id}/script)",
    )

    @field_validator("music")
    @classmethod
    def _music_is_a_bed_or_an_upload(cls, value: str) -> str:
        if value in MUSIC_BEDS or re.fullmatch(S3_URI_PATTERN, value):
            return value
        raise ValueError(f"must be one of {', '.join(MUSIC_BEDS)} or the s3://uploads/… URI of your uploaded audio")


class ScriptIn(ApiModel):
    """A user-written script; supplying one skips the LLM."""

    stage: str | None = Field(default=None, max_length=2000)
    narrative: str = Field(min_length=1, max_length=5000)


class GenerateRequest(ApiModel):
    """`POST /api/generate`: render a video, optionally with an existing profile."""

    mode: Literal["generate"] = "generate"
    user_id: str | None = Field(
        default=None,
        max_length=64,
        description="optional; the user comes from the API key, and a different value here is refused (403)",
    )
    topic: str = Field(min_length=1, max_length=500)
    style: str | None = Field(default=None, max_length=200)
    variant: Variant = "svd"
    profile_id: str | None = Field(default=None, max_length=64)
    portrait: str | None = Field(default=None, pattern=S3_URI_PATTERN)
    script: ScriptIn | None = None
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    voice: str | None = Field(default=None, max_length=64)
    options: RenderOptions = Field(default_factory=RenderOptions)
    callback_url: HttpUrl | None = Field(
        default=None,
        description="http(s) URL that receives the final status as a signed POST when the job ends",
    )
    preset: PresetName | None = Field(default=None, description=_PRESET_DESCRIPTION)


class TrainRequest(ApiModel):
    """`POST /api/train`: train a profile from uploads, then (unless `train_only`) render."""

    mode: Literal["train_and_generate", "train_only"] = "train_and_generate"
    user_id: str | None = Field(
        default=None,
        max_length=64,
        description="optional; the user comes from the API key, and a different value here is refused (403)",
    )
    consent: bool = Field(
        default=False,
        description="must be true: the user has the right to use these faces and voices and consents to training on them",
    )
    topic: str = Field(default="", max_length=500)
    style: str | None = Field(default=None, max_length=200)
    variant: Variant = "svd"
    profile_name: str | None = Field(default=None, max_length=100)
    training_preset: str | None = Field(
        default=None,
        max_length=40,
        description="a preset from `GET /api/capabilities` (gpu.training_presets); default: the first",
    )
    images: list[S3Uri] = Field(min_length=1, max_length=20)
    audio: list[S3Uri] = Field(default_factory=list, max_length=10)
    portrait: str | None = Field(default=None, pattern=S3_URI_PATTERN)
    script: ScriptIn | None = None
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    voice: str | None = Field(default=None, max_length=64)
    options: RenderOptions = Field(default_factory=RenderOptions)
    callback_url: HttpUrl | None = Field(
        default=None,
        description="http(s) URL that receives the final status as a signed POST when the job ends",
    )
    preset: PresetName | None = Field(default=None, description=_PRESET_DESCRIPTION)


class PresetIn(ApiModel):
    """`POST /api/presets`: a named option set that a generate or train body may name as `preset`."""

    name: PresetName
    variant: Variant | None = None
    voice: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN)
    options: RenderOptions | None = Field(
        default=None, description="only the options given are saved; a body's own options override them one by one"
    )


class PresetPublic(ApiModel):
    """One of the caller's saved presets (`options`: the saved ones, the rest at their defaults)."""

    name: str
    variant: Variant | None = None
    voice: str | None = None
    language: str | None = None
    options: RenderOptions | None = None
    created_at: datetime


class PresetsPublic(ApiModel):
    """The caller's presets, newest first."""

    data: list[PresetPublic]
    count: int


class JobAccepted(ApiModel):
    """Answer to a submission."""

    job_id: str
    status: JobState = "queued"


class PlanResponse(ApiModel):
    """`POST /api/plan`: the graph a submission would run, with the voice and length it would get."""

    graph: GraphSpec
    voice: str | None = Field(
        default=None, description="the advertised voice that would speak (none: nothing is rendered)"
    )
    duration_seconds: float | None = Field(
        default=None, description="how long the video would last (fitted to a user script when not given)"
    )


class NodeError(ApiModel):
    """Why a node failed (or why its last attempt failed, while retrying)."""

    message: str
    type: str | None = None
    non_retryable: bool = False


class NodeStatus(ApiModel):
    """One graph node's state, folded from the workflow history and `describe()`."""

    id: str
    task: str
    plane: str
    state: NodeState = "pending"
    attempt: int = 0
    progress: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: NodeError | None = None


class JobError(ApiModel):
    """Why a job failed: the stage (node) and a human sentence."""

    stage: str | None
    message: str


class CallbackVideo(ApiModel):
    """The rendered video as a completion callback reports it."""

    uri: str
    thumbnail_uri: str | None = None
    duration: float
    variant: Variant


class CallbackPayload(ApiModel):
    """The body POSTed to a job's `callbackUrl` when it ends, signed in `X-MySpinBot-Signature`."""

    job_id: str
    status: Literal["completed", "failed"]
    error: JobError | None = None
    video: CallbackVideo | None = None


class JobStatus(ApiModel):
    """`GET /api/status/{jobId}` and the WebSocket messages."""

    job_id: str
    run_id: str | None
    status: JobState
    error: JobError | None = None
    nodes: list[NodeStatus]
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ArtifactPublic(ApiModel):
    """A registered output with a presigned download URL."""

    id: str
    kind: str
    node_id: str
    uri: str
    url: str
    content_type: str | None = None
    size_bytes: int | None = None
    partial: bool = False


class ProfilePublic(ApiModel):
    """A user's reusable profile."""

    id: str
    name: str
    status: str
    lora_id: str | None = None
    voice_id: str | None = None
    voice_clone_engine: str | None = None  # the engine of the profile's cloned voice; None: its pace only
    portrait_uri: str | None = None
    created_at: datetime


class JobRecord(ApiModel):
    """`GET /api/jobs/{jobId}`: the enriched job record."""

    job_id: str
    user_id: str
    mode: JobMode
    variant: Variant
    topic: str
    status: JobState
    created_at: datetime
    graph: GraphSpec
    script_summary: str | None = None
    script_source: str | None = None
    script_edited: bool = Field(default=False, description="you edited the script in review (GET …/script has both)")
    profile: ProfilePublic | None = None
    video: ArtifactPublic | None = None
    artifacts: list[ArtifactPublic] = Field(default_factory=list)
    error: JobError | None = None
    run_id: str | None = None
    temporal_ui_url: str | None = None
    # Stage id → runtime id as the GPU manifest advertises it (`{"speech": "piper:en_US-joe-medium"}`);
    # keys are stage ids, not camelCased; empty until a render registered, and for older jobs.
    rendering: dict[str, str] = Field(default_factory=dict)
    preset: str | None = Field(default=None, description="the preset the body named; the job ran with it applied")


# `not_requested`: submitted without `options.review`; `pending`: the script is not written yet;
# `cancelled`: the job was cancelled while it waited.
ReviewStatePublic = Literal["not_requested", "pending", "waiting", "approved", "rejected", "timed_out", "cancelled"]


class ScriptReviewIn(ApiModel):
    """`POST /api/jobs/{jobId}/script`: edit, approve or reject the script a job waits with."""

    action: Literal["edit", "approve", "reject"]
    narrative: str | None = Field(
        default=None,
        min_length=1,
        max_length=5000,
        description="the new narrative: needed by `edit`, optional with `approve`",
    )
    stage: str | None = Field(default=None, min_length=1, max_length=2000, description="the new scene description")
    reason: str | None = Field(default=None, max_length=500, description="why the script is rejected (`reject` only)")


class ScriptReviewPublic(ApiModel):
    """A job's script and where its review stands (`GET`/`POST /api/jobs/{jobId}/script`)."""

    job_id: str
    state: ReviewStatePublic
    stage: str | None = None
    narrative: str | None = None
    source: str | None = Field(default=None, description="who wrote the script: `user`, `offline`, `ollama:<model>`")
    edited: bool = False
    original_stage: str | None = None
    original_narrative: str | None = Field(default=None, description="what the writer wrote, once you edited it")
    reason: str | None = None
    duration_seconds: float
    words_per_minute: float | None = Field(default=None, description="the voice's pace the length estimate uses")
    estimated_seconds: float | None = Field(default=None, description="how long the narrative takes to say")
    spoken_seconds_range: list[float] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[shortest, longest]: the spoken lengths the video can hold; a narrative outside is refused",
    )
    waiting_until: datetime | None = Field(default=None, description="when a waiting review times out")


class JobSummary(ApiModel):
    """One row of `GET /api/jobs`."""

    job_id: str
    mode: JobMode
    variant: Variant
    topic: str
    status: JobState
    created_at: datetime


class JobsPublic(ApiModel):
    """A page of the caller's jobs, newest first."""

    data: list[JobSummary]
    count: int
    next_cursor: str | None = None


class ProfilesPublic(ApiModel):
    """The caller's profiles."""

    data: list[ProfilePublic]
    count: int


class UploadedFile(ApiModel):
    """One stored upload."""

    uri: str
    filename: str
    content_type: str
    size_bytes: int


class UploadsPublic(ApiModel):
    """Answer to `POST /api/uploads`."""

    data: list[UploadedFile]


class SessionRequest(ApiModel):
    """`POST /api/session`: exchange an API key for an HttpOnly session cookie (the web page)."""

    api_key: str = Field(min_length=8, max_length=200)


class Caller(ApiModel):
    """`GET /api/session`: who the credential belongs to."""

    user_id: str
    is_admin: bool
    expires_at: datetime | None = None  # the session's end; None for an API key


class UserCreate(ApiModel):
    """`POST /api/admin/users`."""

    user_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    admin: bool = False
    key_name: str | None = Field(default=None, max_length=100)


class UserCreated(ApiModel):
    """The new user's first API key, shown once."""

    user_id: str
    api_key: str


class WorkerPublic(ApiModel):
    """One worker's last advertised manifest (`GET /api/admin/workers`)."""

    worker_id: str
    plane: str
    task_queue: str
    last_seen: datetime
    live: bool
    manifest: dict[str, Any]


class WorkersPublic(ApiModel):
    """Every worker that ever advertised, newest first."""

    data: list[WorkerPublic]
    count: int


class UploadedObject(ApiModel):
    """One of the caller's stored uploads."""

    uri: str
    size_bytes: int
    uploaded_at: datetime


class UploadsListed(ApiModel):
    """`GET /api/uploads`."""

    data: list[UploadedObject]
    count: int


# --- batches -------------------------------------------------------------------------------------

BatchTopic = Annotated[str, Field(min_length=1, max_length=500)]


class BatchCommon(GenerateRequest):
    """The generate-body fields every job of a `topics` × `variants` × `aspectRatios` batch shares."""

    topic: str = Field(default="", description="leave it out: each job's topic comes from `topics`")

    @field_validator("topic")
    @classmethod
    def _topic_comes_from_topics(cls, value: str) -> str:
        if value:
            raise ValueError("each job's topic comes from `topics`; leave `topic` out of `common`")
        return value


class BatchRequest(ApiModel):
    """`POST /api/batches`: several generate jobs at once, given as `items` or as a product.

    Either `items` (generate bodies), or `topics` with optional `variants`, `aspectRatios` and
    `common`: one job per topic × variant × aspect ratio, in that order, each with `common`'s fields.
    """

    items: list[GenerateRequest] | None = Field(default=None, min_length=1, description="one generate body per job")
    topics: list[BatchTopic] | None = Field(default=None, min_length=1, description="one or more jobs per topic")
    variants: list[Variant] | None = Field(
        default=None, min_length=1, description="each topic in each of these pipelines (default: `common.variant`)"
    )
    aspect_ratios: list[AspectRatio] | None = Field(
        default=None, min_length=1, description="each topic in each of these shapes (default: `common.options`)"
    )
    common: BatchCommon | None = Field(default=None, description="the other generate-body fields of every job")


class BatchAccepted(ApiModel):
    """Answer to a batch submission: its id and its jobs' ids, in the order of the request."""

    batch_id: str
    job_ids: list[str]


class BatchJob(ApiModel):
    """One job of a batch: what it renders, its state, and where to follow it."""

    job_id: str
    topic: str
    variant: Variant
    aspect_ratio: str
    status: JobState
    status_url: str = Field(description="`GET` its live status (`/ws/jobs/{jobId}` streams it)")
    record_url: str = Field(description="`GET` its record: script, artifacts, video")


class BatchSummary(ApiModel):
    """A batch and its jobs' states: queued while none started, running while any is open."""

    batch_id: str
    created_at: datetime
    status: JobState
    counts: dict[JobState, int] = Field(description="how many of its jobs are in each state")
    job_ids: list[str]


class BatchPublic(BatchSummary):
    """`GET /api/batches/{batchId}`: the batch's aggregate status and each job."""

    jobs: list[BatchJob]
    temporal_ui_url: str | None = None


class BatchesPublic(ApiModel):
    """A page of the caller's batches, newest first."""

    data: list[BatchSummary]
    count: int
    next_cursor: str | None = None


class BatchCancelled(ApiModel):
    """Answer to `POST /api/batches/{batchId}/cancel`: the jobs asked to stop (the others had finished)."""

    batch_id: str
    job_ids: list[str]
