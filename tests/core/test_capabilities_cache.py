"""The API's capabilities cache: one Postgres read per `ttl` for a burst, and a refresh on a refusal at most once per `min_age`."""

import asyncio

import pytest

from core import capabilities as module
from core.capabilities import CapabilitiesCache
from schemas.capabilities import CapabilitiesManifest, Constraints


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    counted: list[int] = []

    async def live(_sessions: object) -> CapabilitiesManifest:
        counted.append(1)
        await asyncio.sleep(0.01)
        return CapabilitiesManifest(
            cpu=None, gpu=None, constraints=Constraints(max_duration_seconds=len(counted), resolutions=[])
        )

    monkeypatch.setattr(module, "live_capabilities", live)
    return counted


async def test_a_burst_reads_once_and_an_expired_copy_is_read_again(reads) -> None:
    cache = CapabilitiesCache(sessions=None, ttl=0.3)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert len(reads) == 1 and {a.constraints.max_duration_seconds for a in answers} == {1}
    await asyncio.sleep(0.35)
    assert (await cache.get()).constraints.max_duration_seconds == 2 and len(reads) == 2


async def test_a_refusal_refreshes_at_most_once_per_min_age(reads) -> None:
    cache = CapabilitiesCache(sessions=None, ttl=60, min_age=0.3)  # type: ignore[arg-type]
    await cache.get()
    assert await cache.refreshed() is None  # just read: the refusal stands
    await asyncio.sleep(0.35)
    fresh = await asyncio.gather(*(cache.refreshed() for _ in range(20)))
    assert len(reads) == 2 and {f.constraints.max_duration_seconds for f in fresh if f} == {2}
