"""Upload retention: uploads that no profile uses and no recent job names are deleted once old.

Profiles keep their training images, clips and portrait for as long as the profile exists
(`DELETE /api/profiles/{id}` removes them); everything else a user uploaded is only needed
until the job that used it ran, so it expires after the retention period.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import Job, Profile, utcnow
from core.storage import ObjectStore, s3_uri
from schemas.names import UPLOADS_BUCKET
from schemas.tasks import ExpireResult


async def uploads_in_use(sessions: async_sessionmaker[AsyncSession], since: timedelta) -> set[str]:
    """Upload URIs a profile holds or a job submitted within `since` names."""
    in_use: set[str] = set()
    async with sessions() as session:
        for images, audio, portrait in await session.execute(
            select(Profile.images, Profile.audio, Profile.portrait_uri)
        ):
            in_use.update([*images, *audio, *([portrait] if portrait else [])])
        recent = select(Job.request).where(Job.created_at >= utcnow() - since)
        for request in (await session.scalars(recent)).all():
            in_use.update(uploads_named(request))
    return in_use


def uploads_named(request: dict[str, Any]) -> list[str]:
    """The upload URIs a stored job request names: training images and clips, the portrait, scene media, music."""
    options = request.get("options") or {}
    music = options.get("music")
    named = [*request.get("images", []), *request.get("audio", []), *options.get("media", [])]
    named += [uri for uri in (request.get("portrait"), music) if isinstance(uri, str) and uri.startswith("s3://")]
    return named


async def expire_uploads(
    sessions: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    retention: timedelta,
    job_window: timedelta | None = None,
) -> ExpireResult:
    """Delete every upload older than `retention` that nothing uses.

    In use: held by a profile, or named by a job submitted within `job_window` (default `retention`).
    """
    cutoff = utcnow() - retention
    old = [o for o in await asyncio.to_thread(store.list_objects, UPLOADS_BUCKET) if o.last_modified < cutoff]
    if not old:
        return ExpireResult()
    in_use = await uploads_in_use(sessions, since=job_window if job_window is not None else retention)
    expired = [uri for uri in (s3_uri(UPLOADS_BUCKET, o.key) for o in old) if uri not in in_use]
    for uri in expired:
        await asyncio.to_thread(store.delete, uri)
    return ExpireResult(deleted=expired, kept_in_use=len(old) - len(expired))
