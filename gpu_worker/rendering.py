"""`render_video`: the compound render activity (seed §3.2) on the GPU queue."""

import logging
import shutil
from pathlib import Path, PurePosixPath

from PIL import Image
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from core.storage import ObjectStore
from gpu_worker.backends import Backends
from gpu_worker.media.pipeline import RenderCancelled, RenderOutputs, render_still_video
from gpu_worker.media.sound import Music
from gpu_worker.media.speech import ClonedVoice, VoiceParams
from gpu_worker.media.voices import Narrator
from gpu_worker.progress import Heartbeater, stop_error
from gpu_worker.training.voice import load_voice
from gpu_worker.training.voice_clone import load_clone
from schemas import names
from schemas.media import frame_size
from schemas.speech import PROFILE_VOICE
from schemas.tasks import Asset, RenderInput, RenderResult, Video

logger = logging.getLogger(__name__)

RENDER_STAGES = ("speech", "scene", "animate", "encode", "thumbnail", "upload")  # heartbeat `stage` values

# What of the profile a render used, in the record's `rendering` beside the stages (`voice`, `portrait`).
PROFILE_CLONE = "profile-clone"  # the profile's cloned voice spoke
PROFILE_PACE = "profile-pace"  # another voice spoke at the profile's fitted pace
PROFILE_PORTRAIT = "profile-portrait"  # the profile's portrait is the face

_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".wav": "audio/wav",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
    ".ass": "text/x-ssa",
}


class RenderActivities:
    """The render activity with its storage, scratch directory and model backends injected."""

    def __init__(
        self,
        store: ObjectStore,
        work_dir: Path,
        backends: Backends | None = None,
        narrator: Narrator | None = None,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self._heartbeat_interval = heartbeat_interval  # at most one progress heartbeat this often (seconds)
        self._store = store
        self._work_dir = work_dir
        self._backends = backends or Backends()
        self._narrator = narrator or Narrator(coqui=self._backends.speech)

    @activity.defn(name=names.RENDER_VIDEO)
    def render_video(self, inp: RenderInput) -> RenderResult:
        """Render, upload every output under the job's node prefix, and return their URIs.

        Raises:
            ApplicationError: a stage failed; `details[0]` lists the outputs already uploaded.
            CancelledError: the job was cancelled; nothing more is rendered.
        """
        out_dir = self._work_dir / inp.job_id / inp.node_id
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        hb = Heartbeater(min_interval=self._heartbeat_interval)
        # Before entering, so that even the first heartbeat has the render's shape (stage_index, stage_count).
        hb.update("prepare", 0, stage_index=0, stage_count=len(RENDER_STAGES))
        try:
            with hb:
                return self._render(inp, out_dir, hb)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _render(self, inp: RenderInput, out_dir: Path, hb: Heartbeater) -> RenderResult:
        options = inp.options
        stage_count = len(RENDER_STAGES)

        def progress(stage: str, fraction: float) -> None:
            # Sub-steps outside RENDER_STAGES (the pipeline's final "done") keep the current index.
            index = RENDER_STAGES.index(stage) if stage in RENDER_STAGES else hb.details.get("stage_index", 0)
            hb.update(stage, fraction * 95, stage_index=index, stage_count=stage_count)

        portrait = self._portrait(inp.pipeline.portrait, out_dir)
        media = self._media(options.media, out_dir)
        voice = self._voice(inp)
        size = frame_size(options.resolution, options.aspect_ratio)
        try:
            outputs = render_still_video(
                script_stage=inp.script.stage,
                narrative=inp.script.narrative,
                out_dir=out_dir,
                size=size,
                fps=options.fps,
                voice=voice,
                portrait=portrait,
                variant=inp.pipeline.variant,
                captions=options.captions,
                progress=progress,
                cancelled=hb.cancelled,
                backends=self._backends.bind(self._store, inp.profile.lora_id),
                narrator=self._narrator,
                duration_seconds=options.duration_seconds,
                caption_style=options.caption_style,
                caption_position=options.caption_position,
                music=self._music(options.music, out_dir),
                music_volume=options.music_volume,
                media=media,
            )
        except RenderCancelled as err:
            raise stop_error("render stopped") from err
        except CancelledError:  # raised by a heartbeat once Temporal delivered the cancellation
            raise
        except Exception as err:
            stage = hb.details.get("stage", "render")
            partial = self._upload_partial(inp, out_dir)
            # A backend's own type survives (MissingWeights is non-retryable: a retry cannot fix a broken path).
            known = err if isinstance(err, ApplicationError) and err.type else None
            if known:
                kind, final = known.type, known.non_retryable
            elif isinstance(err, ValueError):  # bad input (e.g. a language espeak-ng lacks): a retry cannot help
                kind, final = names.ERR_INVALID_INPUT, True
            else:
                kind, final = names.ERR_RENDER_STAGE_FAILED, False
            raise ApplicationError(
                f"render failed in stage '{stage}': {err}",
                [a.model_dump() for a in partial],
                type=kind,
                non_retryable=final,
            ) from err
        hb.update("upload", 96, stage_index=RENDER_STAGES.index("upload"), stage_count=stage_count)
        return self._upload(inp, outputs, outputs.rendering | _profile_used(inp, voice, outputs.rendering))

    def _portrait(self, uri: str | None, out_dir: Path) -> Image.Image | None:
        if not uri:
            return None
        path = self._store.download(uri, out_dir / "portrait")
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except OSError as err:
            raise ApplicationError(
                f"portrait {uri} is not a readable image", type=names.ERR_INVALID_INPUT, non_retryable=True
            ) from err

    def _music(self, music: str, out_dir: Path) -> Music:
        """A synthesised bed by name, or the caller's upload (the API checked it is theirs) downloaded."""
        if music in ("none", "calm", "upbeat"):
            return music  # type: ignore[return-value]
        return self._store.download(music, out_dir / "music")

    def _media(self, uris: list[str], out_dir: Path) -> list[Path]:
        """The caller's images and clips for the scenes (the API checked they are theirs), downloaded in order."""
        # The suffix tells a still from a clip; the index keeps two uploads of the same name apart.
        return [
            self._store.download(uri, out_dir / "media" / f"{i:02d}{PurePosixPath(uri).suffix.lower()}")
            for i, uri in enumerate(uris)
        ]

    def _voice(self, inp: RenderInput) -> VoiceParams:
        # `voice` is an advertised voice id (`piper:…`, `espeak-ng:de`, `profile`); histories from before voices
        # were advertised carry None or an eSpeak NG variant (`f3`), which eSpeak NG still speaks.
        voice_id = inp.voice if inp.voice and (":" in inp.voice or inp.voice == PROFILE_VOICE) else None
        variant = inp.voice if inp.voice and voice_id is None else None
        if inp.profile.voice_id:
            trained, clone_ref = load_voice(self._store, inp.profile.voice_id)
            clone = self._clone(clone_ref) if voice_id == PROFILE_VOICE else None
            if clone is not None:  # the clone speaks at the speaker's own pace: the fitted rate is not applied again
                return VoiceParams(language=inp.language, voice_id=voice_id, clone=clone)
            # The profile's fitted pace applies to every engine; its eSpeak NG variant and pitch only when
            # eSpeak NG speaks (neural voices have no pitch knob here).
            return VoiceParams(
                language=inp.language, voice=variant or trained.voice, rate_wpm=trained.rate_wpm, pitch=trained.pitch,
                pitch_range=trained.pitch_range, voice_id=voice_id,
            )  # fmt: skip
        return VoiceParams(language=inp.language, voice=variant, voice_id=voice_id)

    def _clone(self, ref: dict[str, object] | None) -> ClonedVoice | None:
        """The profile's cloned voice when this worker runs its engine (else the profile's pace applies)."""
        if ref is None:
            return None  # trained before cloning, or where no cloning engine was configured
        engine, uri = ref.get("engine"), ref.get("uri")
        if engine != self._narrator.clone_engine or not isinstance(uri, str):
            logger.warning("the profile's cloned voice (%s) needs %s, which this worker does not run", uri, engine)
            return None
        try:
            return load_clone(self._store, uri)
        except ValueError as err:  # rewritten or damaged: only training the voice again can fix it
            raise ApplicationError(
                f"{err}: train the profile's voice again", type=names.ERR_INVALID_INPUT, non_retryable=True
            ) from err

    def _key(self, inp: RenderInput, name: str) -> str:
        return f"jobs/{inp.job_id}/{inp.node_id}/{name}"

    def _put(self, inp: RenderInput, kind: str, path: Path) -> Asset:
        content_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        uri, size = self._store.put_file(names.ARTIFACTS_BUCKET, self._key(inp, path.name), path, content_type)
        return Asset(kind=kind, uri=uri, content_type=content_type, size_bytes=size)

    def _upload(self, inp: RenderInput, outputs: RenderOutputs, rendering: dict[str, str]) -> RenderResult:
        files = [("video", outputs.video), ("thumbnail", outputs.thumbnail), ("audio", outputs.audio),
                 ("scene", outputs.scene_image), ("base_clip", outputs.base_clip)]  # fmt: skip
        files += [("captions", path) for path in outputs.captions]  # SRT, WebVTT, ASS
        uploaded = [self._put(inp, kind, path) for kind, path in files if path is not None]
        assets = {asset.kind: asset for asset in uploaded}
        video = Video(
            uri=assets["video"].uri,
            thumbnail_uri=assets["thumbnail"].uri,
            duration=outputs.duration,
            variant=inp.pipeline.variant,
            rendering=rendering,
        )
        return RenderResult(video=video, assets=uploaded)

    def _upload_partial(self, inp: RenderInput, out_dir: Path) -> list[Asset]:
        """Upload whatever earlier stages left (seed §6 partial outputs); never raise from here."""
        # The finished video too when only its thumbnail failed (VideoWriter leaves no file when encoding fails).
        kinds = {"speech.wav": "audio", "scene.png": "scene", "portrait.png": "scene", "base.mp4": "base_clip",
                 "captions.srt": "captions", "captions.vtt": "captions", "captions.ass": "captions",
                 "video.mp4": "video"}  # fmt: skip
        uploaded: list[Asset] = []
        for name, kind in kinds.items():
            path = out_dir / name
            if path.is_file() and path.stat().st_size > 0:
                try:
                    uploaded.append(self._put(inp, kind, path))
                except Exception:
                    logger.exception("could not upload partial output %s", path)
        return uploaded


def _profile_used(inp: RenderInput, voice: VoiceParams, rendering: dict[str, str]) -> dict[str, str]:
    """What of the profile reached the video: its cloned voice or its pace, its portrait (never claimed otherwise)."""
    used: dict[str, str] = {}
    if voice.clone is not None and rendering.get("speech") == voice.clone.engine:
        used["voice"] = PROFILE_CLONE
    elif inp.profile.voice_id:
        used["voice"] = PROFILE_PACE
    if inp.pipeline.face_source == "profile" and inp.pipeline.portrait:
        used["portrait"] = PROFILE_PORTRAIT
    return used
