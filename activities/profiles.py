"""`profiles.*`: resolve (or create) the profile a training job trains, or load the one a job renders with."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import repo
from core.db import Profile, utcnow
from schemas import names
from schemas.tasks import ProfileInput, ProfileRef


def profile_ref(row: Profile) -> ProfileRef:
    """The node-facing view of a profile row."""
    return ProfileRef(id=row.id, name=row.name, lora_id=row.lora_id, voice_id=row.voice_id,
                      voice_clone_engine=row.voice_clone_engine, portrait_uri=row.portrait_uri)  # fmt: skip


class ProfileActivities:
    """The profile activities; `ControlActivities` provides the database sessions."""

    _sessions: async_sessionmaker[AsyncSession]

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
