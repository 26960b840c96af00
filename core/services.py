"""Process start-up: the long-lived clients (database, object storage, Temporal) every process opens the same way."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime

from core import db
from core.capabilities import CapabilitiesCache
from core.settings import Settings
from core.storage import ObjectStore
from core.temporal import connect


@dataclass
class Services:
    """Long-lived clients, created once per process by `open_services`."""

    sessions: async_sessionmaker[AsyncSession]
    store: ObjectStore
    temporal: Client
    engine: AsyncEngine  # behind `sessions`; disposed when the services close
    capabilities_ttl: float = 5.0

    def __post_init__(self) -> None:
        self.capabilities = CapabilitiesCache(self.sessions, ttl=self.capabilities_ttl)


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    give_up_after: timedelta | None = None,
    migrate: bool = True,
) -> AsyncIterator[Services]:
    """Migrate the database, then connect to Postgres, object storage and Temporal; dispose the engine on exit.

    Args:
        settings: where the servers are.
        runtime: the Temporal runtime of the client (None: the SDK's default one).
        give_up_after: how long one Temporal call retries an unavailable server (None: the SDK's default).
        migrate: upgrade the schema first (idempotent and locked, so every process may).

    Yields:
        The services; blocking start-up steps (migration, bucket creation) run in threads.
    """
    if migrate:
        await asyncio.to_thread(db.migrate, settings.database.url)
    engine = db.create_async_engine(settings.database.url)
    try:
        store = ObjectStore(settings.storage)
        await asyncio.to_thread(store.ensure_buckets)
        temporal = await connect(settings.temporal, runtime, give_up_after)
        yield Services(sessions=db.session_factory(engine), store=store, temporal=temporal, engine=engine,
                       capabilities_ttl=settings.api.capabilities_cache_seconds)  # fmt: skip
    finally:
        await engine.dispose()
