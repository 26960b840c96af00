"""`artifacts.registerOutputs`: a job's artifact rows, its final summary, and what training left on its profile."""

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core import repo
from core.db import utcnow
from core.storage import ObjectStore, parse_s3_uri
from schemas import names
from schemas.tasks import ArtifactRef, RegisterInput, RegisterResult


class OutputActivities:
    """The registration activity; `ControlActivities` provides the database sessions and the object store."""

    _sessions: async_sessionmaker[AsyncSession]
    _store: ObjectStore

    @activity.defn(name=names.REGISTER_OUTPUTS)
    async def register_outputs(self, inp: RegisterInput) -> RegisterResult:
        """Write the job's artifact rows (upsert by job, kind, key) and its final summary."""
        rows = []
        for node_id, assets in inp.outputs.items():
            for asset in assets:
                if not await asyncio.to_thread(self._store.exists, asset.uri):
                    raise ApplicationError(
                        f"output {asset.uri} of node {node_id} is missing from storage", type=names.ERR_MISSING_OUTPUT
                    )
                _bucket, key = parse_s3_uri(asset.uri)
                rows.append({"node_id": node_id, "kind": asset.kind, "key": key, "uri": asset.uri,
                             "content_type": asset.content_type, "size_bytes": asset.size_bytes, "partial": inp.partial})  # fmt: skip
        async with self._sessions.begin() as session:
            saved = await repo.upsert_artifacts(session, inp.job_id, inp.user_id, rows)
            await repo.update_job_summary(session, inp.job_id, **_summary(inp))
            if inp.profile and inp.profile.id:
                await _settle_profile(session, inp)
        return RegisterResult(
            artifacts=[ArtifactRef(id=a.id, kind=a.kind, node_id=a.node_id, uri=a.uri) for a in saved]
        )


def _summary(inp: RegisterInput) -> dict[str, object]:
    """The job's final summary fields; `rendering` is `{}` for videos from histories older than the field."""
    fields: dict[str, object] = {"finished_at": utcnow(), "error": inp.error, "failed_stage": inp.failed_stage}
    if inp.script:
        script: dict[str, object] = inp.script.script.model_dump()
        if inp.script.original is not None:  # the person edited it in review: keep what the writer wrote too
            script["original"] = inp.script.original.model_dump()
        fields |= {"script": script, "script_source": inp.script.source}
    if inp.video:
        fields |= {
            "video_uri": inp.video.uri,
            "thumbnail_uri": inp.video.thumbnail_uri,
            "duration": inp.video.duration,
            "rendering": inp.video.rendering,
        }
    return fields


async def _settle_profile(session: AsyncSession, inp: RegisterInput) -> None:
    """Training results land on the profile; a failed training marks it unusable."""
    assert inp.profile is not None and inp.profile.id is not None
    trained: dict[str, str | None] = {
        k: v for k, v in {"lora_id": inp.profile.lora_id, "voice_id": inp.profile.voice_id}.items() if v
    }
    if inp.profile.voice_id:  # a voice trained again without cloning drops the older clone's engine
        trained["voice_clone_engine"] = inp.profile.voice_clone_engine
    training_failed = inp.failed_stage in {"train_lora", "train_voice"}
    if training_failed:
        await repo.update_profile(session, inp.profile.id, status="failed", error=inp.error, **trained)
    elif trained:
        await repo.update_profile(session, inp.profile.id, status="ready", error=None, **trained)
