"""Content checks for uploads: images must decode and be large enough, audio must decode and hold sound."""

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
