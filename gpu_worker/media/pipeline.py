"""The embedded CPU renderer: script to narrated talking-presenter MP4, no model weights."""

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_worker.backends import Backends
from gpu_worker.backends.render import SYNTHESISED_BED, UPLOADED_MUSIC, WORD_CAPTIONS, FrameInputs, RenderBackends
from gpu_worker.media.animate import blink_schedule, loudness_envelope
from gpu_worker.media.captions import (
    Cue,
    caption_frames,
    to_ass,
    to_srt,
    to_vtt,
    word_cues,
)
from gpu_worker.media.encode import EncodeError, encode_frames, mux_audio, thumbnail
from gpu_worker.media.presenter import builtin_portrait, find_face
from gpu_worker.media.sound import Music, finish_soundtrack
from gpu_worker.media.speech import SpeechResult, VoiceParams
from gpu_worker.media.visemes import mouth_track
from gpu_worker.media.voices import Narrator, default_narrator
from schemas.media import CaptionPosition, CaptionStyle

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
_CHECK_EVERY = 25  # frames between progress reports and cancellation checks
# Share of the whole render each stage takes, for the overall progress fraction.
_SPEECH, _SCENE, _FRAMES = 0.08, 0.04, 0.86


class RenderCancelled(Exception):
    """The caller asked to stop; no final video was written."""


@dataclass(frozen=True)
class RenderOutputs:
    """Files written by `render_still_video` (all inside its `out_dir`)."""

    video: Path
    thumbnail: Path
    audio: Path
    scene_image: Path
    base_clip: Path | None
    captions: list[Path]  # SRT, WebVTT and ASS files, word-timed (none without captions)
    duration: float
    rendering: dict[str, str] = field(default_factory=dict)  # stage → runtime id, as advertised
    speech: SpeechResult | None = None


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
    narrator: Narrator | None = None,
    duration_seconds: float | None = None,
    caption_style: CaptionStyle = "plain",
    caption_position: CaptionPosition = "bottom",
    music: Music = "none",
    music_volume: float = 0.25,
    media: Sequence[Path] = (),
) -> RenderOutputs:
    """Render a narrated talking-presenter video: speech, the variant's stages, captions, H.264/AAC MP4.

    The narration is fitted to `duration_seconds` (see `Narrator.speak`) and the picture lasts as
    long as the audio, so the video lasts what was asked; the presenter keeps blinking and moving
    through the closing silence. See `gpu_worker.backends.render` for the stages of each variant.

    Args:
        script_stage: the stage description (scene of the svd variant).
        narrative: the text to speak.
        out_dir: directory for every output file (created).
        size: `(width, height)`, both even (see `schemas.media.frame_size`).
        fps: frame rate.
        voice: the voice (id, language, a profile's pace).
        portrait: the presenter photo; None uses the built-in presenter.
        variant: `svd` or `sadtalker`.
        captions: write `captions.srt`, `.vtt` and `.ass` (word-timed) and burn the captions into the video.
        progress: called with `(stage, overall fraction 0..1)` at least about every second.
        cancelled: polled between stages and every 25 frames.
        seed: variation of scene, camera, blinks and head motion (and of a speech model's sampling).
        crf: x264 quality of the final video.
        preset: x264 speed preset.
        backends: the worker's model backends bound to this render; None: embedded runtimes only.
        narrator: speaks the narration; None: the default voices (Piper, eSpeak NG).
        duration_seconds: how long the video must last; None: as long as the speech.
        caption_style: `plain`, or `karaoke` (the spoken word highlighted).
        caption_position: `bottom`, `top` or `center` (inside the safe area of the frame).
        music: `none`, a synthesised bed (`calm`, `upbeat`) or the path of the caller's audio file.
        music_volume: the bed's level away from speech, 0-1.
        media: the caller's images and clips (svd only): one per sentence instead of a generated scene.

    Returns:
        The paths of the outputs, the video duration and which runtime rendered each stage.

    Raises:
        RenderCancelled: `cancelled()` returned True; the partial video is deleted.
        ValueError: unknown variant, language or voice, an empty narrative, or media for sadtalker.
    """
    if variant not in ("svd", "sadtalker"):
        raise ValueError(f"unknown variant: {variant!r}")
    if media and variant != "svd":
        raise ValueError("options.media replaces the scene of the svd variant; sadtalker has no scene")

    def checkpoint(stage: str, fraction: float) -> None:
        if cancelled():
            raise RenderCancelled(f"cancelled before {stage}")
        progress(stage, fraction)

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint("speech", 0.0)
    speech = (narrator or default_narrator()).speak(
        narrative, out_dir / "speech.wav", voice, duration_seconds, seed, lambda f: checkpoint("speech", f * _SPEECH)
    )
    n = max(1, math.ceil(speech.duration * fps))
    loudness = loudness_envelope(speech.path, fps, n)
    # The narration with its bed, at -14 LUFS: what the video carries (`speech.wav` stays the bare
    # narration). It is mostly ffmpeg in other processes, so it is made beside the frames and muxed after.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="soundtrack") as mixing:
        pending = mixing.submit(finish_soundtrack, speech, out_dir / "soundtrack.wav", music, music_volume, seed)
        checkpoint("scene", _SPEECH)
        face = portrait if portrait is not None else builtin_portrait()
        face_box, lips = find_face(face)
        mouth = mouth_track(speech.phonemes, fps, n)
        blinks = blink_schedule(n, fps, seed)
        cues = word_cues(speech.words, speech.segments, until=speech.duration) if captions else []
        caption_files = _write_captions(cues, out_dir, size, caption_style, caption_position) if captions else []
        picture = out_dir / "picture.mp4"
        inputs = FrameInputs(
            script_stage, face, face_box, lips, size, fps, speech.path, loudness, mouth, blinks, seed, out_dir, crf,
            media=tuple(media), sentences=tuple(speech.segments),
        )  # fmt: skip
        stages = backends or RenderBackends(Backends())
        with stages.frames(variant, inputs, checkpoint, (_SPEECH, _SPEECH + _SCENE)) as staged:
            burned = (
                caption_frames(staged.frames, cues, fps, style=caption_style, position=caption_position)
                if captions
                else staged.frames
            )
            _encode(burned, size, fps, n, picture, crf, preset, progress, cancelled)
        checkpoint("mux", _SPEECH + _SCENE + _FRAMES)  # a failed soundtrack is a mux failure
        soundtrack = pending.result()
    video = mux_audio(picture, soundtrack.path, out_dir / "video.mp4")
    picture.unlink()
    checkpoint("thumbnail", _SPEECH + _SCENE + _FRAMES)
    thumb = thumbnail(video, out_dir / "thumbnail.jpg")
    progress("done", 1.0)
    rendering = {"speech": speech.runtime, **staged.rendering, "mux": "ffmpeg"}
    if captions:
        rendering["captions"] = WORD_CAPTIONS
    if music != "none":
        rendering["music"] = SYNTHESISED_BED if isinstance(music, str) else UPLOADED_MUSIC
    level = soundtrack.loudness
    logger.info(
        "rendered %s: %d frames, %.2f s of audio at %.1f LUFS / %.1f dBTP, face at %s, %s",
        variant, n, speech.duration, level.integrated_lufs, level.true_peak_dbtp, face_box, rendering,
    )  # fmt: skip
    return RenderOutputs(
        video,
        thumb,
        speech.path,
        staged.scene_path,
        staged.base_path,
        caption_files,
        speech.duration,
        rendering,
        speech,
    )


def _write_captions(
    cues: Sequence[Cue], out_dir: Path, size: tuple[int, int], style: CaptionStyle, position: CaptionPosition
) -> list[Path]:
    """The caption files beside the video: SRT (every player), WebVTT (the web), ASS (styled, karaoke)."""
    files = {
        "captions.srt": to_srt(cues),
        "captions.vtt": to_vtt(cues, karaoke=style == "karaoke", position=position, size=size),
        "captions.ass": to_ass(cues, size, style, position),
    }
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return [out_dir / name for name in files]


def _encode(
    frames: Iterator[np.ndarray],
    size: tuple[int, int],
    fps: int,
    n: int,
    video: Path,
    crf: int,
    preset: str,
    progress: Progress,
    cancelled: Callable[[], bool],
) -> None:
    def flushing() -> None:
        if cancelled():
            raise RenderCancelled("cancelled while encoding")
        progress("encode", _SPEECH + _SCENE + _FRAMES)

    try:
        encode_frames(_watch(frames, n, progress, cancelled), size, fps, video, crf=crf, preset=preset, tick=flushing)
    except EncodeError:
        progress("encode", _SPEECH + _SCENE + _FRAMES)  # ffmpeg failed, even if mid-stream: an encode failure
        raise
