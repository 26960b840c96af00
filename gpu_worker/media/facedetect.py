"""Face detection with MediaPipe's short-range BlazeFace model, vendored as `.tflite` and run by LiteRT.

Also holds the small LiteRT runner that `facemesh` shares: each vendored model is loaded once per
process and its calls are serialized, because a LiteRT interpreter is not thread-safe.
"""

import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"  # provenance and checksums: assets/PROVENANCE.md
DETECTOR_MODEL = "face_detection_short_range.tflite"

_INPUT = 128  # the detector sees a 128x128 letterboxed copy of the image
_MIN_SCORE = 0.5
_MIN_TILE_SCORE = 0.75  # nine more looks at an image mean more false alarms: the tiles must be surer
_NMS_IOU = 0.3
_MAX_LOGIT = 80.0  # keeps exp() finite in float32


class TfliteModel:
    """One vendored `.tflite` model with a float32 NHWC input; calls are serialized by a lock."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]

        self._interpreter = Interpreter(model_path=str(path), num_threads=1)
        self._interpreter.allocate_tensors()
        (source,) = self._interpreter.get_input_details()
        self._input = int(source["index"])
        self.input_shape = tuple(int(d) for d in source["shape"])
        self._outputs = {str(d["name"]): int(d["index"]) for d in self._interpreter.get_output_details()}
        self._lock = threading.Lock()

    def __call__(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on one HxWx3 float32 image.

        Args:
            tensor: the input, shaped like the model's input without the batch axis.

        Returns:
            Every output tensor by its name in the model.
        """
        with self._lock:
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(tensor[None], np.float32))
            self._interpreter.invoke()
            return {name: np.array(self._interpreter.get_tensor(i)) for name, i in self._outputs.items()}


@functools.cache
def load_model(name: str) -> TfliteModel:
    """The vendored model `assets/<name>`, loaded on first use and shared by every thread."""
    model = TfliteModel(ASSETS / name)
    logger.debug("loaded %s (input %s)", name, model.input_shape)
    return model


@dataclass(frozen=True)
class FaceDetection:
    """One detected face in image pixel coordinates.

    `keypoints` are six `(x, y)` rows in MediaPipe's order: the subject's right eye (left in the
    image), left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
    """

    box: tuple[float, float, float, float]  # (x, y, width, height)
    keypoints: np.ndarray
    score: float

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """The subject's right eye (left in the image) and left eye."""
        return self.keypoints[0], self.keypoints[1]


@functools.cache
def _anchors() -> np.ndarray:
    """The 896 SSD anchor centres (x, y) in [0, 1]: 2 per cell of a 16x16 grid (stride 8), then 6 per cell of 8x8.

    Anchors of layers with the same stride share cells (three stride-16 layers, 2 each), and every
    anchor has a fixed unit size, so only the centres matter.
    """
    rows = []
    for grid, per_cell in ((_INPUT // 8, 2), (_INPUT // 16, 6)):
        centre = (np.arange(grid) + 0.5) / grid
        yy, xx = np.meshgrid(centre, centre, indexing="ij")
        rows.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(rows).astype(np.float32)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 view of an RGB, RGBA or gray image."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _letterbox(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image scaled to fit 128x128 and centred on black, in [-1, 1]; plus its `(x, y)` scale and offset."""
    import cv2

    h, w = image.shape[:2]
    scale = _INPUT / max(h, w)
    rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
    ox, oy = (_INPUT - rw) // 2, (_INPUT - rh) // 2
    canvas = np.zeros((_INPUT, _INPUT, 3), np.float32)
    canvas[oy : oy + rh, ox : ox + rw] = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
    return canvas / 127.5 - 1.0, np.array([rw / w, rh / h]), np.array([ox, oy], np.float64)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one `(x0, y0, x1, y1)` box with each of `others`."""
    x0, y0 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x1, y1 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def _weighted_nms(rows: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Merge overlapping candidates into one face each, averaging their rows weighted by score.

    Args:
        rows: one candidate a row: box corners `(x0, y0, x1, y1)`, then the six keypoints' `(x, y)`.
        scores: the candidates' scores.

    Returns:
        `(row, score)` for each face, most confident first.
    """
    order = np.argsort(-scores)
    merged = []
    while len(order):
        overlap = _iou(rows[order[0], :4], rows[order, :4]) > _NMS_IOU
        cluster = order[overlap]
        weights = scores[cluster][:, None]
        merged.append(((rows[cluster] * weights).sum(axis=0) / weights.sum(), float(scores[order[0]])))
        order = order[~overlap]
    return merged


def _candidates(image: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor's face that scores at least `min_score`, as `_weighted_nms` rows in image pixels, and scores."""
    tensor, scale, offset = _letterbox(image)
    out = load_model(DETECTOR_MODEL)(tensor)
    logits = np.clip(out["classificators"].reshape(-1), -_MAX_LOGIT, _MAX_LOGIT)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    raw = out["regressors"].reshape(-1, 16)[keep] / _INPUT
    anchors = _anchors()[keep]
    centre, size = anchors + raw[:, :2], raw[:, 2:4]
    points = np.concatenate([centre - size / 2, centre + size / 2, np.tile(anchors, 6) + raw[:, 4:]], axis=1)
    # Letterbox [0, 1] coordinates to image pixels.
    pixels = (points.reshape(-1, 8, 2) * _INPUT - offset) / scale
    return pixels.reshape(-1, 16), scores[keep]


def _tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Overlapping squares of half the image's longer side (by half a tile), as `(x0, y0, x1, y1)`."""
    side = max(height, width) // 2

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        n = math.ceil((length - side) / (side / 2)) + 1
        return [round(v) for v in np.linspace(0, length - side, n)]

    return [(x, y, min(x + side, width), min(y + side, height)) for y in starts(height) for x in starts(width)]


def detect_faces(image: np.ndarray) -> list[FaceDetection]:
    """Find frontal faces, as the short-range model sees them (selfies, portraits).

    The model finds faces that fill a good part of its 128x128 view; when it finds none in the
    whole image, it looks again in overlapping tiles of half the size, for a smaller face
    (down to about a tenth of the image's longer side).

    Args:
        image: an HxWx3 RGB (or HxW gray) uint8 array.

    Returns:
        The faces found, most confident first; empty when there is none.
    """
    image = as_rgb(image)
    rows, scores = _candidates(image, _MIN_SCORE)
    if not len(scores) and min(image.shape[:2]) >= _INPUT:
        found = []
        for x0, y0, x1, y1 in _tiles(*image.shape[:2]):
            tile_rows, tile_scores = _candidates(image[y0:y1, x0:x1], _MIN_TILE_SCORE)
            found.append((tile_rows + np.tile([x0, y0], 8), tile_scores))
        rows, scores = np.concatenate([r for r, _ in found]), np.concatenate([s for _, s in found])
    faces = []
    for row, score in _weighted_nms(rows, scores):
        (x0, y0, x1, y1), keypoints = row[:4], row[4:].reshape(6, 2)
        faces.append(FaceDetection((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), keypoints, score))
    return faces
