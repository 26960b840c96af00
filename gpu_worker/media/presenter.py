"""Presenter portraits: the built-in face and framing a portrait around its face."""

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_worker.media.faces import Box, detect_face

logger = logging.getLogger(__name__)


ASTRONAUT = Path(__file__).parent / "assets" / "astronaut.jpg"  # provenance: assets/PROVENANCE.md


@functools.cache
def _astronaut() -> Image.Image:
    with Image.open(ASTRONAUT) as img:
        return img.convert("RGB")


def builtin_portrait() -> Image.Image:
    """The built-in presenter: NASA's public-domain portrait of Eileen Collins (vendored from scikit-image's data).

    The whole 512x512 photo is returned so that `frame_portrait` can crop it around the face
    for any aspect ratio.

    Returns:
        An RGB portrait with a clearly detectable frontal face.
    """
    return _astronaut().copy()


def _fallback_face(width: int, height: int) -> Box:
    """A guess for portraits where no face is detected: centred, in the upper third."""
    side = int(min(width, height) * 0.3)
    return (width - side) // 2, int(height * 0.18), side, side


def find_face(image: Image.Image) -> tuple[Box, bool]:
    """Detect the face of a portrait, falling back to a centred guess.

    Args:
        image: the portrait.

    Returns:
        The face box and whether it was really detected.
    """
    face = detect_face(np.asarray(image.convert("RGB")))
    if face is None:
        logger.warning("no face detected in the %dx%d portrait; guessing its position", *image.size)
        return _fallback_face(*image.size), False
    return face, True


def frame_portrait(
    image: Image.Image,
    size: tuple[int, int],
    face_height: float = 0.3,
    face_top: float = 0.22,
    face: Box | None = None,
) -> tuple[Image.Image, Box]:
    """Crop and scale a portrait to `size` so the face sits where a presenter's face should.

    Args:
        image: the portrait (any size; RGB or convertible).
        size: output `(width, height)`.
        face_height: wanted face height as a fraction of the output height (less if the photo is too tight).
        face_top: wanted top of the face as a fraction of the output height.
        face: the face box in `image`, if already known.

    Returns:
        The framed RGB image and the face box in its coordinates.
    """
    image = image.convert("RGB")
    img_w, img_h = image.size
    fx, fy, fw, fh = face if face is not None else find_face(image)[0]
    out_w, out_h = size
    aspect = out_w / out_h
    crop_h = fh / face_height
    crop_w = crop_h * aspect
    shrink = min(1.0, img_w / crop_w, img_h / crop_h)
    crop_w, crop_h = crop_w * shrink, crop_h * shrink
    x0 = float(np.clip(fx + fw / 2 - crop_w / 2, 0, img_w - crop_w))
    y0 = float(np.clip(fy - face_top * crop_h, 0, img_h - crop_h))
    framed = image.resize(size, Image.Resampling.LANCZOS, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    scale = out_w / crop_w
    box = (round((fx - x0) * scale), round((fy - y0) * scale), round(fw * scale), round(fh * scale))
    return framed, box
