"""The embedded CPU renderer: script to narrated talking-presenter MP4, no model weights."""

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_worker.backends.render import FrameInputs, RenderBackends
from gpu_worker.media.animate import (
    blink_schedule,
    camera_path,
    head_motion,
    ken_burns,
    loudness_envelope,
    map_box,
    talking_frames,
)
from gpu_worker.media.captions import caption_frames, to_srt
from gpu_worker.media.encode import EncodeError, VideoWriter, encode_frames, thumbnail
from gpu_worker.media.faces import Box
from gpu_worker.media.presenter import builtin_portrait, find_face, frame_portrait
from gpu_worker.media.scene import compose_presenter, render_backdrop
from gpu_worker.media.speech import Segment, VoiceParams, synthesize

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
_CHECK_EVERY = 25  # frames between progress reports and cancellation checks
_SCENE_MARGIN = 1.1  # the svd scene is painted larger than the frame so the camera can zoom in crisply
# Share of the whole render each stage takes, for the overall progress fraction.
_SPEECH, _SCENE, _FRAMES = 0.08, 0.04, 0.86


class RenderCancelled(Exception):
    """The caller asked to stop; no final video was written."""


@dataclass(frozen=True)
class RenderOutputs:
    """Files written by `render_still_video` (all inside its `out_dir`).

    `face_found` is False when no face was detected in the portrait: the video then has camera or
    head motion but no mouth or blink animation.
    """

    video: Path
    thumbnail: Path
    audio: Path
    scene_image: Path
    base_clip: Path | None
    captions_srt: Path | None
    duration: float
    face_found: bool = True


def _watch(
    frames: Iterable[np.ndarray], n: int, progress: Progress, cancelled: Callable[[], bool]
) -> Iterator[np.ndarray]:
    """Pass frames through, reporting progress and honouring cancellation every few frames.

    The stage is `animate` before the first frame is made (a failure making it is an animate
    failure, not a scene one) and `encode` once the last frame is out (what remains is ffmpeg's flush).
    """
    progress("animate", _SPEECH + _SCENE)
    last = time.monotonic()
    for i, frame in enumerate(frames):
        if i % _CHECK_EVERY == 0 or time.monotonic() - last > 0.5:
            if cancelled():
                raise RenderCancelled(f"cancelled at frame {i}/{n}")
            progress("animate", _SPEECH + _SCENE + _FRAMES * i / n)
            last = time.monotonic()
        yield frame
    progress("encode", _SPEECH + _SCENE + _FRAMES)


def _tee(frames: Iterable[np.ndarray], writer: VideoWriter) -> Iterator[np.ndarray]:
    for frame in frames:
        writer.write(frame)
        yield frame


def _svd_frames(
    stage: str,
    face: Image.Image,
    face_box: Box,
    size: tuple[int, int],
    mouth: np.ndarray,
    blinks: np.ndarray | None,
    seed: int,
    out_dir: Path,
    base: VideoWriter,
) -> tuple[Iterator[np.ndarray], Path]:
    """Scene with the presenter composed in → Ken Burns base clip (also written to `base`) → mouth and blinks."""
    scene_size = (math.ceil(size[0] * _SCENE_MARGIN), math.ceil(size[1] * _SCENE_MARGIN))
    n = len(mouth)
    scene, scene_face = compose_presenter(render_backdrop(stage, scene_size, seed), face, face_box)
    scene_path = out_dir / "scene.png"
    scene.save(scene_path)
    # Push in slowly towards the presenter, so the zoom never crops their card.
    focus = (scene_face[0] + scene_face[2] / 2, scene_face[1] + scene_face[3] / 2)
    boxes = [map_box(scene_face, m) for m in camera_path(scene_size, size, n, seed, zoom=0.08, focus=focus)]
    base_frames = _tee(ken_burns(scene, size, n, seed, zoom=0.08, focus=focus), base)
    return talking_frames(base_frames, boxes, mouth, blinks), scene_path


def _sadtalker_frames(
    face: Image.Image,
    face_box: Box,
    size: tuple[int, int],
    fps: int,
    loudness: np.ndarray,
    mouth: np.ndarray,
    blinks: np.ndarray | None,
    seed: int,
    out_dir: Path,
) -> tuple[Iterator[np.ndarray], Path]:
    """The portrait framed around the face → mouth, blinks and head motion (nodding with the voice)."""
    n = len(loudness)
    framed, face_box = frame_portrait(face, size, face_height=0.32, face_top=0.2, face=face_box)
    scene_path = out_dir / "portrait.png"
    framed.save(scene_path)
    motion = head_motion(size, face_box, n, fps, seed, loudness)
    return talking_frames(framed, face_box, mouth, blinks, motion), scene_path


def render_still_video(
    script_stage: str,
    narrative: str,
    out_dir: Path,
    size: tuple[int, int],
    fps: int,
    voice: VoiceParams,
    portrait: Image.Image | None,
    variant: str,
    captions: bool,
    progress: Progress,
    cancelled: Callable[[], bool],
    seed: int = 0,
    crf: int = 23,
    preset: str = "veryfast",
    backends: RenderBackends | None = None,
) -> RenderOutputs:
    """Render a narrated talking-presenter video on the CPU.

    `svd`: procedural backdrop for the stage with the presenter composed in → Ken Burns base
    clip (`base.mp4`) → speech-driven mouth and blinks. `sadtalker`: the portrait framed around
    the face → mouth, blinks and head motion. Both: espeak-ng speech (or the speech backend's),
    H.264/AAC MP4 whose length is the speech's, optional captions (SRT file and burned in), JPEG thumbnail.

    Args:
        script_stage: the stage description (scene of the svd variant).
        narrative: the text to speak.
        out_dir: directory for every output file (created).
        size: `(width, height)`, both even (see `schemas.media.frame_size`).
        fps: frame rate.
        voice: speech parameters.
        portrait: the presenter photo; None uses the built-in presenter.
        variant: `svd` or `sadtalker`.
        captions: write `captions.srt` and burn the captions into the video.
        progress: called with `(stage, overall fraction 0..1)` at least about every second.
        cancelled: polled between stages and every 25 frames.
        seed: variation of scene, camera, blinks and head motion (and of a speech model's sampling).
        crf: x264 quality of the final video.
        preset: x264 speed preset.
        backends: model backends for this render; a stage they cover runs on its model instead of the
            embedded runtime (see `gpu_worker.backends.render`).

    Returns:
        The paths of the outputs and the video duration.

    Raises:
        RenderCancelled: `cancelled()` returned True; the partial video is deleted.
        ValueError: unknown variant, language or voice, or an empty narrative.
    """
    if variant not in ("svd", "sadtalker"):
        raise ValueError(f"unknown variant: {variant!r}")

    def checkpoint(stage: str, fraction: float) -> None:
        if cancelled():
            raise RenderCancelled(f"cancelled before {stage}")
        progress(stage, fraction)

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint("speech", 0.0)
    if backends is not None:  # Coqui TTS when configured, else espeak-ng
        speech = backends.synthesize(narrative, out_dir / "speech.wav", voice, seed, checkpoint, (0.0, _SPEECH))
    else:
        speech = synthesize(narrative, out_dir / "speech.wav", voice)
    n = max(1, math.ceil(speech.duration * fps))
    loudness = loudness_envelope(speech.path, fps, n)
    checkpoint("scene", _SPEECH)
    face = portrait if portrait is not None else builtin_portrait()
    face_box, face_found = find_face(face)
    # Without a real face, mouth and eyelid edits would smear a guessed region: keep only the motion.
    mouth = loudness if face_found else np.zeros_like(loudness)
    blinks = blink_schedule(n, fps, seed) if face_found else None
    srt = None
    if captions:
        srt = out_dir / "captions.srt"
        srt.write_text(to_srt(speech.segments), encoding="utf-8")
    video, base_path = out_dir / "video.mp4", None
    with ExitStack() as stack:
        if backends is not None and backends.handles(variant, face_found):
            inputs = FrameInputs(
                script_stage, face, face_box, face_found, size, fps, speech.path, mouth, blinks, seed, out_dir, crf
            )
            staged = stack.enter_context(backends.frames(variant, inputs, checkpoint, (_SPEECH, _SPEECH + _SCENE)))
            frames, scene_path, base_path = staged.frames, staged.scene_path, staged.base_path
        elif variant == "svd":
            base_path = out_dir / "base.mp4"
            base = stack.enter_context(VideoWriter(base_path, size, fps, crf=crf + 3, preset="ultrafast"))
            frames, scene_path = _svd_frames(script_stage, face, face_box, size, mouth, blinks, seed, out_dir, base)
        else:
            frames, scene_path = _sadtalker_frames(face, face_box, size, fps, loudness, mouth, blinks, seed, out_dir)
        segments = speech.segments if captions else None
        _encode(frames, segments, size, fps, n, video, speech.path, crf, preset, progress, cancelled)
    checkpoint("thumbnail", _SPEECH + _SCENE + _FRAMES)
    thumb = thumbnail(video, out_dir / "thumbnail.jpg")
    progress("done", 1.0)
    logger.info("rendered %s: %d frames, %.2f s of speech, face at %s", variant, n, speech.duration, face_box)
    return RenderOutputs(video, thumb, speech.path, scene_path, base_path, srt, speech.duration, face_found)


def _encode(
    frames: Iterator[np.ndarray],
    segments: Sequence[Segment] | None,
    size: tuple[int, int],
    fps: int,
    n: int,
    video: Path,
    audio: Path,
    crf: int,
    preset: str,
    progress: Progress,
    cancelled: Callable[[], bool],
) -> None:
    if segments is not None:
        frames = caption_frames(frames, segments, fps)

    def flushing() -> None:
        if cancelled():
            raise RenderCancelled("cancelled while encoding")
        progress("encode", _SPEECH + _SCENE + _FRAMES)

    try:
        encode_frames(
            _watch(frames, n, progress, cancelled), size, fps, video, audio=audio, crf=crf, preset=preset, tick=flushing
        )
    except EncodeError:
        progress("encode", _SPEECH + _SCENE + _FRAMES)  # ffmpeg failed, even if mid-stream: an encode failure
        raise
