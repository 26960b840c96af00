"""The one render composition: each variant's stages, each on its model backend when configured, else embedded.

Speech comes first (`gpu_worker.media.voices.Narrator`); then `RenderBackends.frames` makes a
variant's frames, every stage on its model backend when one is configured and usable, else on
its embedded CPU runtime, so any mix works (e.g. Stable Diffusion scene + Ken Burns + embedded mouth):

- svd: scene (SD or ComfyUI, else `procedural`) → presenter composed in → image_to_video (SVD
  clip looped to the speech, else `ken-burns`) = `base.mp4` → lipsync (Wav2Lip on `base.mp4`,
  else `embedded-visemes`: the mouth posed to the phonemes on the face mesh). With the caller's
  `options.media`, scene and image_to_video are `uploaded-media` and `media-montage` instead
  (`gpu_worker.media.footage`: a scene per sentence, the presenter composed over each frame).
- sadtalker: the framed portrait → talking_head (SadTalker, else `embedded-face-mesh`: visemes, blinks
  and head motion on the portrait).

Frames from a model smaller than the video go through `upscale` (Real-ESRGAN, then Lanczos).
Every stage that ran is recorded with its runtime id (`StageFrames.rendering`), exactly as the
manifest advertises it (`EMBEDDED_RUNTIMES` and the backends' names).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from gpu_worker.backends.base import LORA_APPLIED, LoraWeights, Progress, SceneRequest, cover_box, fit
from gpu_worker.backends.frames import pingpong, read_frames
from gpu_worker.media.animate import camera_path, head_motion, ken_burns, map_box, talking_frames
from gpu_worker.media.encode import VideoWriter, encode_frames
from gpu_worker.media.faces import Box
from gpu_worker.media.footage import PresenterOverlay, montage, plan_scenes
from gpu_worker.media.mouth import Lips
from gpu_worker.media.presenter import frame_portrait
from gpu_worker.media.scene import compose_presenter, presenter_layer, render_backdrop
from gpu_worker.media.speech import Segment
from gpu_worker.media.visemes import MouthTrack

if TYPE_CHECKING:
    from gpu_worker.backends import Backends

logger = logging.getLogger(__name__)

Checkpoint = Callable[[str, float], None]
_SCENE_MARGIN = 1.1  # the scene is painted larger than the frame so the camera can zoom in crisply
_ZOOM = 0.08

WORD_CAPTIONS = "word-timed"  # captions cut from the word timeline (plain or karaoke)
SYNTHESISED_BED = "synthesised-bed"  # `options.music` calm or upbeat, made by our own code
UPLOADED_MUSIC = "uploaded-music"  # the caller's own music upload
UPLOADED_MEDIA = "uploaded-media"  # the svd scene from the caller's own images and clips (`options.media`)
MEDIA_MONTAGE = "media-montage"  # their scenes cut at sentences: Ken Burns on stills, clips as filmed
PROFILE_LORA = "profile-lora"  # `rendering["lora"]`: the scene was painted with the profile's LoRA and trigger words
_FINISHING = {"captions": [WORD_CAPTIONS], "music": [SYNTHESISED_BED, UPLOADED_MUSIC], "mux": ["ffmpeg"]}

# The embedded CPU runtimes need no weights, so every GPU worker has them; per variant, then stage.
# (`speech` comes from the narrator, `upscale` only from a configured upscaler: nothing to upscale here.)
EMBEDDED_RUNTIMES: dict[str, dict[str, list[str]]] = {
    "svd": {
        "scene": ["procedural", UPLOADED_MEDIA],
        "image_to_video": ["ken-burns", MEDIA_MONTAGE],
        "lipsync": ["embedded-visemes"],
        **_FINISHING,
    },
    "sadtalker": {"talking_head": ["embedded-face-mesh"], **_FINISHING},
}


class LoraStore(Protocol):
    """The part of `core.storage.ObjectStore` needed to fetch a profile's LoRA."""

    def download(self, uri: str, dest: Path) -> Path:
        """Download an object to `dest`."""
        ...

    def exists(self, uri: str) -> bool:
        """Whether the object exists."""
        ...


@dataclass
class StageFrames:
    """The variant's frames (before captions and encoding) and the files the render uploads."""

    frames: Iterator[np.ndarray]
    scene_path: Path
    base_path: Path | None
    rendering: dict[str, str]  # stage → runtime id of the stages that made these frames


@dataclass(frozen=True)
class FrameInputs:
    """What the renderer has prepared before the frames: the speech, the face, the timing."""

    stage: str  # the stage description
    face: Image.Image
    face_box: Box
    lips: Lips  # the portrait's lips in fractions of its face box
    size: tuple[int, int]
    fps: int
    speech: Path
    loudness: np.ndarray  # per-frame loudness 0..1 (its length is the frame count); it drives the head's nods
    mouth: MouthTrack  # per-frame mouth poses from the phoneme timeline
    blinks: np.ndarray | None
    seed: int
    out_dir: Path
    crf: int = 23
    media: tuple[Path, ...] = ()  # the caller's images and clips: the svd scenes instead of a generated one
    sentences: tuple[Segment, ...] = ()  # the narration's sentences with their times (where scenes cut)


def _tee(frames: Iterable[np.ndarray], writer: VideoWriter) -> Iterator[np.ndarray]:
    for frame in frames:
        writer.write(frame)
        yield frame


def _reporter(checkpoint: Checkpoint, span: tuple[float, float]) -> Callable[[str, float, float], Progress]:
    """`report(stage, start, end)`: a backend's 0..1 progress → the renderer's overall fraction within `span`."""
    lo, hi = span

    def report(stage: str, start: float, end: float) -> Progress:
        def progress(fraction: float) -> None:
            checkpoint(stage, lo + (hi - lo) * (start + (end - start) * min(max(fraction, 0.0), 1.0)))

        return progress

    return report


class RenderBackends:
    """The worker's backends bound to one render (its object store and the profile's LoRA)."""

    def __init__(self, backends: Backends, store: LoraStore | None = None, lora_id: str | None = None) -> None:
        self.backends = backends
        self._store = store
        self._lora_id = lora_id

    @contextmanager
    def frames(
        self, variant: str, inputs: FrameInputs, checkpoint: Checkpoint, span: tuple[float, float]
    ) -> Iterator[StageFrames]:
        """Run the variant's stages and yield its frames; leaving the block finishes or aborts `base.mp4`.

        Args:
            variant: `svd` or `sadtalker`.
            inputs: Speech, face and timing prepared by the renderer.
            checkpoint: The renderer's `(stage, overall fraction)` reporter; raises once cancelled.
            span: The overall fractions these stages report between.

        Yields:
            The frames and the scene (and base clip) paths.
        """
        report = _reporter(checkpoint, span)
        with ExitStack() as stack:
            if variant == "svd":
                yield self._svd(inputs, report, stack)
            else:
                yield self._talking_head(inputs, report)

    def _svd(self, inp: FrameInputs, report: Callable[[str, float, float], Progress], stack: ExitStack) -> StageFrames:
        b, (w, h), n = self.backends, inp.size, len(inp.mouth)
        if inp.media:
            return self._media_scenes(inp, report, stack)
        scene_size = (math.ceil(w * _SCENE_MARGIN), math.ceil(h * _SCENE_MARGIN))
        rendering: dict[str, str] = {}
        scene_backend = b.scene
        if scene_backend is not None:
            lora = self.fetch_lora(inp.out_dir) if scene_backend.uses_lora else None
            if self._lora_id and not scene_backend.uses_lora:
                logger.warning("scene runtime %s cannot apply the profile's LoRA %s", scene_backend.name, self._lora_id)
            request = SceneRequest(inp.stage, scene_size, inp.seed, lora)
            painted = scene_backend.generate(request, report("scene", 0.0, 0.3))
            if painted.info.get(LORA_APPLIED):
                rendering["lora"] = PROFILE_LORA
            backdrop = self._fit(painted, scene_size, rendering)
            rendering["scene"] = scene_backend.name
        else:
            backdrop = render_backdrop(inp.stage, scene_size, inp.seed)
            rendering["scene"] = "procedural"
        scene, scene_face = compose_presenter(backdrop, inp.face, inp.face_box)
        scene_path = inp.out_dir / "scene.png"
        scene.save(scene_path)
        progress = report("image_to_video", 0.3, 0.5)
        progress(0.0)
        if b.image_to_video is not None:
            clip = b.image_to_video.generate(scene, inp.seed, progress)
            boxes: list[Box] = [cover_box(cover_box(scene_face, scene.size, clip[0].size), clip[0].size, inp.size)] * n
            resize = report("upscale" if b.upscaler else "image_to_video", 0.5, 0.6)
            arrays = []
            for i, frame in enumerate(clip):
                resize(i / len(clip))
                arrays.append(np.asarray(self._fit(frame, inp.size, rendering)))
            base: Iterator[np.ndarray] = pingpong(arrays, n, inp.fps, b.image_to_video.fps)
            rendering["image_to_video"] = b.image_to_video.name
        else:
            focus = (scene_face[0] + scene_face[2] / 2, scene_face[1] + scene_face[3] / 2)
            paths = camera_path(scene_size, inp.size, n, inp.seed, zoom=_ZOOM, focus=focus)
            boxes = [map_box(scene_face, m) for m in paths]
            base = ken_burns(scene, inp.size, n, inp.seed, zoom=_ZOOM, focus=focus)
            rendering["image_to_video"] = "ken-burns"
        return self._lipsync(inp, base, boxes, scene_path, rendering, report, stack, b.image_to_video is not None)

    def _lipsync(
        self,
        inp: FrameInputs,
        base: Iterator[np.ndarray],
        boxes: list[Box],
        scene_path: Path,
        rendering: dict[str, str],
        report: Callable[[str, float, float], Progress],
        stack: ExitStack,
        keep_base: bool,
    ) -> StageFrames:
        """The mouth posed on the base frames (Wav2Lip, else embedded visemes); `keep_base` also writes `base.mp4`."""
        b, n = self.backends, len(inp.mouth)
        base_path = inp.out_dir / "base.mp4"
        if b.lipsync is not None:
            encode_frames(base, inp.size, inp.fps, base_path, crf=inp.crf + 3, preset="ultrafast")
            progress = report("lipsync", 0.6, 1.0)
            progress(0.0)
            synced = b.lipsync.lipsync(base_path, inp.speech, inp.out_dir, progress)
            rendering["lipsync"] = b.lipsync.name
            frames = read_frames(synced, inp.size, inp.fps, n, b.upscaler)
            return StageFrames(frames, scene_path, base_path, rendering | self._upscaled(synced, inp.size))
        rendering["lipsync"] = "embedded-visemes"
        if not keep_base:
            # A Ken Burns move over `scene.png` is not worth a second encoder (a quarter of the render's time).
            return StageFrames(
                talking_frames(base, boxes, inp.lips, inp.mouth, inp.blinks), scene_path, None, rendering
            )
        writer = stack.enter_context(VideoWriter(base_path, inp.size, inp.fps, crf=inp.crf + 3, preset="ultrafast"))
        frames = talking_frames(_tee(base, writer), boxes, inp.lips, inp.mouth, inp.blinks)
        return StageFrames(frames, scene_path, base_path, rendering)

    def _media_scenes(
        self, inp: FrameInputs, report: Callable[[str, float, float], Progress], stack: ExitStack
    ) -> StageFrames:
        """The svd frames over the caller's own media: a scene per sentence, the presenter composed over each frame."""
        n = len(inp.mouth)
        progress = report("scene", 0.0, 0.3)
        progress(0.0)
        layer, face = presenter_layer(inp.size, inp.face, inp.face_box)
        presenter = PresenterOverlay(layer)
        scenes = plan_scenes(inp.media, inp.sentences, inp.fps, n, inp.seed)
        frames = (presenter.over(frame) for frame in montage(scenes, inp.size, inp.fps))
        first = next(frames)
        scene_path = inp.out_dir / "scene.png"
        Image.fromarray(first).save(scene_path)
        progress(1.0)
        base = itertools.chain([first], frames)
        rendering = {"scene": UPLOADED_MEDIA, "image_to_video": MEDIA_MONTAGE}
        logger.info("%d scenes from %d media", len(scenes), len(inp.media))
        return self._lipsync(inp, base, [face] * n, scene_path, rendering, report, stack, keep_base=False)

    def _talking_head(self, inp: FrameInputs, report: Callable[[str, float, float], Progress]) -> StageFrames:
        framed, face_box = frame_portrait(inp.face, inp.size, face_height=0.32, face_top=0.2, face=inp.face_box)
        portrait_path = inp.out_dir / "portrait.png"
        framed.save(portrait_path)
        talking_head = self.backends.talking_head
        if talking_head is not None:
            progress = report("talking_head", 0.0, 1.0)
            progress(0.0)
            video = talking_head.animate(portrait_path, inp.speech, inp.out_dir, progress)
            frames = read_frames(video, inp.size, inp.fps, len(inp.mouth), self.backends.upscaler)
            rendering = {"talking_head": talking_head.name} | self._upscaled(video, inp.size)
            return StageFrames(frames, portrait_path, None, rendering)
        motion = head_motion(inp.size, face_box, len(inp.loudness), inp.fps, inp.seed, inp.loudness)
        frames = talking_frames(framed, face_box, inp.lips, inp.mouth, inp.blinks, motion)
        return StageFrames(frames, portrait_path, None, {"talking_head": "embedded-face-mesh"})

    def _fit(self, image: Image.Image, size: tuple[int, int], rendering: dict[str, str]) -> Image.Image:
        """A model's image at the render's size; records `upscale` when the upscaler enlarged it."""
        upscaler = self.backends.upscaler
        if upscaler is not None and (image.width < size[0] or image.height < size[1]):
            rendering["upscale"] = upscaler.name
        return fit(image, size, upscaler)

    def _upscaled(self, video: Path, size: tuple[int, int]) -> dict[str, str]:
        """`{"upscale": name}` when a model's video is smaller than the render and an upscaler is configured."""
        upscaler = self.backends.upscaler
        if upscaler is None:
            return {}
        from gpu_worker.media.encode import probe

        found = probe(video)
        return {"upscale": upscaler.name} if (found.width < size[0] or found.height < size[1]) else {}

    def fetch_lora(self, out_dir: Path) -> LoraWeights | None:
        """Download the profile's LoRA and its `lora.json` (a missing object is skipped with a warning)."""
        uri = self._lora_id
        if not uri or self._store is None:
            return None
        if not self._store.exists(uri):
            logger.warning("profile LoRA %s does not exist; rendering without it", uri)
            return None
        folder = out_dir / "lora"
        weights = self._store.download(uri, folder / uri.rsplit("/", 1)[-1])
        meta_uri = uri.rsplit("/", 1)[0] + "/lora.json"
        meta: dict[str, str] = {}
        if self._store.exists(meta_uri):
            meta = json.loads(self._store.download(meta_uri, folder / "lora.json").read_text(encoding="utf-8"))
        else:
            logger.warning("profile LoRA %s has no lora.json beside it", uri)
        return LoraWeights(weights, meta.get("base_model"), meta.get("instance_prompt"))
