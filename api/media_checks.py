"""Content checks for uploads: images and clips must decode and be large enough, audio must decode and hold sound."""

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
CLIP_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
SCENE_MEDIA_TYPES = IMAGE_TYPES | CLIP_TYPES  # what `options.media` may name
MIN_IMAGE_SIDE = 64
MIN_AUDIO_SECONDS = 1.0
SILENT_DBFS = -55.0  # a clip whose loudest 25 ms stays below this is silence
_RATE = 16_000


class UnusableUpload(ValueError):
    """The file is not what its name says, or cannot be used."""


def check_image(path: Path) -> tuple[int, int]:
    """Decode the image fully; returns its upright size.

    Raises:
        UnusableUpload: not an image, or smaller than 64×64.
    """
    try:
        with Image.open(path) as img:
            img.load()
            width, height = ImageOps.exif_transpose(img).size
    except (UnidentifiedImageError, OSError) as err:
        raise UnusableUpload("is not a readable image") from err
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UnusableUpload(f"is {width}×{height}; images must be at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}")
    return width, height


def check_audio(path: Path) -> float:
    """Decode the clip to mono 16 kHz; returns its duration in seconds.

    Raises:
        UnusableUpload: no audio stream, shorter than 1 s, or silent.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UnusableUpload("has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=_RATE)
            chunks = [
                plane.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for plane in resampler.resample(frame)
            ]
    except (av.FFmpegError, ValueError) as err:
        raise UnusableUpload("is not a readable audio file") from err
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    seconds = samples.size / _RATE
    if seconds < MIN_AUDIO_SECONDS:
        raise UnusableUpload(f"is {seconds:.2f} s long; voice clips must be at least {MIN_AUDIO_SECONDS:g} s")
    window = _RATE // 40
    frames = samples[: samples.size // window * window].reshape(-1, window)
    loudest = float(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).max())
    if 20 * np.log10(max(loudest, 1e-9)) < SILENT_DBFS:
        raise UnusableUpload("is silent")
    return seconds


def check_clip(path: Path, max_seconds: float) -> float:
    """Decode every frame of a video clip (its sound is never read); returns its duration in seconds.

    The duration is measured on the decoded frames, not taken from the container's header, which a
    file may state wrongly; decoding stops as soon as the clip runs past `max_seconds`.

    Raises:
        UnusableUpload: no video stream, nothing decodes, smaller than 64×64, or longer than `max_seconds`.
    """
    too_long = UnusableUpload(f"is longer than {max_seconds:g} s, the most a clip may last")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UnusableUpload("has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            first: float | None = None
            end = 0.0
            for frame in container.decode(stream):
                if first is None:
                    first = frame.time or 0.0
                    _check_clip_size(frame.width, frame.height)
                end = (frame.time or 0.0) - first + 1 / rate  # a frame lasts until the next one
                if end > max_seconds + 0.01:
                    raise too_long
    except UnusableUpload:
        raise
    except (av.FFmpegError, ValueError) as err:
        raise UnusableUpload("is not a readable video") from err
    if first is None:
        raise UnusableUpload("is not a readable video: no frame decodes")
    return end


def _check_clip_size(width: int, height: int) -> None:
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UnusableUpload(f"is {width}×{height}; clips must be at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}")
