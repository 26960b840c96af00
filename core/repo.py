"""Repository: small async queries over the `core.db` models.

Every function runs inside the caller's session and transaction and never commits, so a caller
groups writes as it needs: `async with sessions.begin() as session: await insert_job(session, ...)`.
Rows come back as ORM objects; with `core.db.session_factory` they stay readable after commit.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Artifact, Batch, Job, Preset, Profile, User, WorkerCapability, new_id, utcnow
from schemas.capabilities import WorkerManifest

logger = logging.getLogger(__name__)

JOB_SUMMARY_FIELDS: Final = frozenset(
    {
        "profile_id",
        "script",
        "script_source",
        "video_uri",
        "thumbnail_uri",
        "duration",
        "error",
        "failed_stage",
        "finished_at",
        "rendering",
    }
)
PROFILE_FIELDS: Final = frozenset(
    {
        "name",
        "status",
        "lora_id",
        "voice_id",
        "voice_clone_engine",
        "portrait_uri",
        "images",
        "audio",
        "error",
        "consent_at",
    }
)
_ARTIFACT_UPDATED: Final = ("user_id", "node_id", "uri", "content_type", "size_bytes", "partial")
_POPULATE: Final = {"populate_existing": True}  # RETURNING rows overwrite stale objects in the session


_Paged = TypeVar("_Paged", Job, Batch)  # rows paged newest first by `_newest_first`


class InvalidCursorError(ValueError):
    """A paging cursor that this module did not produce."""


def _json(value: Any) -> Any:
    """JSON-ready data: pydantic models are dumped in JSON mode (with their aliases)."""
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _check_fields(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"unknown fields: {', '.join(sorted(unknown))}")


# --- jobs ----------------------------------------------------------------------------------------


async def insert_job(
    session: AsyncSession,
    *,
    job_id: str,
    user_id: str,
    mode: str,
    variant: str,
    topic: str,
    request: BaseModel | Mapping[str, Any],
    graph: BaseModel | Mapping[str, Any],
    profile_id: str | None = None,
    created_at: datetime | None = None,
    idempotency_key: str | None = None,
    preset: str | None = None,
    batch_id: str | None = None,
) -> Job:
    """Insert the `jobs` row the API writes before starting the workflow (`job_id` = workflow id).

    Raises:
        sqlalchemy.exc.IntegrityError: the user already submitted a job with `idempotency_key`.
    """
    job = Job(
        id=job_id,
        user_id=user_id,
        mode=mode,
        variant=variant,
        topic=topic,
        request=_json(request),
        graph=_json(graph),
        profile_id=profile_id,
        created_at=created_at or utcnow(),
        idempotency_key=idempotency_key,
        preset=preset,
        batch_id=batch_id,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(session: AsyncSession, user_id: str, job_id: str) -> Job | None:
    """The job, or None when it does not exist or belongs to another user."""
    stmt = select(Job).where(Job.id == job_id, Job.user_id == user_id)
    return (await session.scalars(stmt)).one_or_none()


async def lock_job(session: AsyncSession, job_id: str, user_id: str | None = None) -> bool:
    """Lock the job's row (`FOR UPDATE`) until the transaction ends; False when there is no such job.

    With `user_id`, only that user's job counts; None locks any user's job (an admin acting on it).
    """
    stmt = select(Job.id).where(Job.id == job_id).with_for_update()
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    return (await session.execute(stmt)).first() is not None


async def get_job_by_idempotency_key(session: AsyncSession, user_id: str, key: str) -> Job | None:
    """The user's job submitted with `Idempotency-Key: key`, if any."""
    stmt = select(Job).where(Job.user_id == user_id, Job.idempotency_key == key)
    return (await session.scalars(stmt)).one_or_none()


async def recent_job_ids(session: AsyncSession, user_id: str, within: timedelta) -> list[str]:
    """Ids of the user's jobs created in the last `within` (newest first), leaving out batches' jobs.

    A batch's job may wait long for its workflow: its batch (`recent_batch_ids`) stands for it.
    """
    stmt = (
        select(Job.id)
        .where(Job.user_id == user_id, Job.created_at >= func.now() - within, Job.batch_id.is_(None))
        .order_by(Job.created_at.desc())
    )
    return list((await session.scalars(stmt)).all())


async def delete_job(session: AsyncSession, job_id: str) -> None:
    """Delete a job row (its artifacts rows go with it)."""
    await session.execute(delete(Job).where(Job.id == job_id))


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The opaque cursor that resumes paging after the job (`created_at`, `job_id`)."""
    raw = json.dumps([created_at.isoformat(), job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (`created_at`, `job_id`) position of a cursor from `encode_cursor`.

    Raises:
        InvalidCursorError: the cursor is malformed.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        position = datetime.fromisoformat(created_at), str(job_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursorError(f"invalid cursor: {cursor!r}") from exc
    if position[0].tzinfo is None:
        raise InvalidCursorError(f"invalid cursor: {cursor!r}")
    return position


async def list_jobs(
    session: AsyncSession, user_id: str, limit: int = 20, cursor: str | None = None
) -> tuple[list[Job], str | None]:
    """One page of the user's jobs, newest first, and the cursor of the next page (None at the end).

    Keyset paging on (`created_at`, `id`): pages stay stable while new jobs arrive.

    Raises:
        InvalidCursorError: `cursor` is malformed.
        ValueError: `limit` is below 1.
    """
    return await _newest_first(session, Job, user_id, limit, cursor)


async def _newest_first(
    session: AsyncSession, model: type[_Paged], user_id: str, limit: int, cursor: str | None
) -> tuple[list[_Paged], str | None]:
    """Keyset paging of the user's rows of `model` on (`created_at`, `id`), newest first."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    stmt = (
        select(model)
        .where(model.user_id == user_id)
        .order_by(model.created_at.desc(), model.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        stmt = stmt.where(tuple_(model.created_at, model.id) < tuple_(*decode_cursor(cursor)))
    rows = list((await session.scalars(stmt)).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id)


async def update_job_summary(session: AsyncSession, job_id: str, **fields: Any) -> Job | None:
    """Set the job's summary fields (`JOB_SUMMARY_FIELDS`); None when the job does not exist.

    Raises:
        TypeError: a field is not a summary field.
    """
    _check_fields(fields, JOB_SUMMARY_FIELDS)
    if not fields:
        return await session.get(Job, job_id)
    values = {name: _json(value) for name, value in fields.items()}
    stmt = update(Job).where(Job.id == job_id).values(values).returning(Job)
    return (await session.scalars(stmt, execution_options=_POPULATE)).one_or_none()


# --- batches -------------------------------------------------------------------------------------


async def insert_batch(
    session: AsyncSession,
    *,
    batch_id: str,
    user_id: str,
    request: Mapping[str, Any],
    job_ids: list[str],
    idempotency_key: str | None = None,
    created_at: datetime | None = None,
) -> Batch:
    """Insert the `batches` row (before its jobs' rows, which name it; `batch_id` = workflow id).

    Raises:
        sqlalchemy.exc.IntegrityError: the user already submitted a batch with `idempotency_key`.
    """
    batch = Batch(
        id=batch_id,
        user_id=user_id,
        request=dict(request),
        job_ids=list(job_ids),
        created_at=created_at or utcnow(),
        idempotency_key=idempotency_key,
    )
    session.add(batch)
    await session.flush()
    return batch


async def get_batch(session: AsyncSession, user_id: str, batch_id: str) -> Batch | None:
    """The batch, or None when it does not exist or belongs to another user."""
    stmt = select(Batch).where(Batch.id == batch_id, Batch.user_id == user_id)
    return (await session.scalars(stmt)).one_or_none()


async def get_batch_by_idempotency_key(session: AsyncSession, user_id: str, key: str) -> Batch | None:
    """The user's batch submitted with `Idempotency-Key: key`, if any."""
    stmt = select(Batch).where(Batch.user_id == user_id, Batch.idempotency_key == key)
    return (await session.scalars(stmt)).one_or_none()


async def list_batches(
    session: AsyncSession, user_id: str, limit: int = 20, cursor: str | None = None
) -> tuple[list[Batch], str | None]:
    """One page of the user's batches, newest first, and the cursor of the next page (None at the end).

    Raises:
        InvalidCursorError: `cursor` is malformed.
        ValueError: `limit` is below 1.
    """
    return await _newest_first(session, Batch, user_id, limit, cursor)


async def jobs_of_batches(session: AsyncSession, batch_ids: Iterable[str]) -> dict[str, list[Job]]:
    """The job rows of each batch (a batch whose jobs were all deleted maps to an empty list)."""
    ids = list(batch_ids)
    found: dict[str, list[Job]] = {batch_id: [] for batch_id in ids}
    if ids:
        stmt = select(Job).where(Job.batch_id.in_(ids)).order_by(Job.created_at, Job.id)
        for job in await session.scalars(stmt):
            found[str(job.batch_id)].append(job)
    return found


async def recent_batch_ids(session: AsyncSession, user_id: str, within: timedelta) -> list[str]:
    """Ids of the user's batches created in the last `within` (newest first)."""
    stmt = (
        select(Batch.id)
        .where(Batch.user_id == user_id, Batch.created_at >= func.now() - within)
        .order_by(Batch.created_at.desc())
    )
    return list((await session.scalars(stmt)).all())


async def count_recent_submissions(session: AsyncSession, user_id: str, since: datetime) -> int:
    """The user's single jobs and batches created at or after `since` (a batch's jobs are its one entry)."""
    jobs = (
        select(func.count())
        .select_from(Job)
        .where(Job.user_id == user_id, Job.created_at >= since, Job.batch_id.is_(None))
    )
    batches = select(func.count()).select_from(Batch).where(Batch.user_id == user_id, Batch.created_at >= since)
    return int((await session.scalar(jobs)) or 0) + int((await session.scalar(batches)) or 0)


async def delete_batch(session: AsyncSession, batch_id: str) -> None:
    """Delete a batch row and its jobs' rows (their artifacts rows go with them)."""
    await session.execute(delete(Job).where(Job.batch_id == batch_id))
    await session.execute(delete(Batch).where(Batch.id == batch_id))


# --- profiles ------------------------------------------------------------------------------------


def default_profile_name(now: datetime | None = None) -> str:
    """`profile-<UTC date>`, the name of a profile the user did not name."""
    return f"profile-{(now or utcnow()).date().isoformat()}"


async def get_profile(session: AsyncSession, user_id: str, profile_id: str) -> Profile | None:
    """The profile, or None when it does not exist or belongs to another user."""
    stmt = select(Profile).where(Profile.id == profile_id, Profile.user_id == user_id)
    return (await session.scalars(stmt)).one_or_none()


async def resolve_or_create_profile(
    session: AsyncSession, user_id: str, name: str | None, images: list[str], audio: list[str]
) -> Profile:
    """The user's profile called `name` (default `profile-<date>`), created with these uploads if new.

    An existing profile is returned unchanged; safe against a concurrent create of the same name.
    """
    name = name or default_profile_name()
    now = utcnow()
    create = (
        pg_insert(Profile)
        .values(
            id=new_id("prof"), user_id=user_id, name=name, images=images, audio=audio, created_at=now, updated_at=now
        )
        .on_conflict_do_nothing(index_elements=[Profile.user_id, Profile.name])
    )
    await session.execute(create)
    stmt = select(Profile).where(Profile.user_id == user_id, Profile.name == name)
    return (await session.scalars(stmt, execution_options=_POPULATE)).one()


async def update_profile(session: AsyncSession, profile_id: str, **fields: Any) -> Profile | None:
    """Set profile fields (`PROFILE_FIELDS`) and `updated_at`; None when the profile does not exist.

    Raises:
        TypeError: a field is not a profile field.
    """
    _check_fields(fields, PROFILE_FIELDS)
    stmt = update(Profile).where(Profile.id == profile_id).values(**fields, updated_at=utcnow()).returning(Profile)
    return (await session.scalars(stmt, execution_options=_POPULATE)).one_or_none()


async def jobs_of_profile(session: AsyncSession, user_id: str, profile_id: str) -> list[Job]:
    """The user's jobs that trained or used the profile."""
    stmt = select(Job).where(Job.user_id == user_id, Job.profile_id == profile_id)
    return list((await session.scalars(stmt)).all())


async def delete_profile(session: AsyncSession, profile_id: str) -> None:
    """Delete a profile row (jobs keep their own rows; their `profile_id` then names nothing)."""
    await session.execute(delete(Profile).where(Profile.id == profile_id))


async def list_profiles(session: AsyncSession, user_id: str) -> list[Profile]:
    """The user's profiles, newest first."""
    stmt = select(Profile).where(Profile.user_id == user_id).order_by(Profile.created_at.desc(), Profile.id.desc())
    return list((await session.scalars(stmt)).all())


# --- presets -------------------------------------------------------------------------------------


async def list_presets(session: AsyncSession, user_id: str) -> list[Preset]:
    """The user's presets, newest first."""
    stmt = select(Preset).where(Preset.user_id == user_id).order_by(Preset.created_at.desc(), Preset.id.desc())
    return list((await session.scalars(stmt)).all())


async def get_preset(session: AsyncSession, user_id: str, name: str) -> Preset | None:
    """The user's preset called `name`, or None (another user's presets are never found)."""
    stmt = select(Preset).where(Preset.user_id == user_id, Preset.name == name)
    return (await session.scalars(stmt)).one_or_none()


async def count_presets_locked(session: AsyncSession, user_id: str) -> int:
    """How many presets the user has, with their `users` row locked until the transaction ends.

    The lock makes concurrent creations of one user count one after the other, so a cap holds.
    """
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    return (await session.scalar(select(func.count()).where(Preset.user_id == user_id))) or 0


async def insert_preset(session: AsyncSession, user_id: str, name: str, body: Mapping[str, Any]) -> Preset | None:
    """Save a preset; None when the user already has one called `name` (safe against a concurrent insert)."""
    stmt = (
        pg_insert(Preset)
        .values(id=new_id("preset"), user_id=user_id, name=name, body=dict(body), created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[Preset.user_id, Preset.name])
        .returning(Preset)
    )
    return (await session.scalars(stmt, execution_options=_POPULATE)).one_or_none()


async def delete_preset(session: AsyncSession, user_id: str, name: str) -> bool:
    """Delete the user's preset called `name`; False when there was none."""
    stmt = delete(Preset).where(Preset.user_id == user_id, Preset.name == name).returning(Preset.id)
    return (await session.execute(stmt)).first() is not None


# --- artifacts -----------------------------------------------------------------------------------


async def upsert_artifacts(
    session: AsyncSession, job_id: str, user_id: str, rows: Iterable[Mapping[str, Any]]
) -> list[Artifact]:
    """Insert or update artifact rows keyed by (`job_id`, `kind`, `key`), in the order given.

    Each row has `node_id`, `kind`, `key`, `uri` and optionally `content_type`, `size_bytes`,
    `partial` (default False). A retried activity re-registering a key updates the row in place
    (same `id`, same `created_at`); within one call the last row for a key wins.
    """
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        value = {
            "node_id": row["node_id"],
            "kind": row["kind"],
            "key": row["key"],
            "uri": row["uri"],
            "content_type": row.get("content_type"),
            "size_bytes": row.get("size_bytes"),
            "partial": bool(row.get("partial", False)),
        }
        by_key[(value["kind"], value["key"])] = value
    if not by_key:
        return []
    now = utcnow()
    values = [
        {**v, "id": new_id("art"), "job_id": job_id, "user_id": user_id, "created_at": now} for v in by_key.values()
    ]
    insert = pg_insert(Artifact).values(values)
    upsert = insert.on_conflict_do_update(
        index_elements=[Artifact.job_id, Artifact.kind, Artifact.key],
        set_={name: insert.excluded[name] for name in _ARTIFACT_UPDATED},
    ).returning(Artifact)
    stored = {(a.kind, a.key): a for a in await session.scalars(upsert, execution_options=_POPULATE)}
    return [stored[k] for k in by_key]


async def list_artifacts(session: AsyncSession, job_id: str) -> list[Artifact]:
    """The job's artifacts, oldest first."""
    stmt = select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.created_at, Artifact.id)
    return list((await session.scalars(stmt)).all())


# --- worker capabilities -------------------------------------------------------------------------


async def upsert_manifest(session: AsyncSession, manifest: WorkerManifest) -> WorkerManifest:
    """Store a worker's manifest with `last_seen` = the database's now(); returns it as stored."""
    data = manifest.model_dump(mode="json", exclude={"last_seen"})
    insert = pg_insert(WorkerCapability).values(
        worker_id=manifest.worker_id,
        plane=manifest.plane,
        task_queue=manifest.task_queue,
        manifest=data,
        last_seen=func.now(),
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[WorkerCapability.worker_id],
        set_={
            "plane": insert.excluded.plane,
            "task_queue": insert.excluded.task_queue,
            "manifest": insert.excluded.manifest,
            "last_seen": func.now(),
        },
    ).returning(WorkerCapability.last_seen)
    last_seen = (await session.execute(upsert)).scalar_one()
    return manifest.model_copy(update={"last_seen": last_seen})


async def live_manifests(
    session: AsyncSession, max_age_seconds: float = 120, plane: str | None = None
) -> list[WorkerManifest]:
    """Manifests of workers seen in the last `max_age_seconds` (optionally of one plane), by worker id.

    A row this code cannot read (a worker on another schema version) is skipped with a warning.
    """
    cutoff = func.now() - timedelta(seconds=max_age_seconds)
    stmt = select(WorkerCapability).where(WorkerCapability.last_seen >= cutoff).order_by(WorkerCapability.worker_id)
    if plane is not None:
        stmt = stmt.where(WorkerCapability.plane == plane)
    manifests = []
    for row in await session.scalars(stmt):
        try:
            manifests.append(WorkerManifest.model_validate({**row.manifest, "last_seen": row.last_seen}))
        except ValidationError:
            logger.warning("skipping unreadable manifest of worker %s", row.worker_id, exc_info=True)
    return manifests


async def list_workers(session: AsyncSession) -> list[WorkerCapability]:
    """Every stored worker manifest row, stale ones included, most recently seen first."""
    stmt = select(WorkerCapability).order_by(WorkerCapability.last_seen.desc())
    return list((await session.scalars(stmt)).all())


async def delete_worker(session: AsyncSession, worker_id: str) -> bool:
    """Forget a worker's manifest row; False when there was none."""
    stmt = delete(WorkerCapability).where(WorkerCapability.worker_id == worker_id).returning(WorkerCapability.worker_id)
    return (await session.execute(stmt)).first() is not None
