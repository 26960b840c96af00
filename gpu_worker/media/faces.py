"""Face finding with OpenCV's Haar cascade, plus face-relative heuristics for mouth and eyes."""

import functools
import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import cv2

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""`(x, y, width, height)` in pixels."""

_MAX_DETECT_SIDE = 640  # detection runs on a downscaled copy; faces stay well above the cascade's 24 px


@functools.cache
def _cascade() -> "cv2.CascadeClassifier":
    import cv2

    path = f"{cv2.data.haarcascades}haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the face cascade {path}")
    return cascade


def detect_face(image: np.ndarray) -> Box | None:
    """Find the largest frontal face.

    Args:
        image: an HxWx3 RGB (or HxW gray) uint8 array.

    Returns:
        The face box in `image` coordinates, or None when no face is found.
    """
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    scale = min(1.0, _MAX_DETECT_SIDE / max(gray.shape[:2]))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    if len(found) == 0:
        logger.debug("no face found in a %dx%d image", image.shape[1], image.shape[0])
        return None
    x, y, w, h = max(found, key=lambda b: int(b[2]) * int(b[3]))
    return int(x / scale), int(y / scale), int(w / scale), int(h / scale)


def mouth_box(face: Box) -> Box:
    """Where the mouth is inside a Haar face box (its lower third, central half).

    Args:
        face: the face box.

    Returns:
        The mouth box.
    """
    x, y, w, h = face
    return x + int(w * 0.27), y + int(h * 0.66), int(w * 0.46), int(h * 0.24)


def eyes_box(face: Box) -> Box:
    """The band across both eyes inside a Haar face box.

    Args:
        face: the face box.

    Returns:
        The eye band box.
    """
    x, y, w, h = face
    return x + int(w * 0.15), y + int(h * 0.28), int(w * 0.70), int(h * 0.20)
