"""The 468-point face mesh: MediaPipe's face landmark model on a face found by `facedetect`, plus named regions.

Point indices are MediaPipe's canonical face mesh topology (the subject's right is the image's
left): e.g. inner lips 13 (upper) and 14 (lower), mouth corners 61/291 (outer) and 78/308 (inner).
"""

import logging
import math
from dataclasses import dataclass

import numpy as np

from gpu_worker.media.facedetect import FaceDetection, as_rgb, detect_faces, load_model

logger = logging.getLogger(__name__)

MESH_MODEL = "face_landmark.tflite"
N_POINTS = 468

_INPUT = 192  # the model sees a 192x192 crop, rotated so that the eyes are level
_ROI_SCALE = 1.5  # the crop is the face box enlarged this much, as in MediaPipe's graphs
_MAX_ROI = 2 * _INPUT  # a crop larger than this (in image pixels) is cut from a downscaled copy
_MIN_PRESENCE = 0.5

# Closed contours, in order around each region.
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # left in the image
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)  # fmt: skip
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_CORNERS = (61, 291)  # outer; the inner corners are 78 and 308
RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS = (33, 133), (263, 362)  # outer, inner
RIGHT_EYE_LIDS, LEFT_EYE_LIDS = (159, 145), (386, 374)  # upper, lower

Box = tuple[int, int, int, int]
"""`(x, y, width, height)` in pixels."""


def _bounds(points: np.ndarray) -> Box:
    (x0, y0), (x1, y1) = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return math.floor(x0), math.floor(y0), math.ceil(x1) - math.floor(x0), math.ceil(y1) - math.floor(y0)


@dataclass(frozen=True)
class FaceMesh:
    """468 face points `(x, y, z)` in image pixels (z: depth, same scale as x, smaller is nearer) and the presence score."""

    points: np.ndarray
    score: float

    def face_box(self) -> Box:
        """The tight box around the face oval (forehead to chin, cheek to cheek)."""
        return _bounds(self.points[list(FACE_OVAL)])

    def mouth_box(self) -> Box:
        """The tight box around the outer lip contour."""
        return _bounds(self.points[list(LIPS_OUTER)])

    def eye_boxes(self) -> tuple[Box, Box]:
        """Tight boxes around the subject's right eye (left in the image) and left eye contours."""
        return _bounds(self.points[list(RIGHT_EYE)]), _bounds(self.points[list(LEFT_EYE)])

    def eye_centres(self) -> np.ndarray:
        """The centres `(x, y)` of the subject's right eye (first row) and left eye contours."""
        return np.stack([self.points[list(eye), :2].mean(axis=0) for eye in (RIGHT_EYE, LEFT_EYE)])

    def lip_seam(self) -> np.ndarray:
        """The point `(x, y)` between the lips, halfway between the inner upper and lower lip."""
        return np.asarray(self.points[[UPPER_INNER_LIP, LOWER_INNER_LIP], :2].mean(axis=0))

    def mouth_width(self) -> float:
        """The distance between the outer mouth corners, in pixels."""
        return _distance(self.points, *MOUTH_CORNERS)

    def mouth_openness(self) -> float:
        """The gap between the inner lips over the mouth width: about 0 when closed, 0.3 and more when wide open."""
        return _distance(self.points, UPPER_INNER_LIP, LOWER_INNER_LIP) / max(self.mouth_width(), 1e-6)

    def eye_openness(self) -> tuple[float, float]:
        """Lid gap over eye width for the subject's right and left eye: about 0.3 open, under 0.1 closed."""
        return (
            _distance(self.points, *RIGHT_EYE_LIDS) / max(_distance(self.points, *RIGHT_EYE_CORNERS), 1e-6),
            _distance(self.points, *LEFT_EYE_LIDS) / max(_distance(self.points, *LEFT_EYE_CORNERS), 1e-6),
        )


def _distance(points: np.ndarray, a: int, b: int) -> float:
    return float(np.hypot(*(points[a, :2] - points[b, :2])))


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class _Roi:
    """A square crop of the image: its centre and side in pixels, and its x axis's angle to the image's."""

    centre: np.ndarray
    side: float
    angle: float

    @classmethod
    def level_with(cls, centre: np.ndarray, size: float, start: np.ndarray, towards: np.ndarray) -> "_Roi":
        """A crop around a face of `size`, enlarged, with the line `start`→`towards` (the eyes) level."""
        dx, dy = towards - start
        return cls(centre, size * _ROI_SCALE, math.atan2(dy, dx))

    @classmethod
    def around(cls, points: np.ndarray, start: np.ndarray, towards: np.ndarray) -> "_Roi":
        """A crop around mesh points, from their box in the crop's own level frame (snug for a tilted face)."""
        dx, dy = towards - start
        rotation = _rotation(math.atan2(dy, dx))
        level = points[:, :2] @ rotation  # each point rotated by -angle
        lo, hi = level.min(axis=0), level.max(axis=0)
        return cls.level_with(rotation @ ((lo + hi) / 2), float(max(hi - lo)), start, towards)

    def axes(self) -> np.ndarray:
        """The 2x2 matrix from crop pixels to image pixels (without the translation)."""
        return _rotation(self.angle) * (self.side / _INPUT)


def _run_mesh(image: np.ndarray, roi: _Roi) -> FaceMesh:
    """Cut the ROI out as a 192x192 crop, run the model and map its points back to the image."""
    import cv2

    axes = roi.axes()
    # Crop pixel (u, v) samples the image at axes @ (u + 0.5 - 96, v + 0.5 - 96) + centre, less 0.5 for pixel centres.
    shift = roi.centre - 0.5 + axes @ np.full(2, 0.5 - _INPUT / 2)
    crop = cv2.warpAffine(
        image,
        np.hstack([axes, shift[:, None]]),
        (_INPUT, _INPUT),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    out = load_model(MESH_MODEL)(crop.astype(np.float32) / 255.0)
    raw = next(v for v in out.values() if v.size == N_POINTS * 3).reshape(N_POINTS, 3).astype(np.float64)
    logit = float(next(v for v in out.values() if v.size == 1).reshape(()))
    points = np.empty_like(raw)
    points[:, :2] = (raw[:, :2] - _INPUT / 2) @ axes.T + roi.centre
    points[:, 2] = raw[:, 2] * roi.side / _INPUT
    return FaceMesh(points, 1.0 / (1.0 + math.exp(-min(max(logit, -80.0), 80.0))))


def _mesh_at(image: np.ndarray, face: FaceDetection) -> FaceMesh | None:
    """The mesh of one detected face: a first crop from the detection, a second, snugger one from that mesh."""
    import cv2

    x, y, w, h = face.box
    size = max(w, h)
    # Work on the face's neighbourhood only (room for a tilted crop), downscaled when the face is big so
    # that the 192x192 crop is not aliased; `origin` and `shrink` map it back to the image.
    reach = size * _ROI_SCALE
    x0, y0 = max(0, math.floor(x + w / 2 - reach)), max(0, math.floor(y + h / 2 - reach))
    x1, y1 = min(image.shape[1], math.ceil(x + w / 2 + reach)), min(image.shape[0], math.ceil(y + h / 2 + reach))
    patch, origin = image[y0:y1, x0:x1], np.array([x0, y0], np.float64)
    shrink = min(1.0, _MAX_ROI / (size * _ROI_SCALE))
    if shrink < 1.0:
        patch = cv2.resize(patch, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    right, left = ((p - origin) * shrink for p in face.eyes)
    centre = (np.array([x + w / 2, y + h / 2]) - origin) * shrink
    mesh = _run_mesh(patch, _Roi.level_with(centre, size * shrink, right, left))
    if mesh.score >= _MIN_PRESENCE:
        corners = mesh.points[[RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0]], :2]
        mesh = _run_mesh(patch, _Roi.around(mesh.points, corners[0], corners[1]))
    if mesh.score < _MIN_PRESENCE:
        return None
    points = mesh.points / shrink
    points[:, :2] += origin
    return FaceMesh(points, mesh.score)


def face_mesh(image: np.ndarray) -> FaceMesh | None:
    """The face mesh of the largest face in an image.

    Args:
        image: an HxWx3 RGB (or HxW gray) uint8 array.

    Returns:
        The mesh in `image` pixel coordinates, or None when no face is found.
    """
    image = np.ascontiguousarray(as_rgb(image))
    faces = detect_faces(image)
    if not faces:
        logger.debug("no face detected in a %dx%d image", image.shape[1], image.shape[0])
        return None
    largest = max(faces, key=lambda f: f.box[2] * f.box[3])
    mesh = _mesh_at(image, largest)
    if mesh is None:
        logger.debug("a face was detected at %s but the mesh model does not see one", largest.box)
    return mesh
