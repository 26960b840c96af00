"""Presenter portraits: the built-in face and framing a portrait around its face."""

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from temporalio.exceptions import ApplicationError

from gpu_worker.media.facemesh import face_mesh
from gpu_worker.media.faces import Box, anchored_box
from gpu_worker.media.mouth import Lips, lips_of
from schemas import names

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


class NoFaceInPortrait(ApplicationError):
    """The portrait shows no face to animate; the same photo would fail again, so it is never retried."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__(
            f"no face found in the {size[0]}x{size[1]} portrait: use a photo with one clearly visible, frontal face",
            type=names.ERR_NO_FACE_IN_PORTRAIT,
            non_retryable=True,
        )


def find_face(image: Image.Image) -> tuple[Box, Lips]:
    """Detect the face of a portrait with the face mesh.

    Args:
        image: the portrait.

    Returns:
        The face box (see `faces.anchored_box`) and the lips in fractions of it (see `mouth.lips_of`).

    Raises:
        NoFaceInPortrait: no face was found.
    """
    mesh = face_mesh(np.asarray(image.convert("RGB")))
    if mesh is None:
        logger.warning("no face detected in the %dx%d portrait", *image.size)
        raise NoFaceInPortrait(image.size)
    box = anchored_box(mesh)
    return box, lips_of(mesh, box)


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

    Raises:
        NoFaceInPortrait: `face` was not given and no face was found.
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
