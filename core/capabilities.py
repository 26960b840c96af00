"""Workers advertise their manifest in Postgres; the API reads the live intersection per plane."""

import asyncio
import logging
import time
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


class CapabilitiesCache:
    """The live capabilities, read from Postgres at most every `ttl` seconds (one read for a burst).

    A submission refused against the cached copy (422, 503) may ask for a fresh one: `refreshed`
    re-reads it when the copy is older than `min_age`, so a worker that just came up is seen at
    once while a burst of bad requests costs at most one read per `min_age`.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float = 5.0, min_age: float = 1.0) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._min_age = min_age
        self._lock = asyncio.Lock()
        self._value: CapabilitiesManifest | None = None
        self._read_at = 0.0

    async def get(self) -> CapabilitiesManifest:
        """The cached capabilities, re-read once they are `ttl` old."""
        return await self._read(self._ttl)

    async def refreshed(self) -> CapabilitiesManifest | None:
        """Fresh capabilities when the cached copy is older than `min_age`; None when it is that fresh already."""
        if self._value is not None and time.monotonic() - self._read_at < self._min_age:
            return None
        return await self._read(self._min_age)

    async def _read(self, max_age: float) -> CapabilitiesManifest:
        async with self._lock:  # concurrent callers wait for the one read instead of each reading
            if self._value is None or time.monotonic() - self._read_at >= max_age:
                self._value = await live_capabilities(self._sessions)
                self._read_at = time.monotonic()
            return self._value
