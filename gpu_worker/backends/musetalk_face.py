"""Where MuseTalk works on a frame: the face crop, the lower-face mask and the blend back, all from our face mesh.

MuseTalk 1.5 crops with DWPose's 68 face landmarks: across the jaw, from the chin (plus a 10 px
margin) up to as far above landmark 29, on the nose ridge, as the chin is below it, so the
crop's middle row runs through the nose and its lower half (what the UNet redraws) holds the
mouth and jaw. It blends back through a face-parsing mask of the lower face. Here the same crop
and mask come from MediaPipe's face mesh (`gpu_worker.media.facemesh`): no DWPose, no face parser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gpu_worker.media.facemesh import FACE_OVAL, FaceMesh

NOSE_RIDGE = 5  # on the nose ridge just above the tip: where the 68-point layout's point 29 sits
NOSE_BASE = 2  # under the nostrils: the top of the region shown from the generated face
CHIN = 152
FACE_SIZE = 256  # MuseTalk's face: 256 × 256 pixels, 32 × 32 latents

_CHIN_MARGIN = 0.1  # rows added under the chin, per nose-to-chin distance (MuseTalk 1.5: 10 px at its scale)
_JAW_DROP = 0.08  # how far under the chin the mask reaches (a jaw opened wider than the photo's), same unit
_FEATHER = 0.05  # the mask's Gaussian softening, σ per crop width


@dataclass(frozen=True)
class FaceCrop:
    """The face's crop in a frame and how much of the generated face shows through at each of its pixels.

    Attributes:
        box: `(x0, y0, x1, y1)` in frame pixels, end-exclusive.
        mask: float32 `(y1 - y0, x1 - x0)`, 0 (the frame as it was) to 1 (the generated face).
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray


def face_crop(mesh: FaceMesh, frame_size: tuple[int, int]) -> FaceCrop | None:
    """MuseTalk's crop of the face a mesh describes, and its feathered lower-face mask.

    Args:
        mesh: The face mesh, in frame pixels.
        frame_size: `(width, height)` of the frame.

    Returns:
        The crop, or None when the face is too small or too far out of the frame to redraw.
    """
    points = mesh.points[:, :2]
    oval = points[list(FACE_OVAL)]
    nose, chin = float(points[NOSE_RIDGE, 1]), float(points[CHIN, 1])
    half = chin - nose
    if half < 4:
        return None
    width, height = frame_size
    x0, x1 = max(0, math.floor(oval[:, 0].min())), min(width, math.ceil(oval[:, 0].max()))
    y0, y1 = max(0, math.floor(nose - half)), min(height, math.ceil(chin + _CHIN_MARGIN * half))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    box = (x0, y0, x1, y1)
    return FaceCrop(box, _lower_face_mask(points, box, half))


def _lower_face_mask(points: np.ndarray, box: tuple[int, int, int, int], half: float) -> np.ndarray:
    """The face oval below the nostrils, reaching a little past the chin, feathered, zero at the crop's edges."""
    import cv2

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    hard = np.zeros((h, w), np.uint8)
    cv2.fillPoly(hard, [np.round(points[list(FACE_OVAL)] - (x0, y0)).astype(np.int32)], 255)
    drop = round(_JAW_DROP * half)
    if 0 < drop < h:
        hard[drop:] |= hard[:-drop]  # the oval slid down: room for the chin to move
    hard[: max(0, math.ceil(points[NOSE_BASE, 1] - y0))] = 0  # the nose and above stay the frame's own
    sigma = max(1.0, _FEATHER * w)
    soft = cv2.GaussianBlur(hard.astype(np.float32) / 255.0, (0, 0), sigma)
    # Fade to nothing at the crop's edges, so the paste leaves no seam where the blur was cut off.
    ramp = max(1, math.ceil(2 * sigma))
    across = np.minimum(np.arange(w), np.arange(w)[::-1]) / ramp  # 0 on the edge pixels, 1 from `ramp` in
    down = np.minimum(np.arange(h), np.arange(h)[::-1]) / ramp
    taper = np.minimum.outer(np.clip(down, 0, 1), np.clip(across, 0, 1)).astype(np.float32)
    mask: np.ndarray = soft * taper
    mask[mask < 1 / 512] = 0  # what would round to the frame's own pixel anyway
    return mask


def cut_face(frame: np.ndarray, crop: FaceCrop, size: int = FACE_SIZE) -> np.ndarray:
    """The crop resized to the model's square face, `(size, size, 3)` uint8 RGB (stretched, as MuseTalk does)."""
    import cv2

    x0, y0, x1, y1 = crop.box
    return np.asarray(cv2.resize(frame[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LANCZOS4))


def blend_face(frame: np.ndarray, crop: FaceCrop, face: np.ndarray) -> np.ndarray:
    """A copy of `frame` showing the generated `face` through the crop's mask; pixels the mask leaves out are untouched.

    Args:
        frame: HxWx3 uint8 RGB.
        crop: Where the face is (`face_crop`).
        face: The generated face, any square size (resized to the crop).

    Returns:
        The blended frame.
    """
    import cv2

    x0, y0, x1, y1 = crop.box
    region = frame[y0:y1, x0:x1].astype(np.float32)
    drawn = cv2.resize(face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    alpha = crop.mask[..., None]
    out = frame.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(region + (drawn - region) * alpha), 0, 255).astype(np.uint8)
    return out
