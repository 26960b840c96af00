"""Response builders: the public API models made from database rows and stored objects."""

from datetime import datetime

from core.db import Artifact, Job, Preset, Profile, WorkerCapability
from core.storage import ObjectStore, StoredObject, s3_uri
from schemas import names
from schemas.api import (
    ArtifactPublic,
    JobRecord,
    JobState,
    JobStatus,
    JobSummary,
    PresetIn,
    PresetPublic,
    ProfilePublic,
    UploadedObject,
    WorkerPublic,
)

SCRIPT_SUMMARY_CHARS = 280


def artifact_public(store: ObjectStore, row: Artifact) -> ArtifactPublic:
    """The API view of an artifact row, with a presigned download URL (signing is sync: run in a thread)."""
    return ArtifactPublic(id=row.id, kind=row.kind, node_id=row.node_id, uri=row.uri, url=store.presigned_url(row.uri),
                          content_type=row.content_type, size_bytes=row.size_bytes, partial=row.partial)  # fmt: skip


def profile_public(row: Profile) -> ProfilePublic:
    """The API view of a profile row."""
    return ProfilePublic(id=row.id, name=row.name, status=row.status, lora_id=row.lora_id, voice_id=row.voice_id,
                         voice_clone_engine=row.voice_clone_engine, portrait_uri=row.portrait_uri, created_at=row.created_at)  # fmt: skip


def preset_in(row: Preset) -> PresetIn:
    """A stored preset as the body it was saved from (only the fields the user set are set)."""
    return PresetIn.model_validate({**row.body, "name": row.name})


def preset_public(row: Preset) -> PresetPublic:
    """The API view of a preset row."""
    saved = preset_in(row)
    return PresetPublic(name=row.name, variant=saved.variant, voice=saved.voice, language=saved.language,
                        options=saved.options, created_at=row.created_at)  # fmt: skip


def job_record(
    row: Job, live: JobStatus, artifacts: list[ArtifactPublic], profile: Profile | None, temporal_ui_url: str | None
) -> JobRecord:
    """The enriched job record: the row, its live state, its artifacts (the finished video first among them)."""
    video = next((a for a in artifacts if a.kind == "video" and not a.partial), None)
    narrative = (row.script or {}).get("narrative")
    summary = (
        narrative[:SCRIPT_SUMMARY_CHARS] + "…" if narrative and len(narrative) > SCRIPT_SUMMARY_CHARS else narrative
    )
    return JobRecord(
        job_id=row.id, user_id=row.user_id, mode=row.mode, variant=row.variant, topic=row.topic,
        status=live.status, created_at=row.created_at, graph=row.graph,
        script_summary=summary, script_source=row.script_source, script_edited="original" in (row.script or {}),
        profile=profile_public(profile) if profile else None,
        video=video, artifacts=artifacts, error=live.error, run_id=live.run_id, temporal_ui_url=temporal_ui_url,
        rendering=row.rendering or {},  # NULL: registered before the column existed, or no render yet
        preset=row.preset,
    )  # fmt: skip


def job_summary(row: Job, state: JobState) -> JobSummary:
    """One row of the job listing."""
    return JobSummary(job_id=row.id, mode=row.mode, variant=row.variant, topic=row.topic, status=state,
                      created_at=row.created_at)  # fmt: skip


def uploaded_object(obj: StoredObject) -> UploadedObject:
    """One stored upload of the caller (an object of the uploads bucket)."""
    return UploadedObject(uri=s3_uri(names.UPLOADS_BUCKET, obj.key), size_bytes=obj.size, uploaded_at=obj.last_modified)


def worker_public(row: WorkerCapability, live_since: datetime) -> WorkerPublic:
    """A worker's stored manifest; `live` when it was seen at or after `live_since`."""
    return WorkerPublic(worker_id=row.worker_id, plane=row.plane, task_queue=row.task_queue, last_seen=row.last_seen,
                        live=row.last_seen >= live_since, manifest=row.manifest)  # fmt: skip
