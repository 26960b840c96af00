"""Control-plane activities (CPU queue): script, profiles, pipeline selection, artifact registry."""

import asyncio
import logging
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.script_writer import ScriptRejected, ScriptWriter
from core import repo
from core.db import Profile, utcnow
from core.storage import ObjectStore, parse_s3_uri
from schemas import names
from schemas.tasks import (
    ArtifactRef,
    Pipeline,
    ProfileInput,
    ProfileRef,
    RegisterInput,
    RegisterResult,
    ScriptInput,
    ScriptResult,
    SelectInput,
)

logger = logging.getLogger(__name__)


def profile_ref(row: Profile) -> ProfileRef:
    """The node-facing view of a profile row."""
    return ProfileRef(
        id=row.id, name=row.name, lora_id=row.lora_id, voice_id=row.voice_id, portrait_uri=row.portrait_uri
    )


class ControlActivities:
    """CPU activities with their clients injected, so tests can pass fakes or real servers."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ObjectStore, writer: ScriptWriter) -> None:
        self._sessions = sessions
        self._store = store
        self._writer = writer

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The database sessions these activities use."""
        return self._sessions

    @property
    def store(self) -> ObjectStore:
        """The object store these activities use."""
        return self._store

    @activity.defn(name=names.GENERATE_SCRIPT)
    async def generate_script(self, inp: ScriptInput) -> ScriptResult:
        """Use the user's script if given, else ask the configured writer (seed §4.2)."""
        if inp.given is not None:
            stage = inp.given.stage or f"A presenter in a bright studio talking about {inp.topic}."
            return ScriptResult(script=inp.given.model_copy(update={"stage": stage}), source="user")
        try:
            script = await self._writer.write(inp)
        except ScriptRejected as err:
            raise ApplicationError(str(err), type=names.ERR_SCRIPT_INVALID, non_retryable=True) from err
        activity.logger.info("script written by %s (%d words)", self._writer.source, len(script.narrative.split()))
        return ScriptResult(script=script, source=self._writer.source)

    @activity.defn(name=names.RESOLVE_PROFILE)
    async def resolve_or_create_profile(self, inp: ProfileInput) -> ProfileRef:
        """Reuse the user's profile of that name or create it; training is about to start."""
        if not inp.consent:  # the API refuses such requests; this guards every other way in
            raise ApplicationError(
                "training on faces and voices needs the user's consent",
                type=names.ERR_CONSENT_MISSING,
                non_retryable=True,
            )
        async with self._sessions.begin() as session:
            row = await repo.resolve_or_create_profile(session, inp.user_id, inp.profile_name, inp.images, inp.audio)
            portrait = row.portrait_uri or (inp.images[0] if inp.images else None)
            row = (
                await repo.update_profile(
                    session,
                    row.id,
                    status="training",
                    portrait_uri=portrait,
                    images=inp.images,
                    audio=inp.audio,
                    error=None,
                    consent_at=utcnow(),
                )
                or row
            )
            await repo.update_job_summary(session, inp.job_id, profile_id=row.id)
        return profile_ref(row)

    @activity.defn(name=names.LOAD_PROFILE)
    async def load_existing_profile(self, inp: ProfileInput) -> ProfileRef:
        """Load the requested profile; no profile id means the built-in presenter and voice."""
        if inp.profile_id is None:
            return ProfileRef()
        async with self._sessions.begin() as session:
            row = await repo.get_profile(session, inp.user_id, inp.profile_id)
            if row is None:
                raise ApplicationError(
                    f"profile '{inp.profile_id}' does not exist", type=names.ERR_PROFILE_NOT_FOUND, non_retryable=True
                )
            if row.status != "ready":
                raise ApplicationError(
                    f"profile '{row.id}' is {row.status}, not ready: retrain it first",
                    type=names.ERR_PROFILE_NOT_FOUND,
                    non_retryable=True,
                )
            await repo.update_job_summary(session, inp.job_id, profile_id=row.id)
        return profile_ref(row)

    @activity.defn(name=names.SELECT_PIPELINE)
    async def select_pipeline(self, inp: SelectInput) -> Pipeline:
        """Fix the variant and which face is animated (the request's portrait, the profile's, or the presenter)."""
        face_source: Literal["request", "profile", "presenter"]
        if inp.portrait:
            face, face_source = inp.portrait, "request"
        elif inp.profile.portrait_uri:
            face, face_source = inp.profile.portrait_uri, "profile"
        else:
            face, face_source = None, "presenter"
        return Pipeline(variant=inp.requested_variant, portrait_uri=face, face_source=face_source)

    @activity.defn(name=names.REGISTER_OUTPUTS)
    async def register_outputs(self, inp: RegisterInput) -> RegisterResult:
        """Write the job's artifact rows (upsert by job, kind, key) and its final summary."""
        rows = []
        for node_id, assets in inp.outputs.items():
            for asset in assets:
                if not await asyncio.to_thread(self._store.exists, asset.uri):
                    raise ApplicationError(
                        f"output {asset.uri} of node {node_id} is missing from storage", type=names.ERR_MISSING_OUTPUT
                    )
                _bucket, key = parse_s3_uri(asset.uri)
                rows.append({"node_id": node_id, "kind": asset.kind, "key": key, "uri": asset.uri,
                             "content_type": asset.content_type, "size_bytes": asset.size_bytes, "partial": inp.partial})  # fmt: skip
        async with self._sessions.begin() as session:
            saved = await repo.upsert_artifacts(session, inp.job_id, inp.user_id, rows)
            await repo.update_job_summary(session, inp.job_id, **_summary(inp))
            if inp.profile and inp.profile.id:
                await _settle_profile(session, inp)
        return RegisterResult(
            artifacts=[ArtifactRef(id=a.id, kind=a.kind, node_id=a.node_id, uri=a.uri) for a in saved]
        )


def _summary(inp: RegisterInput) -> dict[str, object]:
    """The job's final summary fields; `rendering` is `{}` for videos from histories older than the field."""
    fields: dict[str, object] = {"finished_at": utcnow(), "error": inp.error, "failed_stage": inp.failed_stage}
    if inp.script:
        fields |= {"script": inp.script.script.model_dump(), "script_source": inp.script.source}
    if inp.video:
        fields |= {
            "video_uri": inp.video.uri,
            "thumbnail_uri": inp.video.thumbnail_uri,
            "duration": inp.video.duration,
            "rendering": inp.video.rendering,
        }
    return fields


async def _settle_profile(session: AsyncSession, inp: RegisterInput) -> None:
    """Training results land on the profile; a failed training marks it unusable."""
    assert inp.profile is not None and inp.profile.id is not None
    trained = {k: v for k, v in {"lora_id": inp.profile.lora_id, "voice_id": inp.profile.voice_id}.items() if v}
    training_failed = inp.failed_stage in {"train_lora", "train_voice"}
    if training_failed:
        await repo.update_profile(session, inp.profile.id, status="failed", error=inp.error, **trained)
    elif trained:
        await repo.update_profile(session, inp.profile.id, status="ready", error=None, **trained)
