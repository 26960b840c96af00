"""Submitting a job: check references, plan against live capabilities, record, start the workflow."""

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from api import admission, views
from api.deps import Services
from api.errors import FieldError
from api.media_checks import SCENE_MEDIA_TYPES
from core import repo
from core.db import Job, Profile
from core.netguard import non_public_address
from core.settings import Settings
from core.storage import ObjectStore, parse_s3_uri
from schemas import names
from schemas.api import GenerateRequest, PlanResponse, PresetIn, TrainRequest
from schemas.capabilities import CapabilitiesManifest
from schemas.media import MUSIC_BEDS
from schemas.plan import GraphSpec
from schemas.tasks import JobRequest, PipelineInput, RenderSettings, Script
from workflows.planner import PlanningError, plan, resolve_request

logger = logging.getLogger(__name__)

Body = TypeVar("Body", bound=GenerateRequest | TrainRequest)
PRESET_FIELDS: Final = ("variant", "voice", "language")  # besides `options`, merged option by option


async def submit(
    body: GenerateRequest | TrainRequest, user_id: str, services: Services, settings: Settings, key: str | None
) -> str:
    """Check, plan and start the job a body asks for; returns its id (an earlier one's when `key` repeats)."""
    check_caller(body, user_id)
    body = await with_preset(body, user_id, services)
    request = to_job_request(body)
    profile = await check_references(request, user_id, services)
    request, graph = await plan_submission(body, request, profile, services)
    return await start_job(request, graph, user_id, services, settings, idempotency_key=key, preset=body.preset)


async def preview(body: GenerateRequest | TrainRequest, user_id: str, services: Services) -> PlanResponse:
    """The graph (and voice and duration, when it renders) that submitting the body would run."""
    check_caller(body, user_id)
    body = await with_preset(body, user_id, services)
    request = to_job_request(body)
    profile = await check_references(request, user_id, services)
    resolved, graph = await plan_submission(body, request, profile, services)
    renders = resolved.mode != "train_only"
    return PlanResponse(
        graph=graph,
        voice=resolved.voice if renders else None,
        duration_seconds=resolved.options.duration_seconds if renders else None,
    )


async def resubmit(row: Job, services: Services, settings: Settings) -> str:
    """Start a new job with the stored request of `row`, planned again under the live capabilities."""
    request = JobRequest.model_validate(row.request)
    profile = await check_references(request, row.user_id, services)
    resolved, graph = await plan_request(request, profile, services)
    new_id = await start_job(resolved, graph, row.user_id, services, settings, preset=row.preset)
    logger.info("job %s resubmitted as %s", row.id, new_id)
    return new_id


def apply_preset(body: Body, preset: PresetIn) -> Body:
    """The body with the preset's fields filled in where the body left them out.

    A field the body sets (`model_fields_set`) wins; `options` merge one by one, so an option the
    body sets overrides only that option of the preset's. The result's fields set are the body's
    plus the preset's (a preset's `durationSeconds` counts as chosen, not as a default).

    Raises:
        pydantic.ValidationError: the merged body is not valid.
    """
    data: dict[str, Any] = body.model_dump(exclude_unset=True, by_alias=False)
    for name in PRESET_FIELDS:
        value = getattr(preset, name)
        if value is not None and name not in body.model_fields_set:
            data[name] = value
    if preset.options is not None:
        options = preset.options.model_dump(exclude_unset=True, by_alias=False)
        if "options" in body.model_fields_set:
            options.update(body.options.model_dump(exclude_unset=True, by_alias=False))
        data["options"] = options
    # `model_validate` on the body's own class: mypy widens it to the bound, so say what it is.
    return cast(Body, type(body).model_validate(data))


async def with_preset(body: Body, user_id: str, services: Services) -> Body:
    """The body with the caller's preset it names applied (`apply_preset`); 422 naming `preset` when unknown."""
    if body.preset is None:
        return body
    async with services.sessions() as session:
        row = await repo.get_preset(session, user_id, body.preset)
    if row is None:
        raise FieldError(("body", "preset"), f"preset '{body.preset}' does not exist (see GET /api/presets)")
    try:
        return apply_preset(body, views.preset_in(row))
    except ValidationError as err:
        raise FieldError(("body", "preset"), f"preset '{body.preset}' does not fit this request: {err}") from err


def to_job_request(body: GenerateRequest | TrainRequest) -> JobRequest:
    """The HTTP body as the snake_case request the workflow carries."""
    script = (
        Script(
            stage=body.script.stage or f"A presenter talking about {body.topic or 'this topic'}.",
            narrative=body.script.narrative,
        )
        if body.script
        else None
    )
    extra = (
        {
            "images": body.images,
            "audio": body.audio,
            "profile_name": body.profile_name,
            "training_preset": body.training_preset,
            "consent": body.consent,
        }
        if isinstance(body, TrainRequest)
        else {"profile_id": body.profile_id}
    )
    return JobRequest(
        mode=body.mode,
        topic=body.topic or _training_topic(body),
        style=body.style,
        variant=body.variant,
        portrait=body.portrait,
        script=script,
        language=body.language,
        voice=body.voice,
        options=RenderSettings(**body.options.model_dump(by_alias=False)),
        callback_url=str(body.callback_url) if body.callback_url else None,
        **extra,
    )


def check_caller(body: GenerateRequest | TrainRequest, user_id: str) -> None:
    """The body may not speak for another user, and training needs the user's consent."""
    if body.user_id is not None and body.user_id != user_id:
        raise FieldError(("body", "userId"), "does not match the API key's user; leave it out", status_code=403)
    if isinstance(body, TrainRequest) and not body.consent:
        raise FieldError(
            ("body", "consent"),
            "training on faces and voices needs consent: set it to true to confirm you have the right "
            "to use these images and clips and agree to train a model on them",
        )


def _training_topic(body: GenerateRequest | TrainRequest) -> str:
    name = body.profile_name if isinstance(body, TrainRequest) else None
    return f"training {name}" if name else "profile training"


async def check_references(request: JobRequest, user_id: str, services: Services) -> Profile | None:
    """Every `s3://` the body names must be the caller's upload and exist; a profile must be theirs and ready.

    Returns:
        The request's profile, or None when it names none.
    """
    refs: list[tuple[tuple[str | int, ...], str]] = (
        [(("body", "portrait"), request.portrait)] if request.portrait else []
    )
    refs += [(("body", "images", i), uri) for i, uri in enumerate(request.images)]
    refs += [(("body", "audio", i), uri) for i, uri in enumerate(request.audio)]
    media = [(("body", "options", "media", i), uri) for i, uri in enumerate(request.options.media)]
    for loc, uri in refs + media:
        await _check_upload(services.store, user_id, loc, uri)
    for loc, uri in media:
        if Path(parse_s3_uri(uri)[1]).suffix.lower() not in SCENE_MEDIA_TYPES:
            raise FieldError(loc, f"{uri} is not an image or a video clip ({', '.join(SCENE_MEDIA_TYPES)})")
    if request.options.music not in MUSIC_BEDS:
        loc = ("body", "options", "music")
        await _check_upload(services.store, user_id, loc, request.options.music)
        if not parse_s3_uri(request.options.music)[1].startswith(f"{user_id}/{names.MUSIC_UPLOAD_PREFIX}"):
            raise FieldError(
                loc, "not a music upload: upload it with purpose=music and rightsConfirmed=true (POST /api/uploads)"
            )
    if request.profile_id:
        async with services.sessions() as session:
            profile = await repo.get_profile(session, user_id, request.profile_id)
        if profile is None:
            raise FieldError(("body", "profileId"), f"profile '{request.profile_id}' does not exist")
        if profile.status != "ready":
            raise FieldError(
                ("body", "profileId"), f"profile '{profile.id}' is {profile.status}, not ready: train it first"
            )
        return profile
    return None


async def _check_upload(store: ObjectStore, user_id: str, loc: tuple[str | int, ...], uri: str) -> None:
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as err:
        raise FieldError(loc, str(err)) from err
    if bucket != names.UPLOADS_BUCKET or not key.startswith(f"{user_id}/"):
        raise FieldError(loc, f"{uri} is not one of your uploads (use POST /api/uploads)", status_code=403)
    if not await asyncio.to_thread(store.exists, uri):
        raise FieldError(loc, f"{uri} does not exist")


async def plan_request(
    request: JobRequest, profile: Profile | None, services: Services
) -> tuple[JobRequest, GraphSpec]:
    """A stored request (a resubmission) resolved again under the live capabilities, and its graph."""
    return await _planned(services, request, profile, duration_given=True)


async def plan_submission(
    body: GenerateRequest | TrainRequest, request: JobRequest, profile: Profile | None, services: Services
) -> tuple[JobRequest, GraphSpec]:
    """The request as the workflow will carry it (voice chosen, a user script's duration fitted) and its graph.

    A user script sets the duration only when the body left `durationSeconds` out; one the user
    chose is checked against the script instead.
    """
    duration_given = "duration_seconds" in body.options.model_fields_set
    return await _planned(services, request, profile, duration_given=duration_given)


async def _planned(
    services: Services, request: JobRequest, profile: Profile | None, *, duration_given: bool
) -> tuple[JobRequest, GraphSpec]:
    """Resolve and plan against the cached capabilities; once more against fresh ones when that is refused.

    A worker that came up (or changed what it offers) within the cache's lifetime is then seen at
    once; the refusal stands when the capabilities are fresh already.
    """
    clone = profile.voice_clone_engine if profile else None

    def resolved_and_planned(caps: CapabilitiesManifest) -> tuple[JobRequest, GraphSpec]:
        resolved = resolve_request(request, caps, duration_given=duration_given, profile_clone=clone)
        return resolved, plan(resolved, caps, profile_clone=clone)

    try:
        return resolved_and_planned(await services.capabilities.get())
    except PlanningError:
        fresh = await services.capabilities.refreshed()
        if fresh is None:
            raise
    return resolved_and_planned(fresh)


async def start_job(
    request: JobRequest,
    graph: GraphSpec,
    user_id: str,
    services: Services,
    settings: Settings,
    idempotency_key: str | None = None,
    preset: str | None = None,
) -> str:
    """Insert the job row, admit it (idempotency, per-user cap), then start `PipelineWorkflow`.

    Returns the job id: the new job's, or the earlier job's when `idempotency_key` repeats.
    """
    await check_callback(request, settings)
    if idempotency_key is not None:
        async with services.sessions() as session:
            earlier = await repo.get_job_by_idempotency_key(session, user_id, idempotency_key)
        if earlier is not None:
            return admission.replay(earlier, request)
    job_id = new_job_id()
    try:
        async with services.sessions.begin() as session:
            await insert_job_row(
                session, job_id, user_id, request, graph, idempotency_key=idempotency_key, preset=preset
            )
    except IntegrityError:
        if idempotency_key is None:
            raise
        async with services.sessions() as session:  # a concurrent submission with the same key won
            earlier = await repo.get_job_by_idempotency_key(session, user_id, idempotency_key)
        if earlier is None:
            raise
        return admission.replay(earlier, request)
    job = pipeline_input(job_id, user_id, request, graph, settings)
    try:
        await admit(services, settings, user_id, reviews=int(request.options.review))
        await _start_workflow(services.temporal, job)
    except BaseException:
        # The job never started: drop its row so no job exists without a workflow.
        async with services.sessions.begin() as session:
            await repo.delete_job(session, job_id)
        raise
    return job_id


async def check_callback(request: JobRequest, settings: Settings) -> None:
    """A `callbackUrl` needs callbacks enabled and (unless allowed otherwise) a public address."""
    if request.callback_url and settings.callbacks.secret is None:
        raise FieldError(("body", "callbackUrl"), "completion callbacks are not enabled on this server")
    if request.callback_url and not settings.callbacks.allow_private_hosts:
        private = await asyncio.to_thread(non_public_address, request.callback_url)
        if private is not None:
            raise FieldError(("body", "callbackUrl"), f"resolves to {private}, which is not a public address")


def new_job_id() -> str:
    """A fresh job id (`job-<16 hex>`), also its workflow id."""
    return f"job-{uuid.uuid4().hex[:16]}"


async def insert_job_row(
    session: AsyncSession,
    job_id: str,
    user_id: str,
    request: JobRequest,
    graph: GraphSpec,
    *,
    idempotency_key: str | None = None,
    preset: str | None = None,
    batch_id: str | None = None,
) -> None:
    """Insert the `jobs` row of a job about to start (in the caller's transaction)."""
    await repo.insert_job(session, job_id=job_id, user_id=user_id, mode=request.mode, variant=request.variant,
                          topic=request.topic, request=request, graph=graph, profile_id=request.profile_id,
                          idempotency_key=idempotency_key, preset=preset, batch_id=batch_id)  # fmt: skip


def pipeline_input(
    job_id: str, user_id: str, request: JobRequest, graph: GraphSpec, settings: Settings
) -> PipelineInput:
    """The `PipelineWorkflow` input of a job: its request and graph, and the queues and timeouts from settings."""
    return PipelineInput(job_id=job_id, user_id=user_id, request=request, graph=graph,
                         cpu_task_queue=settings.temporal.cpu_task_queue, gpu_task_queue=settings.temporal.gpu_task_queue,
                         review_timeout_seconds=settings.review.timeout_hours * 3600)  # fmt: skip


async def admit(services: Services, settings: Settings, user_id: str, *, reviews: int) -> None:
    """429 when the user is at the open-job cap, or when `reviews` more jobs with a review would pass its cap."""
    await admission.check_capacity(
        services, user_id, settings.api.max_concurrent_jobs, settings.api.retry_after_seconds
    )
    if reviews:
        await admission.check_reviews(
            services, user_id, settings.review.max_waiting, settings.api.retry_after_seconds, adding=reviews
        )


def search_attributes(job: PipelineInput) -> dict[str, str]:
    """The keyword search attributes a job starts with (name → value): what the Web UI filters on."""
    request = job.request
    attrs = {names.SA_JOB_MODE: request.mode, names.SA_VARIANT: request.variant, names.SA_USER_ID: job.user_id}
    if request.profile_id:
        attrs[names.SA_PROFILE_ID] = request.profile_id
    if any(n.task == names.APPROVE_SCRIPT for n in job.graph.nodes):
        attrs[names.SA_REVIEW_STATE] = "pending"
    return attrs


def summary(job: PipelineInput) -> str:
    """The line the Web UI shows for the job's workflow."""
    return f"{job.graph.graph_id} · {job.request.variant} · {job.request.topic[:120]}"


async def _start_workflow(client: Client, job: PipelineInput) -> None:
    attrs = [SearchAttributePair(SearchAttributeKey.for_keyword(k), v) for k, v in search_attributes(job).items()]
    await client.start_workflow(
        names.PIPELINE_WORKFLOW,
        job,
        id=job.job_id,
        task_queue=job.cpu_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(attrs),
        static_summary=summary(job),
    )
