"""Workers advertise their manifest in Postgres; the API reads the live intersection per plane."""

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import repo
from schemas.capabilities import CapabilitiesManifest, WorkerManifest, constraints_of, intersect

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL_SECONDS = 30
LIVE_WINDOW_SECONDS = 120


async def publish(sessions: async_sessionmaker[AsyncSession], manifest: WorkerManifest) -> None:
    """Upsert `manifest` once (sets `last_seen`)."""
    async with sessions.begin() as session:
        await repo.upsert_manifest(session, manifest)


async def publish_forever(
    sessions: async_sessionmaker[AsyncSession],
    manifest: Callable[[], WorkerManifest],
    interval: float = PUBLISH_INTERVAL_SECONDS,
) -> None:
    """Re-publish every `interval` seconds; a failed publish is logged and retried next round."""
    while True:
        try:
            await publish(sessions, manifest())
        except Exception:  # the database may be restarting; the worker must keep working
            logger.exception("could not publish the worker manifest")
        await asyncio.sleep(interval)


async def live_capabilities(sessions: async_sessionmaker[AsyncSession]) -> CapabilitiesManifest:
    """What every worker seen in the last two minutes can do, per plane."""
    async with sessions() as session:
        manifests = await repo.live_manifests(session, max_age_seconds=LIVE_WINDOW_SECONDS)
    cpu = [m for m in manifests if m.plane == "cpu"]
    gpu = [m for m in manifests if m.plane == "gpu"]
    return CapabilitiesManifest(cpu=intersect(cpu), gpu=intersect(gpu), constraints=constraints_of(gpu))
