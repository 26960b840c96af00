"""The retention activity, run by the `RetentionWorkflow` schedule on the CPU queue."""

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.retention import expire_uploads
from core.storage import ObjectStore
from schemas import names
from schemas.tasks import ExpireInput, ExpireResult


class RetentionActivities:
    """Deletes personal data that outlived its retention period."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], store: ObjectStore) -> None:
        self._sessions = sessions
        self._store = store

    @activity.defn(name=names.EXPIRE_UPLOADS)
    async def expire_uploads(self, inp: ExpireInput) -> ExpireResult:
        """Delete uploads older than the retention period that no profile or recent job uses."""
        result = await expire_uploads(self._sessions, self._store, timedelta(hours=inp.retention_hours))
        activity.logger.info("expired %d uploads, kept %d in use", len(result.deleted), result.kept_in_use)
        return result
