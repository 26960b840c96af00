"""Database: the SQLAlchemy models (users, credentials, profiles, presets, batches, jobs, artifacts, worker capabilities), engines, migrations."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    MetaData,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _sa_create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
PROFILE_STATUSES: Final = ("new", "training", "ready", "failed")
CREDENTIAL_KINDS: Final = ("api_key", "session")

# Any constant works as long as every process uses the same one: it names the advisory lock
# that serialises `migrate()` across processes starting at the same time.
_MIGRATE_LOCK_KEY: Final = 0x6D7973_70696E  # "myspin"

# Deterministic constraint names, so the hand-written migration and the models agree.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A fresh row id such as `prof-1f2e3d4c5b6a7988`."""
    return f"{prefix}-{secrets.token_hex(8)}"


class Base(DeclarativeBase):
    """Declarative base: every `str` is TEXT, every `datetime` is TIMESTAMPTZ, JSON is JSONB."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: Text(),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB(),
        list[str]: JSONB(),
    }


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow, server_default=sa.func.now())


class User(Base):
    """Someone who calls the API; admins may act on any user's jobs and administer workers."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(primary_key=True)
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = _created_at()


class Credential(Base):
    """An API key or a browser session: only the SHA-256 of the secret is stored."""

    __tablename__ = "credentials"
    __table_args__ = (CheckConstraint(f"kind IN {CREDENTIAL_KINDS!r}", name="kind"),)

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: new_id("cred"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str]
    secret_sha256: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str | None]
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime | None]


class Profile(Base):
    """A user's reusable identity: training uploads and what training produced."""

    __tablename__ = "profiles"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        CheckConstraint(f"status IN {PROFILE_STATUSES!r}", name="status"),
    )

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: new_id("prof"))
    user_id: Mapped[str]
    name: Mapped[str]
    status: Mapped[str] = mapped_column(default="new", server_default="new")
    lora_id: Mapped[str | None]  # s3:// URI of the LoRA weights
    voice_id: Mapped[str | None]
    voice_clone_engine: Mapped[str | None]  # the engine that cloned `voice_id`'s voice; None: a fitted pace only
    portrait_uri: Mapped[str | None]
    images: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    audio: Mapped[list[str]] = mapped_column(default=list, server_default="[]")
    error: Mapped[str | None]
    consent_at: Mapped[datetime | None]  # when the user consented to training on their face and voice
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=sa.func.now())


class Preset(Base):
    """A user's saved option set (`schemas.api.PresetIn` without its name) that a submission may name."""

    __tablename__ = "presets"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: new_id("preset"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str]
    body: Mapped[dict[str, Any]]  # the fields the user set, camelCase as on the wire
    created_at: Mapped[datetime] = _created_at()


class Batch(Base):
    """One `POST /api/batches` (id = the `BatchWorkflow` id); its jobs name it in `jobs.batch_id`."""

    __tablename__ = "batches"
    __table_args__ = (
        Index(None, "user_id", "created_at", "id"),
        UniqueConstraint("user_id", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    request: Mapped[dict[str, Any]]  # the body as validated (camelCase, fields given only): replays compare it
    job_ids: Mapped[list[str]]  # its jobs in the order of the request: the answer a replay repeats
    created_at: Mapped[datetime] = _created_at()
    idempotency_key: Mapped[str | None]


class Job(Base):
    """One submission (id = Temporal workflow id); its *state* lives in Temporal, never here."""

    __tablename__ = "jobs"
    # (user_id, created_at, id) serves lookups by user and keyset paging newest first.
    __table_args__ = (
        Index(None, "user_id", "created_at", "id"),
        UniqueConstraint("user_id", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str]
    mode: Mapped[str]
    variant: Mapped[str]
    topic: Mapped[str]
    request: Mapped[dict[str, Any]]
    graph: Mapped[dict[str, Any]]
    profile_id: Mapped[str | None]
    script: Mapped[dict[str, Any] | None]
    script_source: Mapped[str | None]
    video_uri: Mapped[str | None]
    thumbnail_uri: Mapped[str | None]
    duration: Mapped[float | None] = mapped_column(Double())
    error: Mapped[str | None]
    failed_stage: Mapped[str | None]
    # Which runtime rendered each stage (`schemas.tasks.Video.rendering`); NULL before the render registered.
    rendering: Mapped[dict[str, str] | None] = mapped_column(JSONB())
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now(), index=True)
    finished_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None]  # the `Idempotency-Key` header it was submitted with
    preset: Mapped[str | None]  # the name of the preset the body named (its options are already in `request`)
    # The batch it was submitted in; its workflow is then started by the batch's, maybe later than the row.
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)


class Artifact(Base):
    """An object a node produced; unique per (job, kind, key) so retried activities upsert."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "kind", "key"),)

    id: Mapped[str] = mapped_column(primary_key=True, default=lambda: new_id("art"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    user_id: Mapped[str]
    node_id: Mapped[str]
    kind: Mapped[str]
    key: Mapped[str]
    uri: Mapped[str]
    content_type: Mapped[str | None]
    size_bytes: Mapped[int | None] = mapped_column(BigInteger())
    partial: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = _created_at()


class WorkerCapability(Base):
    """One worker's last advertised manifest (`schemas.capabilities.WorkerManifest` as JSON)."""

    __tablename__ = "worker_capabilities"

    worker_id: Mapped[str] = mapped_column(primary_key=True)
    plane: Mapped[str]
    task_queue: Mapped[str]
    manifest: Mapped[dict[str, Any]]
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now(), index=True)


def database_url(url: str) -> str:
    """`url` with the psycopg 3 driver (`postgres://` and `postgresql://` are rewritten)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url.removeprefix(plain)
    return url


def create_engine(url: str, **kwargs: Any) -> Engine:
    """A sync engine (migrations, scripts); `url` may omit the driver."""
    return sa.create_engine(database_url(url), pool_pre_ping=True, **kwargs)


def create_async_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine on psycopg 3 (the same `postgresql+psycopg://` URL as the sync one)."""
    return _sa_create_async_engine(database_url(url), pool_pre_ping=True, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose rows stay readable after commit; use `async with factory.begin() as session`."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code (no `alembic.ini`), pointing at `core/migrations`.

    Args:
        url: database URL used when no connection is passed in `config.attributes["connection"]`.

    Returns:
        The config, usable with `alembic.command` (e.g. `command.revision(cfg, autogenerate=True)`).
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates `%`, which URL-encoded passwords contain.
        cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the latest revision (idempotent).

    The upgrade runs in one transaction holding a Postgres advisory lock, so processes that start
    together apply it once: the others wait, then find the schema already at head.
    """
    from alembic import command

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
